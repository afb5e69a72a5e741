//! The test harness: real Redis, the dev OP, an echo upstream, portico.
#![allow(dead_code)]

pub mod app;
pub mod browser;
pub mod process;
pub mod redis;

pub use app::{TestApp, CLIENT_ID};
pub use browser::{encode, query_param, Browser, Page};
pub use redis::RedisServer;

/// Logs of the code under test, shown for failing tests (RUST_LOG=debug for more).
pub fn init_logging() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_test_writer()
            .try_init();
    });
}
