//! What every request passes first, in one place: its request id (and the
//! tracing span carrying it), the size limits, and, once answered, its
//! metrics and access log line.
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
use tracing::Instrument;

use crate::ops::access::Observation;
use crate::{limits, proxy, request_id, AppState};

/// The middleware form, around the router's own endpoints.
pub async fn front(State(app): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    guarded(&app, request, |request| next.run(request)).await
}

/// Request id, span, limits, then `inner`, then metrics and the access line.
async fn guarded<F, Fut>(app: &AppState, mut request: Request, inner: F) -> Response
where
    F: FnOnce(Request) -> Fut,
    Fut: Future<Output = Response>,
{
    let id = request_id::choose(app, &request);
    request.extensions_mut().insert(id.clone());
    let observation = Observation::begin(&mut request);
    // At ERROR level so the span (and its request id) stays on every line
    // whatever level RUST_LOG lets through: with `warn`, an info span would
    // be filtered out and warnings would lose the request id.
    let span = tracing::error_span!("request", request_id = %id.as_str());
    let mut response = async {
        let response = limits::enforce(app, request, inner).await;
        observation.finish(app, &response);
        response
    }
    .instrument(span)
    .await;
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

    fn call(&mut self, mut request: Request) -> Self::Future {
        request.extensions_mut().insert(ConnectInfo(self.peer));
        if for_the_router(request.uri().path()) {
            let router = self.router.clone();
            return Box::pin(async move { router.oneshot(request).await });
        }
        let app = self.app.clone();
        Box::pin(async move {
            let gateway_app = app.clone();
            Ok(guarded(&app, request, move |request| {
                proxy::gateway(State(gateway_app), request)
            })
            .await)
        })
    }
}

/// Makes an [`Entry`] per accepted connection (for `axum::serve`).
#[derive(Clone)]
pub struct MakeEntry {
    router: Router,
    app: Arc<AppState>,
}

impl MakeEntry {
    pub fn new(router: Router, app: Arc<AppState>) -> Self {
        MakeEntry { router, app }
    }
}

impl<'a> Service<axum::serve::IncomingStream<'a, tokio::net::TcpListener>> for MakeEntry {
    type Response = Entry;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Entry, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(
        &mut self,
        stream: axum::serve::IncomingStream<'a, tokio::net::TcpListener>,
    ) -> Self::Future {
        // Answers go out as soon as they are written, as nginx does
        // (`tcp_nodelay on`): Nagle's algorithm would hold a response's
        // last segment back while an earlier one is still unacknowledged.
        if let Err(error) = stream.io().set_nodelay(true) {
            tracing::debug!(%error, "could not set TCP_NODELAY on a client connection");
        }
        std::future::ready(Ok(Entry {
            router: self.router.clone(),
            app: self.app.clone(),
            peer: *stream.remote_addr(),
        }))
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
