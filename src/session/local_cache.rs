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

pub struct LocalCache {
    entries: Mutex<FastMap<String, (Arc<SessionData>, Instant)>>,
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
            entries: Mutex::new(FastMap::default()),
            opened: Mutex::new(FastMap::default()),
            channel: format!("{key_prefix}invalidate"),
            ack_prefix: format!("{key_prefix}ack:"),
            pool,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FastMap<String, (Arc<SessionData>, Instant)>> {
        self.entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn get(&self, id: &str, now: Instant) -> Option<Arc<SessionData>> {
        let entries = self.lock();
        let (data, stored) = entries.get(id)?;
        (now.saturating_duration_since(*stored) < ENTRY_LIFETIME).then(|| data.clone())
    }

    pub fn put(&self, id: &str, data: Arc<SessionData>, now: Instant) {
        let mut entries = self.lock();
        if entries.len() >= CAPACITY {
            entries
                .retain(|_, (_, stored)| now.saturating_duration_since(*stored) < ENTRY_LIFETIME);
            if entries.len() >= CAPACITY {
                entries.clear();
            }
        }
        entries.insert(id.to_string(), (data, now));
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
        self.lock().remove(id);
    }

    pub fn len(&self) -> usize {
        self.lock().len()
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
