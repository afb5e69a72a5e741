//! The process lifecycle: serving, reloading routes on SIGHUP, and a
//! graceful shutdown on SIGTERM/SIGINT.
//!
//! Shutdown: the listener closes at once (no new connections), `/readyz`
//! answers 503 from that moment (on the metrics listener, which stays up
//! until the process exits, and on connections still open), requests in
//! flight get up to `shutdown_timeout` to finish, then the process exits 0.
//!
//! Reload: SIGHUP re-reads the config file (with the same environment) and
//! swaps the route table — prefixes, upstreams and rules — in one atomic
//! step; requests in flight keep the table they started with, connections
//! stay open. A file that does not validate changes nothing: the old table
//! stays and the log says why. Only `[[routes]]` are reloaded; the other
//! sections take effect at the next restart.

use std::collections::BTreeMap;
use std::future::IntoFuture;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use axum::routing::get;
use axum::Router;
use tokio::sync::watch;

use crate::config::{Config, ConfigErrors, RouteConfig};
use crate::proxy::RouteTable;
use crate::{AppState, ServeError};

/// The route table, swappable while requests are served.
pub struct RouteHandle {
    current: ArcSwap<RouteTable>,
}

impl RouteHandle {
    pub fn new(routes: &[RouteConfig]) -> Self {
        RouteHandle {
            current: ArcSwap::from_pointee(RouteTable::new(routes)),
        }
    }

    /// The table as it is now; a request keeps using the one it loaded.
    pub fn load(&self) -> Arc<RouteTable> {
        self.current.load_full()
    }

    /// The route for `host` and `path` in the current table.
    pub fn find(&self, host: Option<&str>, path: &str) -> Option<Arc<RouteConfig>> {
        self.current.load().find(host, path).cloned()
    }

    /// The canonical path and its route in the current table
    /// ([`RouteTable::resolve`]).
    pub fn resolve<'path>(
        &self,
        host: Option<&str>,
        raw_path: &'path str,
    ) -> Result<(std::borrow::Cow<'path, str>, Arc<RouteConfig>), crate::proxy::PathError> {
        let table = self.current.load();
        table
            .resolve(host, raw_path)
            .map(|(path, route)| (path, route.clone()))
    }

    fn replace(&self, routes: &[RouteConfig]) {
        self.current.store(Arc::new(RouteTable::new(routes)));
    }
}

/// Set once a shutdown has begun: `/readyz` then answers 503.
#[derive(Default, Debug)]
pub struct Draining(AtomicBool);

impl Draining {
    pub fn begin(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    pub fn is_draining(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("the new config is invalid, the old routes stay:\n{0}")]
    Invalid(ConfigErrors),
    #[error("the new config has no routes, the old routes stay")]
    NoRoutes,
}

/// Swaps in the routes of `config` (already validated). Returns how many
/// routes the new table has.
pub fn reload_routes(app: &AppState, config: Config) -> Result<usize, ReloadError> {
    if config.routes.is_empty() {
        app.metrics.config_reload("rejected");
        return Err(ReloadError::NoRoutes);
    }
    app.routes.replace(&config.routes);
    app.upstreams.set_limits(
        config
            .routes
            .iter()
            .map(|route| (&route.upstream_origin, route.upstream_limit)),
    );
    app.metrics.config_reload("applied");
    Ok(config.routes.len())
}

/// Where the config came from, to read it again on SIGHUP.
#[derive(Clone)]
pub struct ConfigSource {
    pub path: PathBuf,
    /// The `PORTICO_*` variables the process started with.
    pub environment: BTreeMap<String, String>,
}

/// Reads `source` again and swaps in its routes; on any problem the old
/// routes stay and the error says why.
pub fn reload_from(app: &AppState, source: &ConfigSource) -> Result<usize, ReloadError> {
    match crate::config::load(&source.path, &source.environment) {
        Ok(config) => reload_routes(app, config),
        Err(errors) => {
            app.metrics.config_reload("rejected");
            Err(ReloadError::Invalid(errors))
        }
    }
}

/// The router of the separate metrics listener: metrics and health only.
pub fn ops_router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/metrics", get(super::metrics))
        .route("/healthz", get(super::healthz))
        .route("/readyz", get(super::readyz))
        .with_state(state)
}

async fn bind(address: SocketAddr) -> Result<tokio::net::TcpListener, ServeError> {
    tokio::net::TcpListener::bind(address)
        .await
        .map_err(|source| ServeError::Listen { address, source })
}

enum Signal {
    Stop(&'static str),
    Reload,
}

/// Signals as a stream of [`Signal`]s.
struct Signals {
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
    #[cfg(unix)]
    hangup: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> Result<Self, ServeError> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Ok(Signals {
                terminate: signal(SignalKind::terminate()).map_err(ServeError::Serve)?,
                hangup: signal(SignalKind::hangup()).map_err(ServeError::Serve)?,
            })
        }
        #[cfg(not(unix))]
        {
            Ok(Signals {})
        }
    }

    async fn next(&mut self) -> Signal {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => Signal::Stop("SIGINT"),
                _ = self.terminate.recv() => Signal::Stop("SIGTERM"),
                _ = self.hangup.recv() => Signal::Reload,
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            Signal::Stop("interrupt")
        }
    }
}

/// Serves `state`'s router until SIGTERM/SIGINT, reloading routes from
/// `source` on SIGHUP.
pub async fn run(
    state: Arc<AppState>,
    router: Router,
    source: Option<ConfigSource>,
    listener: Option<tokio::net::TcpListener>,
) -> Result<(), ServeError> {
    let server = &state.config.server;
    let shutdown_timeout = server.shutdown_timeout;
    let tls = match (&server.tls_cert, &server.tls_key) {
        (Some(cert), Some(key)) => Some(crate::tls::acceptor(cert, key)?),
        _ => None,
    };
    let listener = match listener {
        Some(listener) => listener,
        None => bind(server.listen).await?,
    };
    let ops_listener = match server.metrics_listen {
        Some(address) => Some(bind(address).await?),
        None => None,
    };
    let ext_authz_listener = match server.ext_authz_grpc_listen {
        Some(address) => Some(bind(address).await?),
        None => None,
    };
    let mut signals = Signals::new()?;
    let (stop, stopped) = watch::channel(false);
    let stop_signal = async move {
        let mut stopped = stopped;
        let _ = stopped.wait_for(|stop| *stop).await;
    };
    let mut main = match tls {
        // https: portico terminates TLS itself (`tls_cert`, `tls_key`).
        Some(acceptor) => tokio::spawn(crate::tls::serve(listener, acceptor, router, stop_signal)),
        None => tokio::spawn(crate::front::serve_workers(
            listener,
            router,
            state.clone(),
            stop_signal,
        )),
    };
    let ops = ops_listener.map(|listener| {
        tokio::spawn(axum::serve(listener, ops_router(state.clone())).into_future())
    });
    // Envoy's gRPC ext_authz: stopped with the ops listener.
    let ext_authz = ext_authz_listener.map(|listener| {
        tokio::spawn(crate::edge::ext_authz_grpc::serve(
            state.clone(),
            listener,
            std::future::pending(),
        ))
    });
    let signal_name = loop {
        tokio::select! {
            signal = signals.next() => match signal {
                Signal::Stop(name) => break name,
                Signal::Reload => reload_on_signal(&state, source.as_ref()),
            },
            ended = &mut main => {
                if let Some(ops) = &ops {
                    ops.abort();
                }
                if let Some(ext_authz) = &ext_authz {
                    ext_authz.abort();
                }
                return match ended {
                    Ok(result) => result.map_err(ServeError::Serve),
                    Err(error) => Err(ServeError::Serve(std::io::Error::other(error))),
                };
            }
        }
    };
    state.draining.begin();
    tracing::info!(
        signal = signal_name,
        timeout = ?shutdown_timeout,
        "shutting down: no new connections; waiting for requests in flight"
    );
    let _ = stop.send(true);
    let finished = wait_for(&mut main, shutdown_timeout).await;
    if let Some(ops) = ops {
        ops.abort();
    }
    if let Some(ext_authz) = ext_authz {
        ext_authz.abort();
    }
    if finished {
        tracing::info!("every request finished; stopped");
    } else {
        main.abort();
        tracing::warn!(
            timeout = ?shutdown_timeout,
            "requests still in flight after shutdown_timeout were cut off"
        );
    }
    // The spans of the last requests go out before the process ends (the
    // exporter blocks its caller while it sends them).
    if state.telemetry.is_on() {
        let _ = tokio::task::spawn_blocking(move || state.telemetry.shutdown()).await;
    }
    Ok(())
}

/// True when `task` ended within `timeout`.
async fn wait_for(
    task: &mut tokio::task::JoinHandle<std::io::Result<()>>,
    timeout: Duration,
) -> bool {
    match tokio::time::timeout(timeout, task).await {
        Ok(Ok(Ok(()))) => true,
        Ok(Ok(Err(error))) => {
            tracing::warn!(%error, "server error while shutting down");
            true
        }
        Ok(Err(error)) => {
            tracing::warn!(%error, "server task failed while shutting down");
            true
        }
        Err(_) => false,
    }
}

fn reload_on_signal(state: &AppState, source: Option<&ConfigSource>) {
    let Some(source) = source else {
        tracing::warn!("SIGHUP: there is no config file to reload (demo); nothing changed");
        return;
    };
    match reload_from(state, source) {
        Ok(count) => tracing::info!(
            routes = count,
            path = %source.path.display(),
            "SIGHUP: routes reloaded; changes outside [[routes]] take effect at the next restart"
        ),
        Err(error) => tracing::warn!(path = %source.path.display(), "SIGHUP: {error}"),
    }
}
