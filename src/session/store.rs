//! The session store: Redis (tower-sessions-redis-store over a fred pool) or
//! memory (for the demo and development).
//!
//! The Redis client is built so an outage degrades cleanly: commands time out
//! after a second instead of hanging, a disconnected pool fails fast, and a
//! reconnect policy brings it back when Redis returns, with no restart.
//! The store writes the bare session id as the key (`SET … EXAT`), so Redis
//! expires records itself; portico's own keys carry `key_prefix`.

use std::time::Duration;

use async_trait::async_trait;
use fred::prelude::{Builder, ClientLike, Config as RedisConfig, Pool, ReconnectPolicy};
use tower_sessions::session::{Id, Record};
use tower_sessions::session_store::{self, SessionStore};
use tower_sessions::MemoryStore;
use tower_sessions_redis_store::RedisStore;

use crate::ops::metrics::{timed, Metrics};

/// How long one Redis command may take before the request gets a 503.
pub const REDIS_COMMAND_TIMEOUT: Duration = Duration::from_millis(1000);
const REDIS_POOL_SIZE: usize = 4;

#[derive(Debug, thiserror::Error)]
pub enum StoreSetupError {
    #[error("redis_url is not usable: {0}")]
    RedisUrl(String),
}

/// One of the two backends, behind tower-sessions' `SessionStore`.
#[derive(Debug, Clone)]
pub enum SessionBackend {
    Redis { store: RedisStore<Pool>, pool: Pool },
    Memory(MemoryStore),
}

impl SessionBackend {
    /// Builds the Redis pool and starts connecting in the background; does not
    /// wait, so portico starts (and `/readyz` says 503) while Redis is down.
    pub fn redis(url: &str) -> Result<Self, StoreSetupError> {
        let pool = redis_pool(url)?;
        Ok(SessionBackend::Redis {
            store: RedisStore::new(pool.clone()),
            pool,
        })
    }

    pub fn memory() -> Self {
        SessionBackend::Memory(MemoryStore::default())
    }

    /// The Redis pool, for portico's own keys; None for the memory store.
    pub fn redis_pool(&self) -> Option<&Pool> {
        match self {
            SessionBackend::Redis { pool, .. } => Some(pool),
            SessionBackend::Memory(_) => None,
        }
    }

    /// True when the store answers now (PING for Redis).
    pub async fn is_reachable(&self) -> bool {
        match self {
            SessionBackend::Redis { pool, .. } => {
                let ping = pool.next_connected().ping::<String>(None);
                matches!(
                    tokio::time::timeout(REDIS_COMMAND_TIMEOUT, ping).await,
                    Ok(Ok(_))
                )
            }
            SessionBackend::Memory(_) => true,
        }
    }
}

/// How long start-up waits for Redis before saying that it does not answer.
const STARTUP_GRACE: Duration = Duration::from_millis(2000);

/// At start-up, when Redis does not answer within [`STARTUP_GRACE`], logs a
/// warning at once naming the URL (password masked), so a wrong `redis_url`
/// or `REDIS_URL` is seen in the log and not only by `/readyz`. portico keeps
/// running either way: the pool reconnects by itself.
pub fn warn_if_redis_is_silent(backend: &SessionBackend, shown_url: String) {
    let SessionBackend::Redis { pool, .. } = backend else {
        return;
    };
    let pool = pool.clone();
    tokio::spawn(async move {
        let answered = async {
            pool.wait_for_connect().await?;
            pool.next_connected().ping::<String>(None).await
        };
        if !matches!(
            tokio::time::timeout(STARTUP_GRACE, answered).await,
            Ok(Ok(_))
        ) {
            tracing::warn!(
                redis_url = %shown_url,
                "Redis does not answer; sessions cannot be stored until it does \
                 (sign-ins get a 503, /readyz says not ready); check redis_url or REDIS_URL \
                 and that Redis is running — portico keeps trying"
            );
        }
    });
}

/// A fred pool that times out commands, fails fast while disconnected and
/// reconnects forever with capped exponential backoff.
pub fn redis_pool(url: &str) -> Result<Pool, StoreSetupError> {
    let mut config =
        RedisConfig::from_url(url).map_err(|error| StoreSetupError::RedisUrl(error.to_string()))?;
    config.fail_fast = true;
    let pool = Builder::from_config(config)
        .with_performance_config(|performance| {
            performance.default_command_timeout = REDIS_COMMAND_TIMEOUT;
        })
        .with_connection_config(|connection| {
            connection.connection_timeout = REDIS_COMMAND_TIMEOUT;
            connection.internal_command_timeout = REDIS_COMMAND_TIMEOUT;
            connection.max_command_attempts = 1;
        })
        .set_policy(ReconnectPolicy::new_exponential(0, 50, 2000, 2))
        .build_pool(REDIS_POOL_SIZE)
        .map_err(|error| StoreSetupError::RedisUrl(error.to_string()))?;
    // The connection tasks run for the life of the pool; errors are retried
    // by the reconnect policy and surface as command errors meanwhile.
    let _handles = pool.connect_pool();
    Ok(pool)
}

/// The backend with every call timed and counted (`portico_redis_command_*`).
#[derive(Debug, Clone)]
pub struct TimedStore {
    backend: SessionBackend,
    metrics: Metrics,
}

impl TimedStore {
    pub fn new(backend: SessionBackend, metrics: Metrics) -> Self {
        TimedStore { backend, metrics }
    }

    pub fn backend(&self) -> &SessionBackend {
        &self.backend
    }
}

#[async_trait]
impl SessionStore for TimedStore {
    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        timed(&self.metrics, "session_create", self.backend.create(record)).await
    }

    async fn save(&self, record: &Record) -> session_store::Result<()> {
        timed(&self.metrics, "session_save", self.backend.save(record)).await
    }

    async fn load(&self, session_id: &Id) -> session_store::Result<Option<Record>> {
        timed(&self.metrics, "session_load", self.backend.load(session_id)).await
    }

    async fn delete(&self, session_id: &Id) -> session_store::Result<()> {
        timed(
            &self.metrics,
            "session_delete",
            self.backend.delete(session_id),
        )
        .await
    }
}

#[async_trait]
impl SessionStore for SessionBackend {
    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        match self {
            SessionBackend::Redis { store, .. } => store.create(record).await,
            SessionBackend::Memory(store) => store.create(record).await,
        }
    }

    async fn save(&self, record: &Record) -> session_store::Result<()> {
        match self {
            SessionBackend::Redis { store, .. } => store.save(record).await,
            SessionBackend::Memory(store) => store.save(record).await,
        }
    }

    async fn load(&self, session_id: &Id) -> session_store::Result<Option<Record>> {
        match self {
            SessionBackend::Redis { store, .. } => store.load(session_id).await,
            SessionBackend::Memory(store) => store.load(session_id).await,
        }
    }

    async fn delete(&self, session_id: &Id) -> session_store::Result<()> {
        match self {
            SessionBackend::Redis { store, .. } => store.delete(session_id).await,
            SessionBackend::Memory(store) => store.delete(session_id).await,
        }
    }
}
