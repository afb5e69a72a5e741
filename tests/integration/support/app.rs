//! `TestApp`: the whole gateway, built in-process by `portico::build` from a
//! real TOML config, in front of the dev OP and an echo upstream over real
//! HTTP, with sessions in a real redis-server.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use portico::devop::{DevOp, DevOpOptions, EchoUpstream};

use super::browser::Browser;
use super::redis::{self, RedisServer};

/// A clock tests can move forward (no sleeping).
#[derive(Clone, Default)]
pub struct TestClock {
    offset_seconds: Arc<AtomicI64>,
}

impl TestClock {
    pub fn advance(&self, duration: Duration) {
        self.offset_seconds
            .fetch_add(duration.as_secs() as i64, Ordering::SeqCst);
    }

    /// Back to real time (tokens from the dev OP carry real times).
    pub fn reset(&self) {
        self.offset_seconds.store(0, Ordering::SeqCst);
    }

    pub fn now(&self) -> SystemTime {
        SystemTime::now() + Duration::from_secs(self.offset_seconds.load(Ordering::SeqCst) as u64)
    }
}

pub struct TestAppBuilder {
    op_options: DevOpOptions,
    /// Extra TOML lines per section, e.g. ("session", "idle_timeout = \"5m\"").
    extra: Vec<(&'static str, String)>,
    /// `[[routes]]` blocks; `{upstream}` is replaced by the echo upstream's URL.
    routes: Vec<String>,
    redis: Option<String>,
    wait_ready: bool,
    auto_approve: Option<String>,
    existing_op: Option<DevOp>,
    public_url: Option<String>,
}

pub struct TestApp {
    pub op: Arc<DevOp>,
    pub upstream: Arc<EchoUpstream>,
    pub base: String,
    pub redis_url: String,
    pub clock: TestClock,
    pub config_text: String,
    /// The gateway's shared state (routes, metrics, draining flag).
    pub state: Arc<portico::AppState>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.server.abort();
    }
}

pub const CLIENT_ID: &str = "portico-test";
pub const CLIENT_SECRET: &str = "devop-secret";
pub const COOKIE_SECRET: &str = "dGVzdC1jb29raWUtc2VjcmV0LXRoYXQtaXMtbG9uZy1lbm91Z2g=";

impl TestApp {
    pub fn builder() -> TestAppBuilder {
        TestAppBuilder {
            op_options: DevOpOptions::default(),
            extra: Vec::new(),
            routes: Vec::new(),
            redis: None,
            wait_ready: true,
            auto_approve: Some("alice".to_string()),
            existing_op: None,
            public_url: None,
        }
    }

    /// A default app: one protected route "/" to the echo upstream, alice auto-approved.
    pub async fn start() -> TestApp {
        Self::builder().build().await
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Posts `token` to the back-channel logout endpoint, as an OP does.
    pub async fn backchannel_logout(&self, token: &str) -> super::browser::Page {
        Browser::new()
            .post_form(
                &self.url("/oauth2/backchannel_logout"),
                &[("logout_token", token)],
                &[],
            )
            .await
    }

    /// Signs `browser` in by opening `path` (auto-approve at the OP) and
    /// returns the final page.
    pub async fn sign_in(&self, browser: &Browser, path: &str) -> super::browser::Page {
        let page = browser.open(&self.url(path)).await;
        assert!(
            browser.cookie("portico_session").is_some(),
            "no session after sign-in: {} {}",
            page.status,
            page.body
        );
        page
    }
}

impl TestAppBuilder {
    pub fn op_options(mut self, change: impl FnOnce(&mut DevOpOptions)) -> Self {
        change(&mut self.op_options);
        self
    }

    pub fn config(mut self, section: &'static str, line: &str) -> Self {
        self.extra.push((section, line.to_string()));
        self
    }

    pub fn route(mut self, block: &str) -> Self {
        self.routes.push(block.to_string());
        self
    }

    pub fn redis(mut self, server: &RedisServer) -> Self {
        self.redis = Some(server.url(server.fresh_database()));
        self
    }

    pub fn redis_url(mut self, url: &str) -> Self {
        self.redis = Some(url.to_string());
        self
    }

    pub fn without_waiting_for_ready(mut self) -> Self {
        self.wait_ready = false;
        self
    }

    /// The dev OP answers as `http://localhost:PORT`: a host name, so passkeys work (WebAuthn
    /// refuses IP addresses as RP ID), and another site than portico on 127.0.0.1, as a real
    /// provider is.
    pub fn op_on_localhost(self) -> Self {
        self.op_options(|options| options.public_host = Some("localhost".to_string()))
    }

    pub fn auto_approve(mut self, user: Option<&str>) -> Self {
        self.auto_approve = user.map(str::to_string);
        self
    }

    /// The origin browsers use, when portico sits behind another proxy.
    pub fn public_url(mut self, url: &str) -> Self {
        self.public_url = Some(url.to_string());
        self
    }

    /// Use an OP started by the test (e.g. one that starts broken).
    pub fn with_op(mut self, op: DevOp) -> Self {
        self.existing_op = Some(op);
        self
    }

    pub async fn build(self) -> TestApp {
        super::init_logging();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address: SocketAddr = listener.local_addr().unwrap();
        let base = format!("http://{address}");
        let public = self.public_url.clone().unwrap_or_else(|| base.clone());
        let mut op_options = self.op_options;
        if op_options.redirect_uris.is_empty() {
            op_options.redirect_uris = vec![format!("{public}/oauth2/callback")];
        }
        op_options.client_id = CLIENT_ID.to_string();
        op_options.client_secret = CLIENT_SECRET.to_string();
        let op = match self.existing_op {
            Some(op) => op,
            None => DevOp::start(op_options).await.unwrap(),
        };
        op.set_auto_approve(self.auto_approve.clone());
        let upstream = EchoUpstream::start().await.unwrap();
        let redis_url = self.redis.unwrap_or_else(|| {
            let server = redis::shared();
            server.url(server.fresh_database())
        });

        let mut sections: std::collections::BTreeMap<&str, Vec<String>> = Default::default();
        for (section, line) in self.extra {
            sections.entry(section).or_default().push(line);
        }
        let server_lines = sections.entry("server").or_default();
        if !server_lines
            .iter()
            .any(|line| line.starts_with("upstream_timeout"))
        {
            server_lines.push("upstream_timeout = \"2s\"".to_string());
        }
        let extra = |name: &str| {
            sections
                .get(name)
                .map(|lines| lines.join("\n"))
                .unwrap_or_default()
        };
        let routes = if self.routes.is_empty() {
            vec!["path_prefix = \"/\"\nupstream = \"{upstream}\"".to_string()]
        } else {
            self.routes
        };
        let routes = routes
            .iter()
            .map(|block| {
                format!(
                    "[[routes]]\n{}\n",
                    block.replace("{upstream}", &upstream.url())
                )
            })
            .collect::<String>();
        let config_text = format!(
            r#"
[server]
listen = "{address}"
public_url = "{public}"
{server}

[oidc]
{issuer_line}
client_secret = "{CLIENT_SECRET}"
{oidc}

[session]
store = "redis"
redis_url = "{redis_url}"
cookie_secret = "{COOKIE_SECRET}"
{session}

[telemetry]
{telemetry}

{routes}
"#,
            // The Descope preset derives the issuer and client id from the
            // project id, as a Descope user's config does.
            issuer_line = if extra("oidc").contains("provider = \"descope\"") {
                String::new()
            } else {
                format!("issuer = \"{}\"\nclient_id = \"{CLIENT_ID}\"", op.issuer())
            },
            server = extra("server"),
            oidc = extra("oidc"),
            session = extra("session"),
            telemetry = extra("telemetry"),
        );
        let clock = TestClock::default();
        let (state, server) = serve(&config_text, listener, &clock).await;
        let app = TestApp {
            op: Arc::new(op),
            upstream: Arc::new(upstream),
            base,
            redis_url,
            clock,
            config_text,
            state,
            server,
        };
        if self.wait_ready {
            app.wait_until_ready().await;
        }
        app
    }
}

/// Builds portico from `config_text` and serves it on `listener`.
async fn serve(
    config_text: &str,
    listener: tokio::net::TcpListener,
    clock: &TestClock,
) -> (Arc<portico::AppState>, tokio::task::JoinHandle<()>) {
    let config = portico::config::parse(config_text, &Default::default())
        .unwrap_or_else(|errors| panic!("test config invalid:\n{errors}\n{config_text}"));
    let clock_for_app = clock.clone();
    let (state, router) = portico::build_parts(config, Arc::new(move || clock_for_app.now()))
        .await
        .expect("build");
    let server = tokio::spawn(async move {
        let _ = axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await;
    });
    (state, server)
}

impl TestApp {
    /// Another portico process with the same config (same public URL, same
    /// Redis, same OP), as a second replica behind a load balancer would be.
    /// Shares this app's clock.
    pub async fn replica(&self) -> TestApp {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (state, server) = serve(&self.config_text, listener, &self.clock).await;
        let replica = TestApp {
            op: self.op.clone(),
            upstream: self.upstream.clone(),
            base,
            redis_url: self.redis_url.clone(),
            clock: self.clock.clone(),
            config_text: self.config_text.clone(),
            state,
            server,
        };
        replica.wait_until_ready().await;
        replica
    }

    /// A replica that reaches Redis at `redis_url` instead (e.g. through a
    /// [`super::RedisProxy`] in front of the same server).
    pub async fn replica_via(&self, redis_url: &str) -> TestApp {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let config_text = self.config_text.replace(
            &format!("redis_url = \"{}\"", self.redis_url),
            &format!("redis_url = \"{redis_url}\""),
        );
        assert_ne!(config_text, self.config_text, "redis_url not found");
        let (state, server) = serve(&config_text, listener, &self.clock).await;
        let replica = TestApp {
            op: self.op.clone(),
            upstream: self.upstream.clone(),
            base,
            redis_url: redis_url.to_string(),
            clock: self.clock.clone(),
            config_text,
            state,
            server,
        };
        replica.wait_until_ready().await;
        replica
    }

    /// Whether this replica serves sessions from its local cache now.
    pub fn cache_serving(&self) -> bool {
        self.state
            .sessions
            .local_cache()
            .is_some_and(|cache| cache.serving(std::time::Instant::now()))
    }

    /// Waits (at most 10 s) until the local cache is served.
    pub async fn wait_until_cache_serves(&self) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !self.cache_serving() {
            assert!(
                std::time::Instant::now() < deadline,
                "the local session cache never started serving"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Moves time forward for portico and the OP alike.
    pub fn advance(&self, duration: Duration) {
        self.clock.advance(duration);
        self.op.advance_clock(duration);
    }

    /// Stops this portico (the OP, upstream and Redis stay).
    pub fn stop(&self) {
        self.server.abort();
    }

    pub async fn wait_until_ready(&self) {
        {
            let app = self;
            let client = reqwest::Client::new();
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            loop {
                let ready = client
                    .get(app.url("/readyz"))
                    .send()
                    .await
                    .map(|response| response.status().is_success())
                    .unwrap_or(false);
                if ready {
                    break;
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "portico never became ready"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}
