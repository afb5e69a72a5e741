//! An optional in-process cache of session records (`[session] local_cache
//! = true`), so most requests need no Redis round trip, that cannot go stale
//! on revocation.
//!
//! Every replica subscribes to one Redis channel. A replica that changes or
//! ends a session evicts it locally, publishes the session id, and waits
//! (briefly, bounded) until every subscriber has acknowledged the eviction,
//! so when sign-out or back-channel logout answers, no replica will serve
//! that session from its cache again. Entries also expire on their own after
//! `ENTRY_LIFETIME`, which bounds staleness if a replica's subscription is
//! down. Reads under a lock (refresh, idle extension) bypass the cache.
//!
//! A load reads the record from Redis and then caches it; an invalidation
//! that lands between the read and the insert must win, or the record it
//! removed would be served again for `ENTRY_LIFETIME`. So a load takes a
//! ticket before it reads ([`LocalCache::begin_load`]), every eviction
//! cancels the tickets of that id, and the insert happens only if the
//! ticket is still current ([`LocalCache::finish_load`]), all under the one
//! lock that guards the entries.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fred::prelude::{
    Builder, ClientLike, Config as RedisConfig, EventInterface, KeysInterface, Pool,
    PubsubInterface, ReconnectPolicy,
};
use rand::RngCore;
use tower_sessions::session::Id;

use super::SessionData;
use crate::fasthash::FastMap;

/// How long an entry may be served without news from Redis.
pub const ENTRY_LIFETIME: Duration = Duration::from_secs(10);
/// How long a change waits for every replica's acknowledgement.
pub const ACK_WAIT: Duration = Duration::from_millis(500);
const CAPACITY: usize = 100_000;

/// What a sealed session cookie opened to: the id as text (the cache key)
/// and parsed.
#[derive(Clone)]
pub struct OpenedCookie {
    pub text: Arc<str>,
    pub id: Id,
}

/// A load in progress for one session id: caches its result only if no
/// eviction of that id came in between.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadTicket(u64);

/// The cached records and the loads in flight, kept under one lock.
#[derive(Default)]
struct Table {
    records: FastMap<String, (Arc<SessionData>, Instant)>,
    /// Session id → the ticket of the latest load that may still cache it.
    loading: FastMap<String, u64>,
    next_ticket: u64,
}

impl Table {
    fn get(&self, id: &str, now: Instant) -> Option<Arc<SessionData>> {
        let (data, stored) = self.records.get(id)?;
        (now.saturating_duration_since(*stored) < ENTRY_LIFETIME).then(|| data.clone())
    }

    fn put(&mut self, id: &str, data: Arc<SessionData>, now: Instant) {
        if self.records.len() >= CAPACITY {
            self.records
                .retain(|_, (_, stored)| now.saturating_duration_since(*stored) < ENTRY_LIFETIME);
            if self.records.len() >= CAPACITY {
                self.records.clear();
            }
        }
        self.records.insert(id.to_string(), (data, now));
    }

    fn begin_load(&mut self, id: &str) -> LoadTicket {
        self.next_ticket += 1;
        if self.loading.len() >= CAPACITY {
            // Forgetting tickets only makes loads skip caching: safe.
            self.loading.clear();
        }
        self.loading.insert(id.to_string(), self.next_ticket);
        LoadTicket(self.next_ticket)
    }

    /// Caches `data` if `ticket` is still the current load of `id`.
    fn finish_load(
        &mut self,
        id: &str,
        ticket: LoadTicket,
        data: Arc<SessionData>,
        now: Instant,
    ) -> bool {
        if self.loading.get(id) != Some(&ticket.0) {
            return false;
        }
        self.loading.remove(id);
        self.put(id, data, now);
        true
    }

    fn evict(&mut self, id: &str) {
        self.records.remove(id);
        self.loading.remove(id);
    }
}

pub struct LocalCache {
    entries: Mutex<Table>,
    /// Sealed session-cookie value → the session id it seals, as text and
    /// parsed. A value always opens to the same id (authenticated
    /// encryption), so this memo needs no invalidation; it only spares the
    /// decryption on every request.
    opened: Mutex<FastMap<String, OpenedCookie>>,
    channel: String,
    ack_prefix: String,
    pool: Pool,
}

impl LocalCache {
    pub fn new(pool: Pool, key_prefix: &str) -> Arc<Self> {
        Arc::new(LocalCache {
            entries: Mutex::new(Table::default()),
            opened: Mutex::new(FastMap::default()),
            channel: format!("{key_prefix}invalidate"),
            ack_prefix: format!("{key_prefix}ack:"),
            pool,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        self.entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn get(&self, id: &str, now: Instant) -> Option<Arc<SessionData>> {
        self.lock().get(id, now)
    }

    /// Call before reading the record of `id` from the store.
    pub fn begin_load(&self, id: &str) -> LoadTicket {
        self.lock().begin_load(id)
    }

    /// Caches what the load of `ticket` read, unless `id` was evicted since
    /// [`LocalCache::begin_load`]. Returns whether it was cached.
    pub fn finish_load(
        &self,
        id: &str,
        ticket: LoadTicket,
        data: Arc<SessionData>,
        now: Instant,
    ) -> bool {
        self.lock().finish_load(id, ticket, data, now)
    }

    /// The session id `sealed` opens to, opening it with `open` only the
    /// first time this value is seen.
    pub fn open_cookie(
        &self,
        sealed: &str,
        open: impl FnOnce(&str) -> Option<OpenedCookie>,
    ) -> Option<OpenedCookie> {
        let known = self
            .opened
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(sealed)
            .cloned();
        if known.is_some() {
            return known;
        }
        let id = open(sealed)?;
        let mut opened = self
            .opened
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if opened.len() >= CAPACITY {
            opened.clear();
        }
        opened.insert(sealed.to_owned(), id.clone());
        Some(id)
    }

    pub fn evict(&self, id: &str) {
        self.lock().evict(id);
    }

    pub fn len(&self) -> usize {
        self.lock().records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Evicts `id` here and on every replica, returning once each replica
    /// subscribed has acknowledged (or `ACK_WAIT` has passed).
    pub async fn invalidate_everywhere(&self, id: &str) {
        self.evict(id);
        let mut bytes = [0u8; 8];
        rand::thread_rng().fill_bytes(&mut bytes);
        let message_id: String = bytes.iter().map(|byte| format!("{byte:02x}")).collect();
        let receivers: i64 = match self
            .pool
            .next()
            .publish(self.channel.as_str(), format!("{message_id} {id}"))
            .await
        {
            Ok(receivers) => receivers,
            Err(error) => {
                tracing::warn!(%error, "could not publish a session invalidation");
                return;
            }
        };
        let ack_key = format!("{}{message_id}", self.ack_prefix);
        let deadline = Instant::now() + ACK_WAIT;
        while Instant::now() < deadline {
            let acknowledged: Option<i64> = self.pool.get(ack_key.as_str()).await.unwrap_or(None);
            if acknowledged.unwrap_or(0) >= receivers {
                return;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        tracing::warn!(
            receivers,
            "not every replica acknowledged a session invalidation in time"
        );
    }

    /// Subscribes to invalidations for the life of the process (resubscribing
    /// after Redis restarts).
    pub fn spawn_listener(self: &Arc<Self>, redis_url: &str) -> Result<(), fred::error::Error> {
        let config = RedisConfig::from_url(redis_url)?;
        let subscriber = Builder::from_config(config)
            .set_policy(ReconnectPolicy::new_exponential(0, 50, 2000, 2))
            .build_subscriber_client()?;
        let cache = Arc::clone(self);
        tokio::spawn(async move {
            let _connection = subscriber.connect();
            if let Err(error) = subscriber.wait_for_connect().await {
                tracing::warn!(%error, "session cache subscriber could not connect yet");
            }
            let _resubscribe = subscriber.manage_subscriptions();
            let mut messages = subscriber.message_rx();
            if let Err(error) = subscriber.subscribe(cache.channel.as_str()).await {
                tracing::warn!(%error, "session cache could not subscribe to invalidations");
            }
            while let Ok(message) = messages.recv().await {
                let Some(text) = message.value.as_string() else {
                    continue;
                };
                let Some((message_id, id)) = text.split_once(' ') else {
                    continue;
                };
                cache.evict(id);
                let ack_key = format!("{}{message_id}", cache.ack_prefix);
                let acknowledged: Result<i64, _> = cache.pool.incr(ack_key.as_str()).await;
                if acknowledged.is_ok() {
                    let _: Result<i64, _> = cache.pool.expire(ack_key.as_str(), 10, None).await;
                }
            }
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(sub: &str) -> Arc<SessionData> {
        Arc::new(SessionData::for_bearer(crate::session::Identity {
            sub: sub.to_string(),
            ..Default::default()
        }))
    }

    #[test]
    fn an_invalidation_between_the_store_read_and_the_insert_wins() {
        let mut table = Table::default();
        let now = Instant::now();
        // A request misses the cache and starts reading the record...
        let ticket = table.begin_load("s1");
        let read_from_store = record("alice");
        // ...sign-out on another replica ends the session and the
        // invalidation arrives before the read's answer is cached...
        table.evict("s1");
        // ...so the record that was read is not cached.
        assert!(!table.finish_load("s1", ticket, read_from_store, now));
        assert!(table.get("s1", now).is_none());
        // A load that starts after the invalidation caches as usual.
        let later = table.begin_load("s1");
        assert!(table.finish_load("s1", later, record("alice"), now));
        assert!(table.get("s1", now).is_some());
    }

    #[test]
    fn the_older_of_two_overlapping_loads_does_not_cache() {
        let mut table = Table::default();
        let now = Instant::now();
        let first = table.begin_load("s1");
        let second = table.begin_load("s1");
        assert!(!table.finish_load("s1", first, record("old"), now));
        assert!(table.finish_load("s1", second, record("new"), now));
        assert_eq!(table.get("s1", now).unwrap().sub, "new");
        // Another id's eviction does not cancel this one's load.
        let third = table.begin_load("s2");
        table.evict("s1");
        assert!(table.finish_load("s2", third, record("bob"), now));
    }

    #[test]
    fn entries_expire_after_their_lifetime() {
        let mut table = Table::default();
        let now = Instant::now();
        table.put("s1", record("alice"), now);
        assert!(table.get("s1", now + ENTRY_LIFETIME / 2).is_some());
        assert!(table.get("s1", now + ENTRY_LIFETIME).is_none());
    }
}
