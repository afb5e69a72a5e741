//! What replicas agree on through Redis besides the session records:
//! short locks (one refresh per session at a time), a replay cache (each
//! logout token once), and indexes from the provider's `sid` and `sub` to
//! session ids (so one logout ends every matching session).
//!
//! Keys carry `key_prefix`. Indexes expire with the longest session they
//! can name (created + ttl), so they never grow without bound. The memory
//! variant gives a single process the same behaviour for the demo.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fred::prelude::{KeysInterface, LuaInterface, Pool, SetsInterface};
use fred::types::{Expiration, ExpireOptions, SetOptions};
use rand::RngCore;

use super::SessionError;
use crate::ops::metrics::{timed, Metrics};

const UNLOCK_SCRIPT: &str =
    "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end";

/// Proof of holding a lock; pass it back to release exactly that lock.
#[derive(Debug, Clone)]
pub struct LockToken {
    key: String,
    value: String,
}

#[derive(Clone)]
pub enum Coordination {
    Redis {
        pool: Pool,
        prefix: String,
        metrics: Metrics,
    },
    Memory(Arc<Mutex<MemoryState>>),
}

#[derive(Default)]
pub struct MemoryState {
    values: HashMap<String, String>,
    locks: HashMap<String, (String, std::time::Instant)>,
    seen: HashMap<String, std::time::Instant>,
    indexes: HashMap<String, HashSet<String>>,
}

fn unavailable(error: fred::error::Error) -> SessionError {
    SessionError::Unavailable(error.to_string())
}

pub(super) fn random_token() -> String {
    let mut bytes = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut bytes);
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

impl Coordination {
    pub fn redis(pool: Pool, prefix: &str, metrics: Metrics) -> Self {
        Coordination::Redis {
            pool,
            prefix: prefix.to_string(),
            metrics,
        }
    }

    pub fn memory() -> Self {
        Coordination::Memory(Arc::default())
    }

    fn key(&self, name: &str) -> String {
        match self {
            Coordination::Redis { prefix, .. } => format!("{prefix}{name}"),
            Coordination::Memory(_) => name.to_string(),
        }
    }

    fn memory_state(state: &Mutex<MemoryState>) -> std::sync::MutexGuard<'_, MemoryState> {
        state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Takes the lock `name` for at most `ttl`, or None if someone holds it.
    pub async fn try_lock(
        &self,
        name: &str,
        ttl: Duration,
    ) -> Result<Option<LockToken>, SessionError> {
        let token = LockToken {
            key: self.key(name),
            value: random_token(),
        };
        let taken = match self {
            Coordination::Redis { pool, metrics, .. } => {
                let set = pool.set::<Option<String>, _, _>(
                    token.key.as_str(),
                    token.value.as_str(),
                    Some(Expiration::PX(
                        i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX),
                    )),
                    Some(SetOptions::NX),
                    false,
                );
                let reply = timed(metrics, "lock", set).await.map_err(unavailable)?;
                reply.is_some()
            }
            Coordination::Memory(state) => {
                let mut state = Self::memory_state(state);
                let now = std::time::Instant::now();
                let free = state
                    .locks
                    .get(&token.key)
                    .is_none_or(|(_, until)| *until <= now);
                if free {
                    state
                        .locks
                        .insert(token.key.clone(), (token.value.clone(), now + ttl));
                }
                free
            }
        };
        Ok(taken.then_some(token))
    }

    /// Releases the lock if it is still ours (it may have expired and been retaken).
    pub async fn unlock(&self, token: &LockToken) {
        match self {
            Coordination::Redis { pool, metrics, .. } => {
                let eval = pool.eval::<i64, _, _, _>(
                    UNLOCK_SCRIPT,
                    vec![token.key.as_str()],
                    vec![token.value.as_str()],
                );
                let released = timed(metrics, "unlock", eval).await;
                if let Err(error) = released {
                    tracing::warn!(%error, "could not release a lock; it expires on its own");
                }
            }
            Coordination::Memory(state) => {
                let mut state = Self::memory_state(state);
                if state
                    .locks
                    .get(&token.key)
                    .is_some_and(|(value, _)| *value == token.value)
                {
                    state.locks.remove(&token.key);
                }
            }
        }
    }

    /// The value stored under `name`, storing `proposed` first if there is
    /// none: every replica ends up with the value the first one stored.
    pub async fn get_or_init(&self, name: &str, proposed: &str) -> Result<String, SessionError> {
        let key = self.key(name);
        match self {
            Coordination::Redis { pool, .. } => {
                let _: Option<String> = pool
                    .set(key.as_str(), proposed, None, Some(SetOptions::NX), false)
                    .await
                    .map_err(unavailable)?;
                let stored: Option<String> = pool.get(key.as_str()).await.map_err(unavailable)?;
                stored.ok_or_else(|| SessionError::Unavailable(format!("{key} vanished")))
            }
            Coordination::Memory(state) => Ok(Self::memory_state(state)
                .values
                .entry(key)
                .or_insert_with(|| proposed.to_string())
                .clone()),
        }
    }

    /// True the first time `name` is seen within `ttl`; false on a replay.
    pub async fn first_sighting(&self, name: &str, ttl: Duration) -> Result<bool, SessionError> {
        let key = self.key(name);
        match self {
            Coordination::Redis { pool, metrics, .. } => {
                let set = pool.set::<Option<String>, _, _>(
                    key.as_str(),
                    "1",
                    Some(Expiration::EX(
                        i64::try_from(ttl.as_secs().max(1)).unwrap_or(i64::MAX),
                    )),
                    Some(SetOptions::NX),
                    false,
                );
                let reply = timed(metrics, "replay_check", set)
                    .await
                    .map_err(unavailable)?;
                Ok(reply.is_some())
            }
            Coordination::Memory(state) => {
                let mut state = Self::memory_state(state);
                let now = std::time::Instant::now();
                state.seen.retain(|_, until| *until > now);
                Ok(state.seen.insert(key, now + ttl).is_none())
            }
        }
    }

    /// Adds `member` to the index `name`, which lives at least until `expires_at` (unix seconds).
    pub async fn index_add(
        &self,
        name: &str,
        member: &str,
        expires_at: i64,
    ) -> Result<(), SessionError> {
        let key = self.key(name);
        match self {
            Coordination::Redis { pool, metrics, .. } => {
                let add = async {
                    let _: i64 = pool.sadd(key.as_str(), member).await?;
                    // GT: only ever push the index's expiry later. A key without a
                    // TTL counts as infinite for GT, so set one first when missing.
                    let ttl: i64 = pool.ttl(key.as_str()).await?;
                    let option = if ttl < 0 {
                        None
                    } else {
                        Some(ExpireOptions::GT)
                    };
                    pool.expire_at::<i64, _>(key.as_str(), expires_at, option)
                        .await
                };
                timed(metrics, "index_add", add)
                    .await
                    .map_err(unavailable)?;
            }
            Coordination::Memory(state) => {
                Self::memory_state(state)
                    .indexes
                    .entry(key)
                    .or_default()
                    .insert(member.to_string());
            }
        }
        Ok(())
    }

    pub async fn index_remove(&self, name: &str, member: &str) -> Result<(), SessionError> {
        let key = self.key(name);
        match self {
            Coordination::Redis { pool, metrics, .. } => {
                let remove = pool.srem::<i64, _, _>(key.as_str(), member);
                timed(metrics, "index_remove", remove)
                    .await
                    .map_err(unavailable)?;
            }
            Coordination::Memory(state) => {
                if let Some(members) = Self::memory_state(state).indexes.get_mut(&key) {
                    members.remove(member);
                }
            }
        }
        Ok(())
    }

    /// Every member of the index `name`, removing the index.
    pub async fn index_take(&self, name: &str) -> Result<Vec<String>, SessionError> {
        let key = self.key(name);
        match self {
            Coordination::Redis { pool, metrics, .. } => {
                let take = async {
                    let members: Vec<String> = pool.smembers(key.as_str()).await?;
                    let _: i64 = pool.del(key.as_str()).await?;
                    Ok::<_, fred::error::Error>(members)
                };
                timed(metrics, "index_take", take)
                    .await
                    .map_err(unavailable)
            }
            Coordination::Memory(state) => Ok(Self::memory_state(state)
                .indexes
                .remove(&key)
                .map(|members| members.into_iter().collect())
                .unwrap_or_default()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn memory_lock_is_exclusive_until_released() {
        let coordination = Coordination::memory();
        let first = coordination
            .try_lock("l", Duration::from_secs(5))
            .await
            .unwrap();
        assert!(first.is_some());
        assert!(coordination
            .try_lock("l", Duration::from_secs(5))
            .await
            .unwrap()
            .is_none());
        coordination.unlock(&first.unwrap()).await;
        assert!(coordination
            .try_lock("l", Duration::from_secs(5))
            .await
            .unwrap()
            .is_some());
    }

    #[tokio::test]
    async fn memory_replay_cache_sees_each_name_once() {
        let coordination = Coordination::memory();
        assert!(coordination
            .first_sighting("jti-1", Duration::from_secs(60))
            .await
            .unwrap());
        assert!(!coordination
            .first_sighting("jti-1", Duration::from_secs(60))
            .await
            .unwrap());
        assert!(coordination
            .first_sighting("jti-2", Duration::from_secs(60))
            .await
            .unwrap());
    }

    #[tokio::test]
    async fn memory_index_take_empties_the_index() {
        let coordination = Coordination::memory();
        coordination.index_add("sub:a", "s1", 0).await.unwrap();
        coordination.index_add("sub:a", "s2", 0).await.unwrap();
        coordination.index_remove("sub:a", "s1").await.unwrap();
        assert_eq!(
            coordination.index_take("sub:a").await.unwrap(),
            vec!["s2".to_string()]
        );
        assert!(coordination.index_take("sub:a").await.unwrap().is_empty());
    }
}
