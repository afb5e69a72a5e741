//! What every request passes first, in one place: its request id (and what
//! carries it onto the log lines written meanwhile), the size limits, and,
//! once answered, its metrics and access log line.
//!
//! It runs as one axum middleware around portico's own endpoints, and, for
//! everything else (the proxied traffic), straight from [`Entry`], the
//! per-connection service: a proxied request then skips axum's router and
//! middleware plumbing, each layer of which boxes the rest of the request's
//! future again (the benchmark's profile showed them as a fifth of a
//! proxied request's instructions).

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use axum::Router;
use tower::{Service, ServiceExt as _};

use crate::ops::access::Observation;
use crate::ops::request_log;
use crate::request_id::RequestMeta;
use crate::{limits, proxy, request_id, telemetry, AppState};

mod activity;
mod connection;

/// The middleware form, around the router's own endpoints.
pub async fn front(State(app): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let peer = request_id::peer_of(&request).map(|address| address.ip());
    guarded(&app, request, peer, |mut request, meta| {
        request.extensions_mut().insert(meta.id);
        request.extensions_mut().insert(meta.note);
        next.run(request)
    })
    .await
}

/// Request id, span, limits, then `inner`, then metrics and the access line.
async fn guarded<F, Fut>(
    app: &AppState,
    request: Request,
    peer: Option<std::net::IpAddr>,
    inner: F,
) -> Response
where
    F: FnOnce(Request, RequestMeta) -> Fut,
    Fut: Future<Output = Response>,
{
    let id = request_id::choose(app, request.headers(), peer);
    let observation = Observation::begin(&request, &id);
    let meta = RequestMeta {
        id: id.clone(),
        note: observation.note().clone(),
    };
    let trace = app.telemetry.begin_request(
        request.headers(),
        || app.is_trusted_proxy(peer),
        &id.0,
        request.method(),
        request.uri().path(),
    );
    let work = async {
        let response = match limits::admit(app, request, &id) {
            limits::Admission::Through(request, watched) => {
                // Boxed: the handler's future is the bulk of a request's
                // state, and every layer around it (telemetry, span,
                // branding, the connection's service) would otherwise copy
                // it again when it takes it in (callgrind: 8 copies a
                // request, 1.9k instructions of memcpy).
                let response = Box::pin(inner(request, meta)).await;
                limits::judge(app, watched, response, &id)
            }
            limits::Admission::Refused(refusal) => refusal,
        };
        observation.finish(app, &response);
        response
    };
    let answer = request_log::within(&id, telemetry::within(trace.as_ref(), work));
    // Every page rendered for this request names the app as configured.
    let mut response = crate::pages::with_branding(app.branding.clone(), answer).await;
    telemetry::end_request(trace, response.status());
    crate::page_security::add_hsts(
        &mut response,
        app.config.server.public_url.scheme() == "https",
    );
    request_id::answer_with(&mut response, &id);
    response
}

/// Paths the router may answer itself; everything else is proxied.
fn for_the_router(path: &str) -> bool {
    path.starts_with("/oauth2/")
        || path.starts_with("/.well-known/portico/")
        || matches!(path, "/healthz" | "/readyz" | "/metrics")
}

/// The service of one client connection.
#[derive(Clone)]
pub struct Entry {
    router: Router,
    app: Arc<AppState>,
    peer: SocketAddr,
}

impl Service<Request> for Entry {
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request) -> Self::Future {
        self.serve(request)
    }
}

impl Entry {
    /// Answers one request: portico's own endpoints through the router,
    /// everything else straight to the proxy.
    pub(crate) fn serve(
        &self,
        mut request: Request,
    ) -> Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>> {
        if for_the_router(request.uri().path()) {
            request.extensions_mut().insert(ConnectInfo(self.peer));
            let router = self.router.clone();
            return Box::pin(async move { router.oneshot(request).await });
        }
        // Proxied: the peer and the request's meta are handed over directly,
        // not through extensions.
        let app = self.app.clone();
        let peer = self.peer;
        Box::pin(async move {
            let proxy_app = app.clone();
            Ok(
                guarded(&app, request, Some(peer.ip()), move |request, meta| {
                    proxy::proxied(proxy_app, request, Some(peer), meta)
                })
                .await,
            )
        })
    }
}

/// Serves plain-HTTP connections accepted on `listener` until `shutdown`
/// resolves; then stops accepting, lets every open connection finish its
/// request in flight (idle keep-alive connections are closed), and returns
/// once all have ended.
///
/// Connections are handed round-robin to one single-threaded runtime per
/// core, each serving its connections start to finish, the way nginx runs a
/// worker process per core: no work stealing and no cross-thread wake-ups on
/// the hot path (with tokio's shared multi-threaded scheduler a proxied
/// request cost 4-5 µs more CPU on the benchmark machine). Everything else
/// (Redis clients, background tasks, the ops listener, TLS) stays on the
/// main runtime.
pub async fn serve_workers(
    listener: tokio::net::TcpListener,
    router: Router,
    app: Arc<AppState>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut queues = Vec::new();
    let mut finished = Vec::new();
    for index in 0..worker_count() {
        let (queue, incoming) = tokio::sync::mpsc::unbounded_channel();
        let (done, finished_rx) = tokio::sync::oneshot::channel::<()>();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            // Log lines are written in batches, whenever the worker runs out
            // of work (ops::logging::Stderr).
            .on_thread_park(crate::ops::logging::flush_this_thread)
            .build()?;
        let worker = Worker {
            router: router.clone(),
            app: app.clone(),
            stop: stop_rx.clone(),
        };
        std::thread::Builder::new()
            .name(format!("portico-worker-{index}"))
            .spawn(move || {
                WORKER.set(Some(index));
                crate::ops::logging::batch_this_thread();
                runtime.block_on(worker.run(incoming));
                // Tasks dropped with the runtime may still log.
                drop(runtime);
                crate::ops::logging::flush_this_thread();
                let _ = done.send(());
            })?;
        queues.push(queue);
        finished.push(finished_rx);
    }
    let mut shutdown = std::pin::pin!(shutdown);
    let mut next = 0usize;
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    accept_failed(&error).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Answers go out as soon as they are written, as nginx does
        // (`tcp_nodelay on`): Nagle's algorithm would hold a response's
        // last segment back while an earlier one is still unacknowledged.
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, "could not set TCP_NODELAY on a client connection");
        }
        // Handed over as a std socket: the worker registers it with its own
        // reactor.
        let stream = match stream.into_std() {
            Ok(stream) => stream,
            Err(error) => {
                tracing::warn!(%error, "could not hand a connection to a worker");
                continue;
            }
        };
        let queue = &queues[next % queues.len()];
        next = next.wrapping_add(1);
        if queue.send((stream, peer)).is_err() {
            tracing::warn!("a worker is gone; the connection is dropped");
        }
    }
    drop(listener);
    let _ = stop_tx.send(true);
    drop(queues);
    for worker in finished {
        let _ = worker.await;
    }
    Ok(())
}

thread_local! {
    /// The index of the per-core worker this thread runs, if it runs one.
    static WORKER: std::cell::Cell<Option<usize>> = const { std::cell::Cell::new(None) };
}

/// Which per-core worker the calling thread is (`None` off the workers: the
/// main runtime, tests). State kept per worker, such as idle upstream
/// connections, which belong to the worker whose reactor they are registered
/// with, is looked up by it.
pub(crate) fn current_worker() -> Option<usize> {
    WORKER.get()
}

/// Makes the calling thread count as worker `index` (tests of per-worker state).
#[cfg(test)]
pub(crate) fn pretend_worker(index: Option<usize>) {
    WORKER.set(index);
}

/// One worker per core (`TOKIO_WORKER_THREADS` overrides, as it does for
/// the main runtime).
pub(crate) fn worker_count() -> usize {
    std::env::var("TOKIO_WORKER_THREADS")
        .ok()
        .and_then(|value| value.parse().ok())
        .filter(|count| *count > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from))
}

/// After a failed accept: a connection that went away meanwhile is nothing;
/// anything else (out of file descriptors) is logged and waited out briefly
/// rather than retried in a tight loop.
async fn accept_failed(error: &std::io::Error) {
    use std::io::ErrorKind;
    if matches!(
        error.kind(),
        ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset | ErrorKind::ConnectionRefused
    ) {
        return;
    }
    tracing::warn!(%error, "accept failed; retrying in a second");
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
}

/// A single-threaded runtime's share of the connections.
struct Worker {
    router: Router,
    app: Arc<AppState>,
    stop: tokio::sync::watch::Receiver<bool>,
}

impl Worker {
    /// Serves each connection handed over until the queue closes, then
    /// waits for the connections still open to end.
    async fn run(
        self,
        mut incoming: tokio::sync::mpsc::UnboundedReceiver<(std::net::TcpStream, SocketAddr)>,
    ) {
        let (open_tx, _) = tokio::sync::watch::channel(());
        while let Some((stream, peer)) = incoming.recv().await {
            let stream = match tokio::net::TcpStream::from_std(stream) {
                Ok(stream) => stream,
                Err(error) => {
                    tracing::warn!(%error, "could not register a connection");
                    continue;
                }
            };
            let entry = Entry {
                router: self.router.clone(),
                app: self.app.clone(),
                peer,
            };
            tokio::spawn(connection::serve(
                stream,
                entry,
                self.stop.clone(),
                open_tx.subscribe(),
            ));
        }
        // Each open connection holds a receiver; none is left once all ended.
        open_tx.closed().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_portico_paths_go_through_the_router() {
        for path in [
            "/oauth2/start",
            "/oauth2/x",
            "/.well-known/portico/jwks.json",
            "/healthz",
            "/readyz",
            "/metrics",
        ] {
            assert!(for_the_router(path), "{path}");
        }
        for path in [
            "/",
            "/app",
            "/oauth2",
            "/healthz/x",
            "/metrics2",
            "/.well-known/openid-configuration",
        ] {
            assert!(!for_the_router(path), "{path}");
        }
    }
}
