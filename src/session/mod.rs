//! Sessions: the record a signed-in request needs, where it lives, and when it ends.
//!
//! Only a signed-in user has a record (anonymous traffic never writes to the
//! store). A request costs one store read, or none when the local cache
//! (`local_cache`, on by default) holds the record; a write happens only at login,
//! sign-out, or when the idle expiry needs extending, at most once a minute.
//! Tokens in the record are sealed (`crypto`), so a dump of Redis reveals none.

mod cache_sync;
mod cookies;
mod coordination;
mod crypto;
mod local_cache;
mod record;
mod store;

use std::sync::Arc;

use http::HeaderMap;
use time::OffsetDateTime;
use tower_sessions::session::Id;
use tower_sessions::{Expiry, Session};

pub use cookies::{
    host_prefix_applies, host_prefixed_name, request_cookies, CookieRules, LOGIN_COOKIE_LIFETIME,
};
pub use coordination::{Coordination, LockToken};
pub use crypto::{Keys, SealError, SealPurpose};
pub use local_cache::{
    entry_bytes, LocalCache, OpenedCookie, BUDGET_BYTES, ENTRY_LIFETIME, HEARTBEAT_INTERVAL, LEASE,
};
pub use record::{
    freshness, Freshness, HeaderMemo, Identity, SessionData, TokenSet, EXTEND_INTERVAL_SECONDS,
};
pub use store::{
    redis_pool, warn_if_redis_is_silent, SessionBackend, StoreSetupError, TimedStore,
    REDIS_COMMAND_TIMEOUT,
};

use crate::config::{SessionConfig, StoreKind};
use crate::ops::Metrics;

/// The key of portico's data inside the tower-sessions record.
const RECORD_KEY: &str = "portico";
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("session store unavailable: {0}")]
    Unavailable(String),
    #[error("session record unreadable: {0}")]
    Corrupt(String),
}

impl From<tower_sessions::session::Error> for SessionError {
    fn from(error: tower_sessions::session::Error) -> Self {
        match error {
            tower_sessions::session::Error::SerdeJson(inner) => {
                SessionError::Corrupt(inner.to_string())
            }
            tower_sessions::session::Error::Store(inner) => match inner {
                tower_sessions::session_store::Error::Decode(text)
                | tower_sessions::session_store::Error::Encode(text) => SessionError::Corrupt(text),
                other => SessionError::Unavailable(other.to_string()),
            },
        }
    }
}

/// A session found for the request.
pub struct ActiveSession {
    pub id: Id,
    /// Shared with the local cache: reading a cached session copies nothing.
    pub data: Arc<SessionData>,
    /// The loaded tower-sessions handle: writing through it needs no
    /// re-read. `None` for a record served from the local cache.
    handle: Option<Session>,
}

/// The session service: store, cookie rules, keys and lifetimes.
#[derive(Clone)]
pub struct Sessions {
    backend: Arc<TimedStore>,
    metrics: Metrics,
    coordination: Coordination,
    local_cache: Option<Arc<LocalCache>>,
    pub cookies: CookieRules,
    pub keys: Keys,
    ttl_seconds: i64,
    idle_timeout_seconds: i64,
}

impl Sessions {
    pub fn new(config: &SessionConfig, backend: SessionBackend, metrics: Metrics) -> Self {
        let keys = Keys::derive(config.cookie_secret.expose());
        let cookies = CookieRules::for_config(
            &config.cookie_name,
            config.cookie_host_prefix,
            config.cookie_secure,
            config.cookie_domain.clone(),
            keys.cookie.clone(),
        )
        .with_login_key(keys.login_cookie.clone());
        let coordination = match backend.redis_pool() {
            Some(pool) => Coordination::redis(pool.clone(), &config.key_prefix, metrics.clone()),
            None => Coordination::memory(),
        };
        let local_cache = match backend.redis_pool() {
            Some(pool) if config.local_cache => {
                let cache = LocalCache::new(pool.clone(), &config.key_prefix);
                match cache_sync::spawn(&cache, config.redis_url.expose(), metrics.clone()) {
                    Ok(()) => Some(cache),
                    Err(error) => {
                        tracing::warn!(
                            %error,
                            "local session cache off: cannot build its Redis subscriber; \
                             every signed-in request reads Redis"
                        );
                        None
                    }
                }
            }
            _ => None,
        };
        Sessions {
            backend: Arc::new(TimedStore::new(backend, metrics.clone())),
            metrics,
            coordination,
            local_cache,
            cookies,
            keys,
            ttl_seconds: seconds(config.ttl),
            idle_timeout_seconds: seconds(config.idle_timeout),
        }
    }

    /// Builds the backend named by the config.
    pub fn backend_for(config: &SessionConfig) -> Result<SessionBackend, StoreSetupError> {
        match config.store {
            StoreKind::Redis => SessionBackend::redis(config.redis_url.expose()),
            StoreKind::Memory => Ok(SessionBackend::memory()),
        }
    }

    pub fn backend(&self) -> &SessionBackend {
        self.backend.backend()
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    pub fn idle_timeout_seconds(&self) -> i64 {
        self.idle_timeout_seconds
    }

    pub fn coordination(&self) -> &Coordination {
        &self.coordination
    }

    /// Reads the record of `id` afresh (one store read).
    pub async fn reload(&self, id: Id) -> Result<Option<ActiveSession>, SessionError> {
        let handle = Session::new(Some(id), self.backend.clone(), None);
        let data = handle.get::<SessionData>(RECORD_KEY).await?;
        Ok(data.map(|data| ActiveSession {
            id,
            data: Arc::new(data),
            handle: Some(handle),
        }))
    }

    /// The session the request's cookie points to: one store read, or none
    /// when there is no valid cookie. A missing record is `Ok(None)`.
    pub async fn load(&self, headers: &HeaderMap) -> Result<Option<ActiveSession>, SessionError> {
        crate::telemetry::traced("session.load", self.load_untraced(headers)).await
    }

    async fn load_untraced(
        &self,
        headers: &HeaderMap,
    ) -> Result<Option<ActiveSession>, SessionError> {
        let Some(cache) = &self.local_cache else {
            return match self.cookie_session_id(headers) {
                Some(id) => self.reload(id).await,
                None => Ok(None),
            };
        };
        let Some(opened) = self
            .cookies
            .session_cookie_values(headers)
            .find_map(|sealed| {
                cache.open_cookie(sealed, |sealed| {
                    let text = self.cookies.open_session_value(sealed)?;
                    let id = text.parse::<Id>().ok()?;
                    Some(OpenedCookie {
                        text: Arc::from(text),
                        id,
                    })
                })
            })
        else {
            return Ok(None);
        };
        let id = opened.id;
        let now = std::time::Instant::now();
        if let Some(data) = cache.get(&opened.text, now) {
            // No tower-sessions handle: a write (rare) makes one then.
            return Ok(Some(ActiveSession {
                id,
                data,
                handle: None,
            }));
        }
        // The ticket is taken before the read: an invalidation that lands
        // while the read is in flight cancels it, and the record read is
        // then not cached (it may be the one just ended).
        let ticket = cache.begin_load(&opened.text);
        let loaded = self.reload(id).await?;
        if let Some(active) = &loaded {
            cache.finish_load(&opened.text, ticket, active.data.clone(), now);
        }
        Ok(loaded)
    }

    /// The local cache, unless `local_cache = false` (Redis store only).
    pub fn local_cache(&self) -> Option<&Arc<LocalCache>> {
        self.local_cache.as_ref()
    }

    /// Evicts `id` from every replica's cache. A `revocation` (the record is
    /// gone) returns only once no replica can serve it from its cache; a
    /// change returns after the acknowledgements or `ACK_WAIT`.
    async fn invalidate(&self, id: Id, revocation: bool) {
        if let Some(cache) = &self.local_cache {
            cache_sync::invalidate_everywhere(cache, &id.to_string(), revocation).await;
        }
    }

    /// Builds the record for a new login at `now`.
    pub fn new_record(&self, identity: Identity, tokens: &TokenSet, now: i64) -> SessionData {
        let provider_sid = identity.provider_sid.clone();
        let mut record = SessionData::for_bearer(identity);
        record.provider_sid = provider_sid;
        record.created_at = now;
        record.last_active_at = now;
        record.expires_at = now + self.ttl_seconds.min(self.idle_timeout_seconds);
        record.sealed_tokens = self.seal_tokens(tokens);
        record
    }

    pub fn seal_tokens(&self, tokens: &TokenSet) -> String {
        let json = serde_json::to_vec(tokens).unwrap_or_default();
        self.keys.seal(SealPurpose::SessionTokens, &json)
    }

    pub fn open_tokens(&self, data: &SessionData) -> Option<TokenSet> {
        let json = self
            .keys
            .open(SealPurpose::SessionTokens, &data.sealed_tokens)
            .ok()?;
        serde_json::from_slice(&json).ok()
    }

    /// Stores a new record under a fresh id (never one the browser chose) and
    /// deletes `previous` if the browser had one. Returns the cookie to set.
    pub async fn create(
        &self,
        data: &SessionData,
        previous: Option<Id>,
        now: i64,
    ) -> Result<cookie::Cookie<'static>, SessionError> {
        if let Some(previous) = previous {
            // Through `delete`: no replica may go on serving it from its cache.
            self.delete(previous).await?;
        }
        let session = Session::new(None, self.backend.clone(), Some(expiry_at(data.expires_at)));
        session.insert(RECORD_KEY, data).await?;
        session.save().await?;
        let id = session
            .id()
            .ok_or_else(|| SessionError::Unavailable("store returned no session id".into()))?;
        let absolute_end = data.created_at + self.ttl_seconds;
        let member = id.to_string();
        self.coordination
            .index_add(&sub_index(&data.sub), &member, absolute_end)
            .await?;
        if let Some(sid) = &data.provider_sid {
            self.coordination
                .index_add(&sid_index(sid), &member, absolute_end)
                .await?;
        }
        Ok(self.cookies.session_cookie(
            &id.to_string(),
            time::Duration::seconds((absolute_end - now).max(0)),
        ))
    }

    /// Marks the session active at `now`: idle expiry pushed forward,
    /// bounded by the absolute ttl. Changes the copy only; `write` stores it.
    pub fn touch(&self, data: &mut SessionData, now: i64) {
        data.last_active_at = now;
        data.expires_at = (data.created_at + self.ttl_seconds).min(now + self.idle_timeout_seconds);
    }

    /// Pushes the idle expiry forward. A record is only rewritten from a copy
    /// read under the session's lock, so an extension can never put back
    /// tokens a concurrent refresh has just rotated. If the lock is busy (a
    /// refresh is writing), the extension is skipped: the refresh extends.
    pub async fn extend(&self, active: &ActiveSession, now: i64) -> Result<(), SessionError> {
        let Some(lock) = self
            .coordination
            .try_lock(&lock_name(active.id), LOCK_LIFETIME)
            .await?
        else {
            return Ok(());
        };
        let outcome = async {
            let Some(mut current) = self.reload(active.id).await? else {
                return Ok(());
            };
            self.touch(Arc::make_mut(&mut current.data), now);
            self.write(&current).await
        }
        .await;
        self.coordination.unlock(&lock).await;
        outcome
    }

    /// Rewrites the record as it is now (same id, expiry from `expires_at`):
    /// one write, no re-read.
    pub async fn write(&self, active: &ActiveSession) -> Result<(), SessionError> {
        let unloaded;
        let handle = match &active.handle {
            Some(handle) => handle,
            None => {
                unloaded = Session::new(Some(active.id), self.backend.clone(), None);
                &unloaded
            }
        };
        handle.set_expiry(Some(expiry_at(active.data.expires_at)));
        handle.insert(RECORD_KEY, &*active.data).await?;
        handle.save().await?;
        self.invalidate(active.id, false).await;
        Ok(())
    }

    pub async fn delete(&self, id: Id) -> Result<(), SessionError> {
        Session::new(Some(id), self.backend.clone(), None)
            .delete()
            .await?;
        self.invalidate(id, true).await;
        Ok(())
    }

    /// Deletes one signed-in session and its index entries.
    pub async fn end(&self, active: &ActiveSession) -> Result<(), SessionError> {
        self.delete(active.id).await?;
        let member = active.id.to_string();
        self.coordination
            .index_remove(&sub_index(&active.data.sub), &member)
            .await?;
        if let Some(sid) = &active.data.provider_sid {
            self.coordination
                .index_remove(&sid_index(sid), &member)
                .await?;
        }
        Ok(())
    }

    /// Ends every session of the user `sub`; returns how many were named.
    pub async fn end_all_of_subject(&self, sub: &str) -> Result<usize, SessionError> {
        let members = self.coordination.index_take(&sub_index(sub)).await?;
        self.delete_members(&members).await?;
        Ok(members.len())
    }

    /// Ends every session created under the provider session `sid`.
    pub async fn end_all_of_provider_session(&self, sid: &str) -> Result<usize, SessionError> {
        let members = self.coordination.index_take(&sid_index(sid)).await?;
        self.delete_members(&members).await?;
        Ok(members.len())
    }

    async fn delete_members(&self, members: &[String]) -> Result<(), SessionError> {
        for member in members {
            if let Ok(id) = member.parse::<Id>() {
                self.delete(id).await?;
            }
        }
        Ok(())
    }

    /// The session id the request's cookie names, if authentic (not loaded).
    pub fn cookie_session_id(&self, headers: &HeaderMap) -> Option<Id> {
        self.cookies
            .read_session_id(headers)
            .and_then(|text| text.parse::<Id>().ok())
    }
}

/// How long one replica may hold a session's lock (refresh or extension).
pub const LOCK_LIFETIME: std::time::Duration = std::time::Duration::from_secs(15);

pub fn lock_name(id: Id) -> String {
    format!("lock:{id}")
}

fn sub_index(sub: &str) -> String {
    format!("sub:{sub}")
}

fn sid_index(sid: &str) -> String {
    format!("sid:{sid}")
}

fn expiry_at(unix_seconds: i64) -> Expiry {
    Expiry::AtDateTime(
        OffsetDateTime::from_unix_timestamp(unix_seconds).unwrap_or(OffsetDateTime::UNIX_EPOCH),
    )
}

fn seconds(duration: std::time::Duration) -> i64 {
    i64::try_from(duration.as_secs()).unwrap_or(i64::MAX / 4)
}
