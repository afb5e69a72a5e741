//! The upstream client: one pooled HTTP/1.1 client (hyper, over plain TCP or
//! rustls), bodies streamed both ways.
//!
//! Redirects are passed through (never followed), nothing is decompressed,
//! no environment proxy is used. Waiting for the response head is bounded by
//! `upstream_timeout`; the body then streams for as long as it takes.
//!
//! hyper's pooled client is used directly rather than through reqwest: a
//! proxied request needs none of reqwest's conveniences, and skipping its
//! URL parsing and header conversions is a measurable part of the hot path.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use http::{HeaderMap, Method, Request, Uri};
use http_body::Body as _;
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use tower::ServiceExt as _;
use url::Url;

use super::headers::strip_hop_by_hop;
use crate::error::error_chain;
use crate::ops::metrics::ActiveGuard;
use crate::ops::Metrics;

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("upstream refused or unreachable: {0}")]
    Unreachable(String),
    #[error("upstream sent no response within {0:?}")]
    Timeout(Duration),
    #[error("upstream request could not be built: {0}")]
    Request(String),
}

/// How many idle connections are kept per upstream.
const MAX_IDLE_PER_UPSTREAM: usize = 256;
/// Idle connections older than this are not reused.
const IDLE_LIFETIME: Duration = Duration::from_secs(90);

type Sender = hyper::client::conn::http1::SendRequest<Body>;
type Connector = HttpsConnector<HttpConnector>;

/// Kept-alive upstream connections, by upstream origin. A connection is
/// handed back when its response body has been read to the end; one whose
/// body was abandoned is closed instead.
struct Pool {
    idle: Mutex<HashMap<String, Vec<(Sender, Instant)>>>,
    connector: Connector,
}

impl Pool {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<(Sender, Instant)>>> {
        self.idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// An idle connection to `origin` that can take a request now.
    fn take_idle(&self, origin: &str) -> Option<Sender> {
        let mut idle = self.lock();
        let senders = idle.get_mut(origin)?;
        while let Some((sender, since)) = senders.pop() {
            if !sender.is_closed() && since.elapsed() < IDLE_LIFETIME {
                return Some(sender);
            }
        }
        None
    }

    fn give_back(&self, origin: &str, sender: Sender) {
        if sender.is_closed() {
            return;
        }
        let mut idle = self.lock();
        let senders = match idle.get_mut(origin) {
            Some(senders) => senders,
            None => idle.entry(origin.to_owned()).or_default(),
        };
        if senders.len() < MAX_IDLE_PER_UPSTREAM {
            senders.push((sender, Instant::now()));
        }
    }

    /// A new connection to `target`'s origin (TCP, and TLS for https).
    async fn connect(&self, target: &Uri) -> Result<Sender, UpstreamError> {
        let io = self
            .connector
            .clone()
            .oneshot(target.clone())
            .await
            .map_err(|error| UpstreamError::Unreachable(error_chain(error.as_ref())))?;
        let (sender, connection) = hyper::client::conn::http1::handshake(io)
            .await
            .map_err(|error| UpstreamError::Unreachable(error_chain(&error)))?;
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(error = %error_chain(&error), "upstream connection ended");
            }
        });
        Ok(sender)
    }
}

#[derive(Clone)]
pub struct Upstreams {
    pool: Arc<Pool>,
    timeout: Duration,
    metrics: Metrics,
}

impl Upstreams {
    pub fn new(timeout: Duration, metrics: Metrics) -> Result<Self, UpstreamError> {
        let mut tcp = HttpConnector::new();
        tcp.enforce_http(false);
        tcp.set_nodelay(true);
        tcp.set_connect_timeout(Some(Duration::from_secs(5)));
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_webpki_roots(provider)
            .map_err(|error| UpstreamError::Request(error.to_string()))?
            .https_or_http()
            .enable_http1()
            .wrap_connector(tcp);
        Ok(Upstreams {
            pool: Arc::new(Pool {
                idle: Mutex::new(HashMap::new()),
                connector,
            }),
            timeout,
            metrics,
        })
    }

    /// Sends the request to `target` and streams the answer back.
    /// `headers` must already be cleaned (identity, cookies, hop-by-hop) and
    /// carry the upstream's `Host`; `origin` names the upstream (its origin,
    /// from the config) for the pool and in metrics.
    pub async fn forward(
        &self,
        method: Method,
        target: Uri,
        origin: &str,
        headers: HeaderMap,
        body: Body,
    ) -> Result<Response, UpstreamError> {
        let mut request = Request::new(body);
        *request.method_mut() = method;
        // HTTP/1.1 to the origin server: the request target in origin-form.
        *request.uri_mut() = target
            .path_and_query()
            .map_or_else(|| Uri::from_static("/"), |path| Uri::from(path.clone()));
        *request.headers_mut() = headers;
        let active = self.metrics.upstream_active();
        let started = Instant::now();
        let sent = tokio::time::timeout(self.timeout, self.send(&target, origin, request)).await;
        let (response, sender) = match sent {
            Ok(Ok(answered)) => answered,
            Err(_) => {
                self.metrics.upstream_failed(origin, "timeout");
                return Err(UpstreamError::Timeout(self.timeout));
            }
            Ok(Err(error)) => {
                self.metrics.upstream_failed(origin, "unreachable");
                return Err(error);
            }
        };
        self.metrics.upstream_answered(origin, started.elapsed());
        let (mut parts, body) = response.into_parts();
        strip_hop_by_hop(&mut parts.headers);
        let body = PooledBody {
            inner: body,
            back: Some((self.pool.clone(), origin.to_owned(), sender)),
            metrics: self.metrics.clone(),
            _active: active,
        };
        Ok(Response::from_parts(parts, Body::new(body)))
    }

    /// Sends on an idle connection, or a new one; a request an idle
    /// connection could not take (the upstream had just closed it) is sent
    /// again on a new connection: it was never written.
    async fn send(
        &self,
        target: &Uri,
        origin: &str,
        request: Request<Body>,
    ) -> Result<(http::Response<Incoming>, Sender), UpstreamError> {
        let unreachable = |error: hyper::Error| UpstreamError::Unreachable(error_chain(&error));
        // An idle connection may still be finishing its last response (the
        // body's end reached us first); one that fails to become ready was
        // closed meanwhile, and a new connection is made instead.
        let idle = match self.pool.take_idle(origin) {
            Some(mut sender) => sender.ready().await.is_ok().then_some(sender),
            None => None,
        };
        if let Some(mut sender) = idle {
            match sender.try_send_request(request).await {
                Ok(response) => return Ok((response, sender)),
                Err(mut refused) => match refused.take_message() {
                    Some(request) => {
                        // Boxed: connecting is rare and its future large.
                        let mut sender = Box::pin(self.pool.connect(target)).await?;
                        let response = sender.send_request(request).await.map_err(unreachable)?;
                        return Ok((response, sender));
                    }
                    None => return Err(unreachable(refused.into_error())),
                },
            }
        }
        let mut sender = Box::pin(self.pool.connect(target)).await?;
        let response = sender.send_request(request).await.map_err(unreachable)?;
        Ok((response, sender))
    }
}

/// An upstream response body that hands its connection back to the pool
/// once read to the end, keeps the request counted as active until then,
/// and counts a body that breaks off.
struct PooledBody {
    inner: Incoming,
    back: Option<(Arc<Pool>, String, Sender)>,
    metrics: Metrics,
    _active: ActiveGuard,
}

impl PooledBody {
    fn finished(&mut self) {
        if let Some((pool, origin, sender)) = self.back.take() {
            pool.give_back(&origin, sender);
        }
    }
}

impl http_body::Body for PooledBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(context);
        match &polled {
            Poll::Ready(None) => this.finished(),
            Poll::Ready(Some(Err(error))) => {
                // The connection is broken: dropped, not handed back.
                if let Some((_, origin, _)) = this.back.take() {
                    this.metrics.upstream_failed(&origin, "body");
                }
                tracing::warn!(error = %error_chain(error), "upstream response body broke off");
            }
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for PooledBody {
    fn drop(&mut self) {
        // A body nobody read (a HEAD answer, a 304) is still complete.
        if self.inner.is_end_stream() {
            self.finished();
        }
    }
}

/// The URI to send a request for `path_and_query` to, under `upstream`.
/// An upstream with a base path ("http://app/base") is prefixed to the path.
pub fn target_uri(upstream: &Url, path_and_query: &str) -> Result<Uri, UpstreamError> {
    let base = upstream.as_str().trim_end_matches('/');
    let mut text = String::with_capacity(base.len() + path_and_query.len());
    text.push_str(base);
    text.push_str(path_and_query);
    Uri::try_from(text).map_err(|error| UpstreamError::Request(error.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_keeps_path_and_query_under_the_upstream_base() {
        let upstream = Url::parse("http://127.0.0.1:9100").unwrap();
        assert_eq!(
            target_uri(&upstream, "/a/b?x=1").unwrap().to_string(),
            "http://127.0.0.1:9100/a/b?x=1"
        );
        let based = Url::parse("http://app.internal/base/").unwrap();
        assert_eq!(
            target_uri(&based, "/a").unwrap().to_string(),
            "http://app.internal/base/a"
        );
    }
}
