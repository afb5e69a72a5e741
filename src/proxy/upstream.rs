//! The upstream client: HTTP/1.1 (the wire format is in [`super::h1`])
//! spoken in the request's own task over kept-alive connections, plain TCP
//! or rustls, bodies streamed both ways.
//!
//! Redirects are passed through (never followed), nothing is decompressed,
//! no environment proxy is used. Every wait has its own bound, named like
//! nginx's: connecting (`upstream_connect_timeout`), each write of a request
//! body and each wait for the next piece of it from the client
//! (`upstream_send_timeout`), the response head once the request is sent
//! (`upstream_timeout`), and each read of the response body
//! (`upstream_read_timeout`). An upload may take as long as it takes while
//! it moves; a body that stalls is cut.
//!
//! While a request body is being sent, the connection is watched for an
//! early answer (RFC 9112 §9.5): an error status or one that closes stops
//! the sending at once (an early 413, say); an interim answer is skipped;
//! any other waits until the body is sent. A client whose body breaks
//! (a bad chunk, over `max_body_bytes`, gone) ends the exchange at once and
//! the upstream connection is closed, never reused.
//!
//! Memory: a connection's read buffer holds at most one read
//! ([`HEAD_CHUNK`] or [`BODY_CHUNK`] bytes) beyond the longest unit the
//! decoder must see whole: a head ([`h1::MAX_HEAD`]), a trailer section
//! ([`h1::MAX_TRAILERS`]) or a chunk-size line. Body data is handed on as
//! it is read. So whatever an upstream sends, portico holds at most
//! [`MAX_BUFFERED`] bytes per upstream connection.
//!
//! Why not hyper's client: it runs each connection as a task of its own,
//! and every request crosses to that task and back through channels (the
//! request, the response head, each body frame). In the benchmark's profile
//! that was a fifth of a proxied request's instructions. Here the task that
//! serves the client writes the upstream request and reads the answer itself.

use std::future::Future;
use std::io;
use std::pin::pin;
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::response::Response;
use bytes::BytesMut;
use http::{HeaderValue, Method};
use http_body::Body as _;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use url::Url;

use tokio_rustls::TlsConnector;

use super::h1::{self, Decoder, Head, Step, WireError};
use super::h2_upstream::{Chosen, Http2Upstreams};
use super::headers::UpstreamHeaders;
use super::upstream_limit::{Overflow, Permit, UpstreamLimit};
use crate::config::UpstreamCa;
use crate::fasthash::FastMap;
use crate::ops::Metrics;

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("upstream refused or unreachable: {0}")]
    Unreachable(String),
    #[error("upstream sent no response within {0:?}")]
    Timeout(Duration),
    #[error("could not connect to the upstream within {0:?}")]
    ConnectTimeout(Duration),
    #[error("upstream took none of the request body for {0:?}")]
    SendTimeout(Duration),
    #[error("upstream request could not be sent: {0}")]
    Request(String),
    #[error("upstream sent an invalid response: {0}")]
    Invalid(#[from] WireError),
    /// The upstream's TLS certificate was refused (why, in words).
    #[error("the upstream's TLS certificate was refused: {0}")]
    Certificate(String),
    /// The client's side: its body broke off, was malformed or too large.
    #[error("the request body could not be read: {0}")]
    ClientBody(String),
    /// The client sent nothing more of its body for this long.
    #[error("the client sent none of its request body for {0:?}")]
    ClientTimeout(Duration),
    /// All of the upstream's `max_connections` were busy, and the request
    /// could not wait for one (`max_pending`, `pending_timeout`).
    #[error("the upstream's connection limit is reached ({})", .0.reason())]
    Overloaded(Overflow),
}

impl UpstreamError {
    /// The `kind` label of `portico_upstream_errors_total`; None for the
    /// client's own failures, which are no upstream's.
    fn kind(&self) -> Option<&'static str> {
        Some(match self {
            UpstreamError::Unreachable(_) => "unreachable",
            UpstreamError::Timeout(_)
            | UpstreamError::ConnectTimeout(_)
            | UpstreamError::SendTimeout(_) => "timeout",
            UpstreamError::Request(_) => "request",
            UpstreamError::Invalid(_) => "invalid",
            UpstreamError::Certificate(_) => "certificate",
            // Counted as overflow, not as the upstream's failure.
            UpstreamError::Overloaded(_) => return None,
            UpstreamError::ClientBody(_) | UpstreamError::ClientTimeout(_) => return None,
        })
    }

    /// The client's own failure (its answer is 4xx, and its connection is
    /// not to be trusted with another request).
    pub fn is_client_side(&self) -> bool {
        matches!(
            self,
            UpstreamError::ClientBody(_) | UpstreamError::ClientTimeout(_)
        )
    }
}

/// The waits at the upstream edge (see the module notes).
#[derive(Debug, Clone, Copy)]
pub struct UpstreamTimeouts {
    pub connect: Duration,
    /// To the response head, once the request is sent.
    pub head: Duration,
    /// Between reads of a response body.
    pub read: Duration,
    /// Between writes of a request body (and pieces of it from the client).
    pub send: Duration,
}

/// How many idle connections are kept per upstream.
const MAX_IDLE_PER_UPSTREAM: usize = 256;
/// Idle connections older than this are not reused.
const IDLE_LIFETIME: Duration = Duration::from_secs(90);
/// Most bytes one read takes while a response head is awaited (most heads,
/// and small bodies with them, fit); memory per connection matters with a
/// thousand of them open.
const HEAD_CHUNK: usize = 4 * 1024;
/// Most bytes one read of a body takes.
const BODY_CHUNK: usize = 16 * 1024;
/// The most bytes an upstream connection's read buffer ever holds: the
/// largest unit the decoder needs whole, plus one read.
pub const MAX_BUFFERED: usize = {
    let unit = if h1::MAX_HEAD > h1::MAX_TRAILERS {
        h1::MAX_HEAD
    } else {
        h1::MAX_TRAILERS
    };
    unit + BODY_CHUNK
};

struct Conn {
    stream: Stream,
    /// Its place under the upstream's `max_connections`.
    permit: Permit<Conn>,
    /// The shard of the worker that opened it (whose reactor it is
    /// registered with): it goes back there when idle.
    home: usize,
    /// Bytes read and not yet consumed.
    buf: BytesMut,
    /// It has carried a request before (so the upstream may have closed it
    /// meanwhile).
    reused: bool,
    /// The most bytes `buf` has held (the memory bound, counted).
    peak: usize,
}

impl Conn {
    fn new(stream: Stream, permit: Permit<Conn>) -> Conn {
        Conn {
            stream,
            permit,
            home: shard_of_this_thread(),
            buf: BytesMut::new(),
            reused: false,
            peak: 0,
        }
    }

    /// Reads at most `chunk` bytes more into `buf`, making room for them
    /// when less than a quarter of that is free; `Ok(0)` at the upstream's
    /// close.
    fn poll_fill(&mut self, context: &mut Context<'_>, chunk: usize) -> Poll<io::Result<usize>> {
        if self.buf.capacity() - self.buf.len() < chunk / 4 {
            self.buf.reserve(chunk);
        }
        let mut limited = bytes::BufMut::limit(&mut self.buf, chunk);
        let read = ready!(pin!(self.stream.read_buf(&mut limited)).poll(context));
        self.peak = self.peak.max(self.buf.len());
        Poll::Ready(read)
    }
}

/// Why an exchange failed, and whether it may be tried again on a new
/// connection.
enum Failure {
    /// A reused connection turned out closed before any of the answer came:
    /// the upstream closed it while idle.
    Closed(io::Error),
    Failed(UpstreamError),
}

impl From<UpstreamError> for Failure {
    fn from(error: UpstreamError) -> Self {
        Failure::Failed(error)
    }
}

impl From<WireError> for Failure {
    fn from(error: WireError) -> Self {
        Failure::Failed(error.into())
    }
}

/// The request as it goes upstream.
struct Outgoing<'a> {
    method: &'a Method,
    head: Vec<u8>,
    body: Body,
    chunked: bool,
    /// The request asks to switch protocols (a websocket handshake).
    upgrade: bool,
}

/// An upstream connection that switched protocols (a websocket): from here
/// on, bytes pass both ways as they come.
pub struct Tunnel {
    stream: Stream,
    /// What the upstream sent right after its 101, already read.
    early: BytesMut,
    /// A websocket holds its connection's place under the limit.
    _permit: Permit<Conn>,
}

impl Tunnel {
    /// Passes bytes between `client` and the upstream until both directions
    /// have ended (or one fails).
    pub async fn splice<C>(mut self, client: &mut C) -> io::Result<()>
    where
        C: AsyncRead + AsyncWrite + Unpin,
    {
        if !self.early.is_empty() {
            client.write_all(&self.early).await?;
            client.flush().await?;
        }
        tokio::io::copy_bidirectional(client, &mut self.stream)
            .await
            .map(|_| ())
    }
}

#[derive(Clone)]
pub struct Upstreams {
    pool: Arc<Pool>,
    /// HTTP/2 upstreams: h2c, and https ones that pick h2 by ALPN.
    http2: Arc<Http2Upstreams>,
    tls: Arc<TlsConnectors>,
    timeouts: UpstreamTimeouts,
    metrics: Metrics,
}

impl Upstreams {
    pub fn new(timeouts: UpstreamTimeouts, metrics: Metrics) -> Result<Self, UpstreamError> {
        Ok(Upstreams {
            pool: Arc::new(Pool {
                shards: (0..=crate::front::worker_count())
                    .map(|_| Mutex::new(FastMap::default()))
                    .collect(),
                gates: Mutex::new(FastMap::default()),
            }),
            http2: Arc::new(Http2Upstreams::default()),
            tls: Arc::new(TlsConnectors::new()?),
            timeouts,
            metrics,
        })
    }

    /// Sets each upstream origin's connection limit (at start, and when the
    /// routes are reloaded; an origin no route names gets the default).
    pub fn set_limits<'a>(&self, limits: impl IntoIterator<Item = (&'a Arc<str>, UpstreamLimit)>) {
        self.pool.set_limits(limits);
    }

    /// Sends the request for `path_and_query` to `upstream` (under its base
    /// path) and streams the answer back. For a websocket handshake
    /// ([`UpstreamHeaders::websocket`]) an upstream's 101 comes back with the
    /// connection as a [`Tunnel`]. `headers` must already be cleaned
    /// (identity, cookies, hop-by-hop) and carry the upstream's `Host`;
    /// `origin` names the upstream for the pool and in metrics; `ca` is the
    /// route's `upstream_ca_file`.
    ///
    /// An `h2c://` upstream, and an https one that picks `h2` by ALPN, is
    /// spoken to in HTTP/2 ([`Http2Upstreams`]); every other in HTTP/1.1.
    #[allow(clippy::too_many_arguments)]
    pub async fn forward(
        &self,
        method: &Method,
        upstream: &Url,
        path_and_query: &str,
        origin: &Arc<str>,
        ca: Option<&UpstreamCa>,
        headers: &UpstreamHeaders<'_>,
        body: Body,
    ) -> Result<(Response, Option<Tunnel>), UpstreamError> {
        let connectors = match upstream.scheme() {
            "http" => None,
            _ => Some(self.counted(origin, self.tls.for_upstream(origin, ca))?),
        };
        // A websocket goes to an https upstream in HTTP/1.1 (its ALPN offer
        // says so); every other request to h2c and https may go in HTTP/2.
        let may_use_http2 = !(headers.is_websocket() && upstream.scheme() == "https");
        let mut fresh = None;
        if let Some(connectors) = connectors.as_ref().filter(|_| may_use_http2) {
            let chosen = self.http2.choose(
                upstream,
                origin,
                &connectors.negotiating,
                self.timeouts.connect,
            );
            match self.counted(origin, Box::pin(chosen).await)? {
                Chosen::Http2(sender) => {
                    let target = Target {
                        method,
                        upstream,
                        path_and_query,
                        origin,
                    };
                    let sent = self.http2.forward(
                        sender,
                        &target,
                        headers,
                        body,
                        &self.timeouts,
                        &self.metrics,
                    );
                    let sent = self.counted(origin, Box::pin(sent).await);
                    return sent.map(|response| (response, None));
                }
                // The upstream chose HTTP/1.1: the connection that found out
                // carries this request.
                // It counts under the origin's limit like any other; at the
                // limit it is closed and the request waits its turn.
                Chosen::Http1(Some(stream)) => {
                    fresh = self
                        .pool
                        .gate(origin)
                        .try_open()
                        .map(|permit| Conn::new(Stream::Tls(stream), permit));
                }
                Chosen::Http1(None) => {}
            }
        }
        let http1_tls = match &connectors {
            Some(connectors) => &connectors.http1,
            None => self.tls.default_http1(),
        };
        // A body of known length goes as it is; any other body is chunked.
        let chunked = !body.is_end_stream() && !headers.has_content_length();
        let mut head = Vec::with_capacity(512);
        let base = upstream.path().trim_end_matches('/');
        h1::write_request_head(
            &mut head,
            method,
            (base, path_and_query),
            headers.iter(),
            chunked,
        );
        let outgoing = Outgoing {
            method,
            head,
            body,
            chunked,
            upgrade: headers.is_websocket(),
        };
        let active = self.metrics.upstream_active();
        let started = Instant::now();
        let (conn, answer) = match self
            .exchange(upstream, origin, outgoing, http1_tls, fresh)
            .await
        {
            Ok(exchanged) => exchanged,
            Err(error) => {
                if let Some(kind) = error.kind() {
                    self.metrics.upstream_failed(origin, kind);
                }
                if let UpstreamError::Overloaded(overflow) = &error {
                    self.metrics.upstream_overflow(origin, overflow.reason());
                }
                return Err(error);
            }
        };
        self.metrics.upstream_answered(origin, started.elapsed());
        // The head came without hop-by-hop headers (h1 leaves them out).
        let headers = answer.headers;
        if answer.status == http::StatusCode::SWITCHING_PROTOCOLS {
            // Only ever to a websocket handshake (h1 refuses any other 101),
            // which the client's own hop gets as the upstream's did.
            let mut response = Response::new(Body::empty());
            *response.status_mut() = answer.status;
            *response.headers_mut() = headers;
            let answer = response.headers_mut();
            answer.insert(
                http::header::CONNECTION,
                HeaderValue::from_static("upgrade"),
            );
            answer.insert(http::header::UPGRADE, HeaderValue::from_static("websocket"));
            let tunnel = Tunnel {
                stream: conn.stream,
                early: conn.buf,
                _permit: conn.permit,
            };
            return Ok((response, Some(tunnel)));
        }
        let decoder = Decoder::new(answer.framing);
        let body = if decoder == Decoder::Done {
            if answer.keep_alive {
                self.pool.give_back(origin, conn);
            }
            Body::empty()
        } else {
            Body::new(UpstreamBody {
                conn: Some(conn),
                decoder,
                read_timeout: self.timeouts.read,
                timer: None,
                progressed: false,
                peak: 0,
                keep_alive: answer.keep_alive,
                pool: self.pool.clone(),
                origin: origin.clone(),
                metrics: self.metrics.clone(),
                _active: active,
            })
        };
        let mut response = Response::new(body);
        *response.status_mut() = answer.status;
        *response.headers_mut() = headers;
        Ok((response, None))
    }

    /// Sends on `fresh` (a connection just opened), an idle connection, or
    /// a new one. A request without a body
    /// whose method may be repeated (RFC 9110 §9.2.2) is sent again on a new
    /// connection when a reused one turns out to have been closed by the
    /// upstream before any answer came.
    async fn exchange(
        &self,
        upstream: &Url,
        origin: &Arc<str>,
        mut outgoing: Outgoing<'_>,
        tls: &TlsConnector,
        fresh: Option<Conn>,
    ) -> Result<(Conn, Head), UpstreamError> {
        let replayable = outgoing.body.is_end_stream() && outgoing.method.is_idempotent();
        let mut conn = match fresh {
            Some(conn) => conn,
            None => {
                self.pool
                    .checkout(upstream, origin, self.timeouts.connect, &self.metrics, tls)
                    .await?
            }
        };
        loop {
            match send(&mut conn, &mut outgoing, &self.timeouts).await {
                Ok(head) => return Ok((conn, head)),
                Err(Failure::Closed(error)) if conn.reused && replayable => {
                    tracing::debug!(%error, "an idle upstream connection was closed; sending again");
                    // On a new connection in the closed one's place.
                    let permit = conn.permit;
                    conn =
                        Box::pin(
                            self.pool
                                .connect(upstream, self.timeouts.connect, tls, permit),
                        )
                        .await?;
                }
                Err(Failure::Closed(error)) => {
                    return Err(UpstreamError::Unreachable(format!(
                        "the connection closed before an answer: {error}"
                    )))
                }
                Err(Failure::Failed(error)) => return Err(error),
            }
        }
    }

    /// `result`, with its failure counted in metrics.
    fn counted<T>(
        &self,
        origin: &str,
        result: Result<T, UpstreamError>,
    ) -> Result<T, UpstreamError> {
        if let Err(error) = &result {
            if let Some(kind) = error.kind() {
                self.metrics.upstream_failed(origin, kind);
            }
        }
        result
    }
}

/// What is asked of an upstream, for the HTTP/2 client.
pub(super) struct Target<'a> {
    pub method: &'a Method,
    pub upstream: &'a Url,
    pub path_and_query: &'a str,
    pub origin: &'a Arc<str>,
}

#[path = "upstream_pool.rs"]
mod pool;
use pool::{shard_of_this_thread, Pool};

#[path = "upstream_pool_limit.rs"]
mod pool_limit;

#[path = "upstream_send.rs"]
mod send;
use send::send;

#[path = "upstream_tls.rs"]
mod dial;
pub(super) use dial::{connect_tcp, handshake};
use dial::{Stream, TlsConnectors};

#[path = "upstream_body.rs"]
pub(super) mod body;
use body::UpstreamBody;

#[cfg(test)]
#[path = "upstream_tests.rs"]
mod tests;
