//! The local cache's invalidation channel: one Redis pub/sub channel,
//! `{key_prefix}invalidate`, shared by every replica.
//!
//! Three kinds of traffic:
//! - an eviction, `<message id> <session id>`, published when a session
//!   changes or ends; each subscriber evicts, then acknowledges by
//!   incrementing `{key_prefix}ack:<message id>`;
//! - a heartbeat, `hb <replica> <epoch> <sent, µs>`, which each replica
//!   publishes every [`HEARTBEAT_INTERVAL`] and, hearing its own, renews
//!   its serving lease (proof, end to end, that PUBLISH works and the
//!   subscription delivers). Hearing the others', a replica knows who may
//!   be serving: an eviction waits for each of them, not only for the
//!   subscribers Redis counts (a replica whose connection Redis closed may
//!   not have noticed yet);
//! - nothing else is listened to.
//!
//! The listener treats any sign of a lost channel (a connection error, a
//! reconnection, a lagging receiver, the lease running out) as "may have
//! missed an eviction": the cache is emptied and not served until a new
//! subscription is confirmed and this replica's own heartbeat is heard
//! through it. When Redis refuses the channel (ACLs without PUBLISH or
//! SUBSCRIBE, a managed Redis that disables them), the cache is never
//! served: every request reads Redis, one warning says why, and
//! `portico_session_cache_serving` stays 0.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fred::clients::SubscriberClient;
use fred::prelude::{
    Builder, ClientLike, Config as RedisConfig, EventInterface, KeysInterface, PubsubInterface,
    ReconnectPolicy,
};
use rand::RngCore;
use tokio::sync::broadcast::error::RecvError;

use super::local_cache::{LocalCache, ACK_WAIT, ENTRY_LIFETIME, HEARTBEAT_INTERVAL, LEASE};
use super::REDIS_COMMAND_TIMEOUT;
use crate::ops::Metrics;

/// Added to [`LEASE`] when a revocation waits out a silent replica, for
/// the time a heartbeat takes from its sender's clock to Redis.
const LEASE_MARGIN: Duration = Duration::from_millis(100);
/// Replicas remembered by their heartbeats (a bound, far above any
/// deployment's replica count).
const MAX_PEERS: usize = 4096;

/// One message on the channel, parsed.
#[derive(Debug, PartialEq, Eq)]
enum Traffic<'a> {
    Eviction {
        message_id: &'a str,
        session: &'a str,
    },
    Heartbeat {
        replica: &'a str,
        epoch: u64,
        sent_micros: u64,
    },
}

fn parse(text: &str) -> Option<Traffic<'_>> {
    let mut parts = text.split(' ');
    let first = parts.next()?;
    if first == "hb" {
        let replica = parts.next()?;
        let epoch = parts.next()?.parse().ok()?;
        let sent_micros = parts.next()?.parse().ok()?;
        return Some(Traffic::Heartbeat {
            replica,
            epoch,
            sent_micros,
        });
    }
    let session = parts.next()?;
    parts.next().is_none().then_some(Traffic::Eviction {
        message_id: first,
        session,
    })
}

/// Whether a change should keep waiting, after [`ACK_WAIT`], for replicas
/// that neither acknowledged nor can still be serving: only revocations do,
/// and only until the silent replicas' leases have run out.
pub fn keep_waiting(
    revocation: bool,
    acknowledged: i64,
    receivers: i64,
    published: Instant,
    now: Instant,
) -> bool {
    revocation && acknowledged < receivers && now < published + LEASE + LEASE_MARGIN
}

/// Starts the listener and the heartbeat for the life of the process.
pub fn spawn(
    cache: &Arc<LocalCache>,
    redis_url: &str,
    metrics: Metrics,
) -> Result<(), fred::error::Error> {
    let config = RedisConfig::from_url(redis_url)?;
    let subscriber = Builder::from_config(config)
        .with_performance_config(|performance| {
            performance.default_command_timeout = REDIS_COMMAND_TIMEOUT;
            // A receiver that lags loses messages, which empties the cache:
            // room for a burst of evictions (a back-channel logout of many
            // sessions) and many replicas' heartbeats.
            performance.broadcast_channel_capacity = 4096;
        })
        .with_connection_config(|connection| {
            connection.connection_timeout = REDIS_COMMAND_TIMEOUT;
            connection.internal_command_timeout = REDIS_COMMAND_TIMEOUT;
        })
        .set_policy(ReconnectPolicy::new_exponential(0, 50, 2000, 2))
        .build_subscriber_client()?;
    metrics.session_cache_serving(false);
    tokio::spawn(heartbeat(Arc::clone(cache)));
    tokio::spawn(listen(Arc::clone(cache), subscriber, metrics));
    Ok(())
}

fn micros_since(start: Instant, now: Instant) -> u64 {
    u64::try_from(now.saturating_duration_since(start).as_micros()).unwrap_or(u64::MAX)
}

/// Publishes this replica's heartbeat every [`HEARTBEAT_INTERVAL`] while a
/// subscription is confirmed.
async fn heartbeat(cache: Arc<LocalCache>) {
    let mut tick = tokio::time::interval(HEARTBEAT_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut warned = false;
    loop {
        tick.tick().await;
        if !cache.subscribed() {
            continue;
        }
        let sent = Instant::now();
        let message = format!(
            "hb {} {} {}",
            cache.instance,
            cache.epoch(),
            micros_since(cache.started, sent)
        );
        let published: Result<i64, _> = cache
            .pool
            .next()
            .publish(cache.channel.as_str(), message)
            .await;
        match published {
            Ok(_) => {
                if warned {
                    tracing::info!(channel = %cache.channel, "session cache heartbeat publishes again");
                }
                warned = false;
                cache.publishing.store(true, Ordering::Relaxed);
            }
            Err(error) => {
                cache.publishing.store(false, Ordering::Relaxed);
                if !warned {
                    tracing::warn!(
                        %error,
                        channel = %cache.channel,
                        "session cache not served: Redis does not take PUBLISH on the \
                         invalidation channel, so every signed-in request reads Redis \
                         (allow PUBLISH and SUBSCRIBE on this channel, or set \
                         [session] local_cache = false to silence this)"
                    );
                    warned = true;
                }
            }
        }
    }
}

/// What the listener knows about its subscription.
struct Listener {
    cache: Arc<LocalCache>,
    subscriber: SubscriberClient,
    metrics: Metrics,
    /// The epoch Redis confirmed, and when; None while not subscribed.
    confirmed: Option<(u64, Instant)>,
    refused_warned: bool,
    /// After a refused SUBSCRIBE, the next try waits (up to 30 s).
    retry_at: Instant,
    retry_delay: Duration,
    /// Replica → when its heartbeat was last heard.
    peers: HashMap<String, Instant>,
}

impl Listener {
    fn lost(&mut self, reason: &'static str) {
        self.confirmed = None;
        let was_serving = self.cache.channel_lost();
        self.metrics.session_cache_serving(false);
        if was_serving {
            self.metrics.session_cache_channel_lost(reason);
            tracing::warn!(
                reason,
                "session cache emptied and not served until its invalidation channel \
                 is confirmed again; requests read Redis meanwhile"
            );
        }
    }

    async fn subscribe(&mut self) {
        if !self.subscriber.is_connected() {
            return;
        }
        match self.subscriber.subscribe(self.cache.channel.as_str()).await {
            Ok(()) => {
                let epoch = self.cache.channel_confirmed();
                self.confirmed = Some((epoch, Instant::now()));
                self.retry_delay = Duration::from_secs(1);
                if self.refused_warned {
                    tracing::info!("session cache subscribed to its invalidation channel");
                    self.refused_warned = false;
                }
            }
            Err(error) => {
                self.retry_at = Instant::now() + self.retry_delay;
                self.retry_delay = (self.retry_delay * 2).min(Duration::from_secs(30));
                if !self.refused_warned {
                    tracing::warn!(
                        %error,
                        channel = %self.cache.channel,
                        "session cache not served: cannot SUBSCRIBE to the invalidation \
                         channel, so every signed-in request reads Redis; retrying"
                    );
                    self.refused_warned = true;
                }
            }
        }
    }

    /// Remembers that `replica` is alive now, and publishes the count of
    /// replicas heard within the lease (itself included).
    fn heard_from(&mut self, replica: &str, now: Instant) {
        if let Some(heard) = self.peers.get_mut(replica) {
            *heard = now;
        } else if self.peers.len() < MAX_PEERS {
            self.peers.insert(replica.to_string(), now);
        }
        self.count_peers(now);
    }

    fn count_peers(&mut self, now: Instant) {
        self.peers
            .retain(|_, heard| now.saturating_duration_since(*heard) < LEASE);
        self.cache.peers.store(self.peers.len(), Ordering::Relaxed);
    }

    fn on_message(&mut self, text: &str) {
        if let Some(Traffic::Heartbeat { replica, .. }) = parse(text) {
            self.heard_from(replica, Instant::now());
        }
        match parse(text) {
            Some(Traffic::Heartbeat {
                replica,
                epoch,
                sent_micros,
            }) if replica == self.cache.instance => {
                let sent = self.cache.started + Duration::from_micros(sent_micros);
                if self.cache.heartbeat_heard(epoch, sent, Instant::now()) {
                    self.metrics.session_cache_serving(true);
                    tracing::info!("session cache serving: invalidation channel confirmed");
                }
            }
            Some(Traffic::Heartbeat { .. }) | None => {}
            Some(Traffic::Eviction {
                message_id,
                session,
            }) => {
                self.cache.evict(session);
                let cache = Arc::clone(&self.cache);
                let ack_key = format!("{}{message_id}", cache.ack_prefix);
                tokio::spawn(async move {
                    let acknowledged: Result<i64, _> = cache.pool.incr(ack_key.as_str()).await;
                    if acknowledged.is_ok() {
                        let _: Result<i64, _> = cache.pool.expire(ack_key.as_str(), 10, None).await;
                    }
                });
            }
        }
    }

    /// On each tick: subscribe if needed; give up a subscription whose
    /// heartbeat has not been heard within the lease.
    async fn on_tick(&mut self) {
        let now = Instant::now();
        self.count_peers(now);
        let Some((_, confirmed_at)) = self.confirmed else {
            if now >= self.retry_at {
                self.subscribe().await;
            }
            return;
        };
        let publishing = self.cache.publishing.load(Ordering::Relaxed);
        match self.cache.lease_until() {
            Some(until) if now < until => return,
            None if now < confirmed_at + LEASE => return,
            // Heartbeats are refused (the heartbeat task says so): nothing
            // was served, nothing to give up.
            None if !publishing => return,
            _ => {}
        }
        self.lost("lease_lapsed");
        // The heartbeats go out but do not come back: the subscription's
        // connection is dead without having said so. Start a new one.
        if publishing {
            let _ = self.subscriber.force_reconnection().await;
        }
    }
}

async fn listen(cache: Arc<LocalCache>, subscriber: SubscriberClient, metrics: Metrics) {
    let mut messages = subscriber.message_rx();
    let mut reconnects = subscriber.reconnect_rx();
    let mut errors = subscriber.error_rx();
    let _connection = subscriber.connect();
    let _ = tokio::time::timeout(REDIS_COMMAND_TIMEOUT, subscriber.wait_for_connect()).await;
    let mut listener = Listener {
        cache,
        subscriber,
        metrics,
        confirmed: None,
        refused_warned: false,
        retry_at: Instant::now(),
        retry_delay: Duration::from_secs(1),
        peers: HashMap::new(),
    };
    listener.subscribe().await;
    let mut tick = tokio::time::interval(HEARTBEAT_INTERVAL / 2);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            error = errors.recv() => {
                if !matches!(error, Err(RecvError::Closed)) {
                    listener.lost("disconnected");
                }
            }
            reconnect = reconnects.recv() => {
                if !matches!(reconnect, Err(RecvError::Closed)) {
                    // A new connection has no subscription: whatever was
                    // published in between is lost.
                    listener.lost("disconnected");
                    listener.subscribe().await;
                }
            }
            message = messages.recv() => match message {
                Ok(message) => {
                    if let Some(text) = message.value.as_string() {
                        listener.on_message(&text);
                    }
                }
                Err(RecvError::Lagged(_)) => listener.lost("lagged"),
                Err(RecvError::Closed) => break,
            },
            _ = tick.tick() => listener.on_tick().await,
        }
    }
}

/// Evicts `id` here and on every replica. Returns once each replica
/// subscribed has acknowledged, or after [`ACK_WAIT`]; a `revocation`
/// then keeps waiting until a replica that stayed silent can no longer be
/// serving (its lease has run out), so when it returns no replica serves
/// `id` from its cache.
pub async fn invalidate_everywhere(cache: &LocalCache, id: &str, revocation: bool) {
    cache.evict(id);
    let mut bytes = [0u8; 8];
    rand::thread_rng().fill_bytes(&mut bytes);
    let message_id: String = bytes.iter().map(|byte| format!("{byte:02x}")).collect();
    let started = Instant::now();
    let receivers: i64 = loop {
        let published = cache
            .pool
            .next()
            .publish(cache.channel.as_str(), format!("{message_id} {id}"))
            .await;
        match published {
            Ok(receivers) => break receivers,
            Err(error) => {
                // Another replica may still be serving the record until
                // it hears of this or its entry expires: retry within the
                // entry lifetime for a revocation, unless this replica's
                // own heartbeats fail too (Redis refuses PUBLISH to all,
                // so no replica serves a cache).
                let heartbeats_work = cache.publishing.load(Ordering::Relaxed);
                if !revocation || !heartbeats_work || started.elapsed() >= ENTRY_LIFETIME {
                    tracing::warn!(%error, "could not publish a session invalidation");
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    let published = Instant::now();
    // A replica Redis no longer counts as a subscriber may not have seen
    // its connection close yet, and still serve: expect an
    // acknowledgement from every replica heard from within the lease too.
    let receivers = receivers.max(i64::try_from(cache.peers.load(Ordering::Relaxed)).unwrap_or(0));
    let ack_key = format!("{}{message_id}", cache.ack_prefix);
    let mut acknowledged = 0;
    loop {
        let now = Instant::now();
        if acknowledged >= receivers {
            return;
        }
        let waiting = now < published + ACK_WAIT;
        if !waiting && !keep_waiting(revocation, acknowledged, receivers, published, now) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(if waiting { 2 } else { 20 })).await;
        let count: Option<i64> = cache.pool.get(ack_key.as_str()).await.unwrap_or(None);
        acknowledged = count.unwrap_or(0);
    }
    tracing::warn!(
        receivers,
        acknowledged,
        revocation,
        "not every replica acknowledged a session invalidation in time"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_told_apart() {
        assert_eq!(
            parse("0123456789abcdef sessionid"),
            Some(Traffic::Eviction {
                message_id: "0123456789abcdef",
                session: "sessionid"
            })
        );
        assert_eq!(
            parse("hb r1 7 1500"),
            Some(Traffic::Heartbeat {
                replica: "r1",
                epoch: 7,
                sent_micros: 1500
            })
        );
        assert_eq!(parse("hb r1 x 1500"), None);
        assert_eq!(parse("only-one-part"), None);
        assert_eq!(parse("a b c"), None);
    }

    #[test]
    fn a_revocation_waits_out_silent_replicas_for_the_lease_only() {
        let published = Instant::now();
        let later = published + ACK_WAIT;
        assert!(keep_waiting(true, 1, 2, published, later));
        assert!(
            !keep_waiting(true, 2, 2, published, later),
            "all acknowledged"
        );
        assert!(
            !keep_waiting(false, 1, 2, published, later),
            "an update does not wait"
        );
        assert!(!keep_waiting(
            true,
            1,
            2,
            published,
            published + LEASE + LEASE_MARGIN
        ));
    }
}
