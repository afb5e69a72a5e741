//! The real `portico` binary as a child process, for signals and exit codes.
//!
//! The dev OP and the echo upstream run in the test (on its runtime), Redis
//! is the shared test server, and the config is a file the test can edit.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use portico::devop::{DevOp, DevOpOptions, EchoUpstream};

use super::app::{CLIENT_ID, CLIENT_SECRET, COOKIE_SECRET};
use super::redis::{self, free_port};

pub struct PorticoProcess {
    pub child: tokio::process::Child,
    pub base: String,
    pub metrics_base: String,
    pub config_path: PathBuf,
    pub log_path: PathBuf,
    pub op: DevOp,
    pub upstream: EchoUpstream,
    /// The `[server]`, `[oidc]` and `[session]` sections (routes go after).
    pub head: String,
}

impl PorticoProcess {
    /// Starts portico with `routes` (TOML `[[routes]]` blocks, `{upstream}`
    /// replaced) and `server_extra` lines in `[server]`; waits until ready.
    pub async fn start(routes: &str, server_extra: &str) -> PorticoProcess {
        let op = DevOp::start(DevOpOptions {
            client_id: CLIENT_ID.to_string(),
            client_secret: CLIENT_SECRET.to_string(),
            ..DevOpOptions::default()
        })
        .await
        .unwrap();
        let upstream = EchoUpstream::start().await.unwrap();
        let port = free_port();
        let metrics_port = free_port();
        let base = format!("http://127.0.0.1:{port}");
        let shared = redis::shared();
        let redis_url = shared.url(shared.fresh_database());
        let head = format!(
            r#"[server]
listen = "127.0.0.1:{port}"
public_url = "{base}"
metrics_listen = "127.0.0.1:{metrics_port}"
log_format = "json"
{server_extra}

[oidc]
issuer = "{issuer}"
client_id = "{CLIENT_ID}"
client_secret = "{CLIENT_SECRET}"

[session]
redis_url = "{redis_url}"
cookie_secret = "{COOKIE_SECRET}"
"#,
            issuer = op.issuer(),
        );
        let directory =
            std::env::temp_dir().join(format!("portico-test-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&directory).unwrap();
        let config_path = directory.join("portico.toml");
        let log_path = directory.join("portico.log");
        let mut process = PorticoProcess {
            child: spawn_placeholder(),
            base,
            metrics_base: format!("http://127.0.0.1:{metrics_port}"),
            config_path,
            log_path,
            op,
            upstream,
            head,
        };
        process.write_routes(routes);
        let log = std::fs::File::create(&process.log_path).unwrap();
        process.child = tokio::process::Command::new(env!("CARGO_BIN_EXE_portico"))
            .arg("--config")
            .arg(&process.config_path)
            .env_remove("PORTICO_CONFIG")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        process.wait_until_ready().await;
        process
    }

    /// Rewrites the config file with these routes.
    pub fn write_routes(&self, routes: &str) {
        let text = format!(
            "{}\n{}",
            self.head,
            routes.replace("{upstream}", &self.upstream.url())
        );
        std::fs::write(&self.config_path, text).unwrap();
    }

    /// Rewrites the config file with exactly `text`.
    pub fn write_config(&self, text: &str) {
        std::fs::write(&self.config_path, text).unwrap();
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    pub fn signal(&self, name: &str) {
        let pid = self.child.id().expect("running").to_string();
        let status = std::process::Command::new("kill")
            .arg(format!("-{name}"))
            .arg(&pid)
            .status()
            .unwrap();
        assert!(status.success(), "kill -{name} {pid}");
    }

    async fn wait_until_ready(&mut self) {
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ready = client
                .get(format!("{}/readyz", self.metrics_base))
                .send()
                .await
                .is_ok_and(|response| response.status().is_success());
            if ready {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("portico exited early ({status}):\n{}", self.logs());
            }
            assert!(
                Instant::now() < deadline,
                "portico never became ready:\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits (bounded) for the process to exit; returns its exit code.
    pub async fn exit_code(&mut self, within: Duration) -> Option<i32> {
        match tokio::time::timeout(within, self.child.wait()).await {
            Ok(status) => status.unwrap().code(),
            Err(_) => panic!("portico did not exit within {within:?}:\n{}", self.logs()),
        }
    }
}

/// A child that is replaced before use (keeps `PorticoProcess` simple).
fn spawn_placeholder() -> tokio::process::Child {
    tokio::process::Command::new("true")
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

/// One HTTP/1.1 request on an open connection; returns (status, body).
pub async fn request_on(
    stream: &mut tokio::net::TcpStream,
    path: &str,
) -> std::io::Result<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: application/json\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut chunk))
            .await
            .map_err(|_| std::io::Error::other("read timed out"))??;
        if read == 0 {
            return Err(std::io::Error::other("connection closed"));
        }
        buffer.extend_from_slice(&chunk[..read]);
        let text = String::from_utf8_lossy(&buffer).into_owned();
        let Some((head, body)) = text.split_once("\r\n\r\n") else {
            continue;
        };
        let length = content_length_of(head);
        if body.len() >= length {
            let status = head
                .split_whitespace()
                .nth(1)
                .and_then(|code| code.parse().ok())
                .unwrap_or(0);
            return Ok((status, body[..length].to_string()));
        }
    }
}

impl Drop for PorticoProcess {
    fn drop(&mut self) {
        if let Some(directory) = self.config_path.parent() {
            let _ = std::fs::remove_dir_all(directory);
        }
    }
}

/// The Content-Length a raw message head declares (0 when none).
pub fn content_length_of(head: &str) -> usize {
    head.lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .unwrap_or(0)
}
