//! portico: an OpenID Connect session gateway.
//!
//! `build(config)` makes the whole gateway as an axum `Router`: the binary
//! serves it, and the integration tests build the very same thing in-process.
//! Data flows one way: config → shared state (`AppState`, built once) →
//! handlers, which parse, call the function that owns the decision, render.
#![forbid(unsafe_code)]

pub mod authz;
pub mod config;
pub mod demo;
pub mod devop;
pub mod edge;
mod endpoints;
pub mod error;
mod fasthash;
pub mod forward_auth;
mod front;
pub mod identity;
pub mod limits;
pub mod oidc;
pub mod ops;
mod page_security;
pub mod pages;
pub mod proxy;
pub mod redirect;
pub mod request_id;
pub mod request_path;
pub mod session;
mod sign_out;
pub mod telemetry;
pub mod tls;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::routing::{any, get};
use axum::Router;

use crate::config::Config;
use crate::oidc::ProviderHandle;
use crate::ops::{Draining, Metrics, RouteHandle};
use crate::proxy::Upstreams;
use crate::redirect::ReturnUrlPolicy;
use crate::session::{SessionBackend, Sessions};

/// Where time comes from. Decisions take time as a parameter; handlers ask
/// the clock once per request. Tests pass a clock they can move.
pub type Clock = Arc<dyn Fn() -> SystemTime + Send + Sync>;

/// Everything a request needs, built once.
pub struct AppState {
    pub config: Config,
    pub sessions: Sessions,
    pub provider: Arc<ProviderHandle>,
    pub bearer: oidc::BearerVerifier,
    /// The route table; swapped whole on reload (`ops::reload_routes`).
    pub routes: RouteHandle,
    pub upstreams: Upstreams,
    pub return_policy: ReturnUrlPolicy,
    pub metrics: Metrics,
    /// Set when a shutdown begins (`/readyz` turns 503).
    pub draining: Draining,
    /// OpenTelemetry traces; off unless `[telemetry] otlp_endpoint` is set.
    pub telemetry: telemetry::Telemetry,
    /// `[server] app_name` and `logo_url`, for every page (see `pages`).
    pub branding: Arc<config::Branding>,
    identity: tokio::sync::OnceCell<Arc<identity::IdentitySigner>>,
    clock: Clock,
}

impl AppState {
    pub fn now(&self) -> SystemTime {
        (self.clock)()
    }

    pub fn now_seconds(&self) -> i64 {
        oidc::unix_seconds(self.now())
    }

    /// The signer of `X-Portico-Identity`: the configured key, or the one
    /// stored (sealed) in the session store, created by the first replica.
    pub async fn identity_signer(
        &self,
    ) -> Result<Arc<identity::IdentitySigner>, error::GatewayError> {
        self.identity
            .get_or_try_init(|| async {
                let issuer = self.config.server.public_url.as_str();
                let text = match &self.config.server.identity_key {
                    Some(key) => key.expose().clone(),
                    None => {
                        let proposed = base64::Engine::encode(
                            &base64::engine::general_purpose::STANDARD,
                            identity::generate_key_bytes(),
                        );
                        let sealed = self
                            .sessions
                            .coordination()
                            .get_or_init(
                                // "-v2": sealed with its own key since 0.2
                                // (domain separation); the old entry, sealed
                                // with the token key, is left unread.
                                "identity-key-v2",
                                &self
                                    .sessions
                                    .keys
                                    .seal(session::SealPurpose::IdentityKey, proposed.as_bytes()),
                            )
                            .await?;
                        let opened = self
                            .sessions
                            .keys
                            .open(session::SealPurpose::IdentityKey, &sealed)
                            .map_err(|error| {
                                session::SessionError::Corrupt(format!(
                                    "stored identity key: {error}"
                                ))
                            })?;
                        String::from_utf8(opened).map_err(|error| {
                            session::SessionError::Corrupt(format!("stored identity key: {error}"))
                        })?
                    }
                };
                identity::IdentitySigner::from_base64(&text, issuer)
                    .map(Arc::new)
                    .map_err(|error| {
                        error::GatewayError::Session(session::SessionError::Corrupt(
                            error.to_string(),
                        ))
                    })
            })
            .await
            .cloned()
    }

    /// Where a login started with return URL `rd` comes back to: `rd` when
    /// the return-URL policy allows it, else the default target.
    pub fn return_target(&self, rd: Option<&str>) -> url::Url {
        rd.and_then(|rd| self.return_policy.check(rd))
            .unwrap_or_else(|| self.return_policy.default_target())
    }

    /// Whether the peer may set X-Forwarded-* and X-Request-Id for us.
    pub fn is_trusted_proxy(&self, peer: Option<std::net::IpAddr>) -> bool {
        peer.is_some_and(|ip| {
            self.config
                .server
                .trusted_proxies
                .iter()
                .any(|network| network.contains(&ip))
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("session store: {0}")]
    Store(#[from] session::StoreSetupError),
    #[error("upstream client: {0}")]
    Upstream(#[from] proxy::UpstreamError),
    #[error("HTTP client for the provider: {0}")]
    HttpClient(String),
    #[error("telemetry: {0}")]
    Telemetry(#[from] telemetry::TelemetryError),
}

/// Builds the gateway with the system clock. Starts provider discovery in
/// the background (retried until the provider answers).
pub async fn build(config: Config) -> Result<Router, BuildError> {
    build_with_clock(config, Arc::new(SystemTime::now)).await
}

pub async fn build_with_clock(config: Config, clock: Clock) -> Result<Router, BuildError> {
    Ok(build_parts(config, clock).await?.1)
}

/// The shared state and the router over it (for callers that reload routes
/// or watch the state, like `serve` and the tests).
pub async fn build_parts(
    config: Config,
    clock: Clock,
) -> Result<(Arc<AppState>, Router), BuildError> {
    let state = Arc::new(app_state(config, clock)?);
    state.provider.spawn_background();
    session::warn_if_redis_is_silent(
        state.sessions.backend(),
        config::shown_secret_url(state.config.session.redis_url.expose()),
    );
    Ok((state.clone(), router(state)))
}

fn app_state(config: Config, clock: Clock) -> Result<AppState, BuildError> {
    let backend = Sessions::backend_for(&config.session)?;
    app_state_with_backend(config, backend, clock)
}

fn app_state_with_backend(
    config: Config,
    backend: SessionBackend,
    clock: Clock,
) -> Result<AppState, BuildError> {
    let provider_http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .connect_timeout(Duration::from_secs(5).min(config.oidc.provider_timeout))
        .timeout(config.oidc.provider_timeout)
        .build()
        .map_err(|error| BuildError::HttpClient(error.to_string()))?;
    let metrics = Metrics::new();
    let provider = ProviderHandle::new(config.oidc.clone(), provider_http, metrics.clone());
    Ok(AppState {
        sessions: Sessions::new(&config.session, backend, metrics.clone()),
        bearer: oidc::BearerVerifier::new(provider.clone(), &config.oidc),
        provider,
        routes: RouteHandle::new(&config.routes),
        upstreams: {
            let upstreams = Upstreams::new(
                proxy::UpstreamTimeouts {
                    connect: config.server.upstream_connect_timeout,
                    head: config.server.upstream_timeout,
                    read: config.server.upstream_read_timeout,
                    send: config.server.upstream_send_timeout,
                },
                metrics.clone(),
            )?;
            upstreams.set_limits(
                config
                    .routes
                    .iter()
                    .map(|route| (&route.upstream_origin, route.upstream_limit)),
            );
            upstreams
        },
        identity: tokio::sync::OnceCell::new(),
        return_policy: ReturnUrlPolicy::new(
            &config.server.public_url,
            &config.server.allowed_redirect_hosts,
        ),
        metrics,
        draining: Draining::default(),
        telemetry: telemetry::Telemetry::start(&config.telemetry)?,
        branding: Arc::new(config.server.branding.clone()),
        config,
        clock,
    })
}

fn router(state: Arc<AppState>) -> Router {
    let metrics_here = state.config.server.metrics_listen.is_none();
    let router = Router::new()
        .route("/oauth2/start", get(endpoints::start))
        .route("/oauth2/callback", get(endpoints::callback))
        .route(
            "/oauth2/sign_out",
            get(sign_out::sign_out_page).post(sign_out::sign_out),
        )
        .route("/oauth2/signed_out", get(sign_out::signed_out))
        .route(
            "/oauth2/backchannel_logout",
            axum::routing::post(sign_out::backchannel_logout).layer(
                axum::middleware::from_fn_with_state(state.clone(), ops::count_backchannel_logout),
            ),
        )
        .route("/oauth2/auth", get(forward_auth::forward_auth))
        .route(
            "/oauth2/ext_authz/",
            axum::routing::any(edge::ext_authz_http::check),
        )
        .route(
            "/oauth2/ext_authz/{*original}",
            axum::routing::any(edge::ext_authz_http::check),
        )
        .route("/oauth2/userinfo", get(forward_auth::userinfo))
        .route(
            "/.well-known/portico/jwks.json",
            get(forward_auth::identity_jwks),
        )
        .route("/oauth2/setup", get(ops::setup::setup))
        .route(pages::STYLESHEET_PATH, get(pages_stylesheet))
        .route("/oauth2/", any(endpoints::unknown_endpoint))
        .route("/oauth2/{*rest}", any(endpoints::unknown_endpoint))
        .route(
            "/.well-known/portico/{*rest}",
            any(endpoints::unknown_endpoint),
        )
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz));
    let router = if metrics_here {
        router.route("/metrics", get(ops::metrics))
    } else {
        router
    };
    router
        .method_not_allowed_fallback(endpoints::method_not_allowed)
        // portico's own answers (not the proxied ones of the fallback) get
        // the framing and sniffing headers, whatever made them.
        .route_layer(axum::middleware::map_response(
            |mut response: axum::response::Response| async move {
                page_security::harden(&mut response);
                response
            },
        ))
        .fallback(proxy::gateway)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            front::front,
        ))
        .with_state(state)
}

async fn pages_stylesheet() -> axum::response::Response {
    pages::stylesheet()
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("{0}")]
    Build(#[from] BuildError),
    #[error("cannot listen on {address}: {source}")]
    Listen {
        address: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("server error: {0}")]
    Serve(std::io::Error),
    #[error("{0}")]
    Tls(#[from] tls::TlsError),
}

/// Serves the gateway on `config.server.listen` until SIGINT/SIGTERM (with
/// a graceful drain of up to `shutdown_timeout`); SIGHUP changes nothing,
/// as there is no file to reload from (see [`serve_with_reload`]).
pub async fn serve(config: Config) -> Result<(), ServeError> {
    serve_with_reload(config, None).await
}

/// Like [`serve`], and on SIGHUP reloads the routes from `source`.
pub async fn serve_with_reload(
    config: Config,
    source: Option<ops::lifecycle::ConfigSource>,
) -> Result<(), ServeError> {
    tracing::info!(
        listen = %config.server.listen,
        metrics_listen = ?config.server.metrics_listen,
        redirect_url = %config.oidc.redirect_url,
        post_logout_redirect_url = %config.oidc.post_logout_redirect_url,
        backchannel_logout_url = %format!(
            "{}/oauth2/backchannel_logout",
            config.server.public_url.as_str().trim_end_matches('/')
        ),
        "register these URLs at the provider"
    );
    let (state, router) = build_parts(config, Arc::new(SystemTime::now)).await?;
    ops::lifecycle::run(state, router, source, None).await
}

/// Serves the gateway on an already bound listener (https when `tls_cert`
/// and `tls_key` are set), with the same shutdown handling as `serve`.
pub async fn serve_on(listener: tokio::net::TcpListener, config: Config) -> Result<(), ServeError> {
    let (state, router) = build_parts(config, Arc::new(SystemTime::now)).await?;
    ops::lifecycle::run(state, router, None, Some(listener)).await
}

/// Resolves at the first SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(signal) => signal,
                Err(_) => {
                    let _ = interrupt.await;
                    return;
                }
            };
        tokio::select! {
            _ = interrupt => {},
            _ = terminate.recv() => {},
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
    tracing::info!("shutting down");
}

#[cfg(test)]
mod hot_path_tests {
    use super::*;

    fn future_size<A, B, Fut, F: Fn(A, B) -> Fut>(_: F) -> usize {
        std::mem::size_of::<Fut>()
    }

    fn future_size3<A, B, C, Fut, F: Fn(A, B, C) -> Fut>(_: F) -> usize {
        std::mem::size_of::<Fut>()
    }

    /// Every proxied request's future is moved (copied) several times on
    /// its way through axum; rare paths (refresh, idle extension, identity
    /// key) are boxed so they do not make every request's future large.
    /// It was 16.6 KB before they were.
    #[test]
    fn the_request_futures_stay_small() {
        let gateway = future_size(proxy::gateway);
        assert!(gateway <= 4096, "gateway future is {gateway} bytes");
        let front = future_size3(front::front);
        assert!(front <= 4096, "front middleware future is {front} bytes");
    }
}
