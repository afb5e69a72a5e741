//! The test harness: real Redis, the dev OP, an echo upstream, portico.
#![allow(dead_code)]

pub mod app;
pub mod browser;
pub mod caddy;
pub mod cdp;
pub mod chromium;
pub mod deploy;
pub mod lenient_upstream;
pub mod nginx;
pub mod otlp;
pub mod process;
pub mod programs;
pub mod redirect_corpus;
pub mod redis;
pub mod redis_proxy;
pub mod tls_upstream;

pub use app::{TestApp, TestAppBuilder, CLIENT_ID, COOKIE_SECRET};
pub use browser::{encode, query_param, Browser, Page};
pub use chromium::{Chromium, PageState, Tab};
pub use otlp::{OtlpReceiver, ReceivedSpan};
pub use redis::RedisServer;
pub use redis_proxy::RedisProxy;

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

/// An error with its sources, for assertion messages.
pub fn error_text(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}

/// The CSRF token in a page's sign-out form.
pub fn csrf_of(page: &str) -> String {
    page.split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("a csrf field")
        .to_string()
}

/// A self-signed certificate for 127.0.0.1/localhost (openssl CLI):
/// (certificate path, key path) in `directory`.
pub fn self_signed_certificate(
    directory: &std::path::Path,
) -> (std::path::PathBuf, std::path::PathBuf) {
    programs::require("openssl", "openssl");
    std::fs::create_dir_all(directory).expect("certificate directory");
    let cert = directory.join("cert.pem");
    let key = directory.join("key.pem");
    let made = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ])
        .args([
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
            "-days",
            "2",
        ])
        .args([
            "-addext",
            "basicConstraints=critical,CA:FALSE",
            "-addext",
            "extendedKeyUsage=serverAuth",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl runs");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    (cert, key)
}
