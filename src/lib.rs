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
mod endpoints;
pub mod error;
pub mod oidc;
pub mod ops;
pub mod pages;
pub mod proxy;
pub mod redirect;
pub mod request_id;
pub mod session;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::routing::get;
use axum::Router;

use crate::config::Config;
use crate::oidc::ProviderHandle;
use crate::proxy::{RouteTable, Upstreams};
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
    pub routes: RouteTable,
    pub upstreams: Upstreams,
    pub return_policy: ReturnUrlPolicy,
    clock: Clock,
}

impl AppState {
    pub fn now(&self) -> SystemTime {
        (self.clock)()
    }

    pub fn now_seconds(&self) -> i64 {
        oidc::unix_seconds(self.now())
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
}

/// Builds the gateway with the system clock. Starts provider discovery in
/// the background (retried until the provider answers).
pub async fn build(config: Config) -> Result<Router, BuildError> {
    build_with_clock(config, Arc::new(SystemTime::now)).await
}

pub async fn build_with_clock(config: Config, clock: Clock) -> Result<Router, BuildError> {
    let state = Arc::new(app_state(config, clock)?);
    state.provider.spawn_background();
    Ok(router(state))
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
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|error| BuildError::HttpClient(error.to_string()))?;
    Ok(AppState {
        sessions: Sessions::new(&config.session, backend),
        provider: ProviderHandle::new(config.oidc.clone(), provider_http),
        routes: RouteTable::new(&config.routes),
        upstreams: Upstreams::new(config.server.upstream_timeout)?,
        return_policy: ReturnUrlPolicy::new(
            &config.server.public_url,
            &config.server.allowed_redirect_hosts,
        ),
        config,
        clock,
    })
}

fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/oauth2/start", get(endpoints::start))
        .route("/oauth2/callback", get(endpoints::callback))
        .route(
            "/oauth2/sign_out",
            get(endpoints::sign_out_page).post(endpoints::sign_out),
        )
        .route("/oauth2/signed_out", get(endpoints::signed_out))
        .route(
            "/oauth2/backchannel_logout",
            axum::routing::post(endpoints::backchannel_logout),
        )
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .fallback(proxy::gateway)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            request_id::assign,
        ))
        .with_state(state)
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
}

/// Serves the gateway on `config.server.listen` until SIGINT/SIGTERM.
pub async fn serve(config: Config) -> Result<(), ServeError> {
    let address = config.server.listen;
    tracing::info!(
        listen = %address,
        redirect_url = %config.oidc.redirect_url,
        post_logout_redirect_url = %config.oidc.post_logout_redirect_url,
        "register these URLs at the provider"
    );
    let router = build(config).await?;
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .map_err(|source| ServeError::Listen { address, source })?;
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown_signal())
    .await
    .map_err(ServeError::Serve)
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
