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
            UpstreamError::ClientBody(_) | UpstreamError::ClientTimeout(_) => return None,
        })
    }

    /// The client's own failure (its answer is 4xx, and its connection is
    /// not to be trusted with another request).
    pub fn is_client_side(&self) -> bool {
        self.kind().is_none()
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
    /// Bytes read and not yet consumed.
    buf: BytesMut,
    /// It has carried a request before (so the upstream may have closed it
    /// meanwhile).
    reused: bool,
    /// The most bytes `buf` has held (the memory bound, counted).
    peak: usize,
}

impl Conn {
    fn new(stream: Stream) -> Conn {
        Conn {
            stream,
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

/// Idle connections by origin, each with the moment it went idle.
type Idle = FastMap<Arc<str>, Vec<(Conn, Instant)>>;

/// Kept-alive upstream connections, by upstream origin. A connection goes
/// back when its response body has been read to the end and the upstream
/// allows another request on it; any other is closed.
///
/// Each per-core worker has a shard of its own (and everything off the
/// workers shares one more). A socket is registered with the reactor of the
/// runtime that opened it, and that reactor delivers its readiness: a
/// connection opened by one worker and reused by another made every answer on
/// it a cross-thread wake-up (an eventfd write, half of all requests with two
/// workers), and it would stop working once its own worker's runtime ended.
struct Pool {
    shards: Box<[Mutex<Idle>]>,
}

impl Pool {
    /// The calling worker's shard.
    fn lock(&self) -> std::sync::MutexGuard<'_, Idle> {
        let shard = crate::front::current_worker().map_or(0, |index| index + 1);
        self.shards[shard % self.shards.len()]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// An idle connection to `origin` that is still open.
    fn take_idle(&self, origin: &str) -> Option<Conn> {
        let mut idle = self.lock();
        let conns = idle.get_mut(origin)?;
        while let Some((conn, since)) = conns.pop() {
            if since.elapsed() < IDLE_LIFETIME && conn.stream.is_open() {
                return Some(conn);
            }
        }
        None
    }

    fn give_back(&self, origin: &Arc<str>, mut conn: Conn) {
        if !conn.buf.is_empty() {
            // The upstream sent more than its response: not to be trusted.
            return;
        }
        conn.reused = true;
        if conn.buf.capacity() > HEAD_CHUNK {
            // Grown for a large body: an idle connection keeps no more
            // than a head needs.
            conn.buf = BytesMut::new();
        }
        let mut idle = self.lock();
        let conns = match idle.get_mut(&**origin) {
            Some(conns) => conns,
            None => idle.entry(origin.clone()).or_default(),
        };
        if conns.len() < MAX_IDLE_PER_UPSTREAM {
            conns.push((conn, Instant::now()));
        }
    }

    /// A new connection to `upstream` (TCP, and TLS for https), within
    /// `timeout`.
    async fn connect(
        &self,
        upstream: &Url,
        timeout: Duration,
        tls: &TlsConnector,
    ) -> Result<Conn, UpstreamError> {
        match tokio::time::timeout(timeout, self.open(upstream, tls)).await {
            Ok(opened) => opened,
            Err(_) => Err(UpstreamError::ConnectTimeout(timeout)),
        }
    }

    async fn open(&self, upstream: &Url, tls: &TlsConnector) -> Result<Conn, UpstreamError> {
        let tcp = dial::connect_tcp(upstream).await?;
        let stream = if upstream.scheme() == "https" {
            Stream::Tls(Box::new(dial::handshake(tls, upstream, tcp).await?))
        } else {
            Stream::Plain(tcp)
        };
        Ok(Conn::new(stream))
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
            }),
            http2: Arc::new(Http2Upstreams::default()),
            tls: Arc::new(TlsConnectors::new()?),
            timeouts,
            metrics,
        })
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
                Chosen::Http1(Some(stream)) => fresh = Some(Conn::new(Stream::Tls(stream))),
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
        let mut conn = match fresh.or_else(|| self.pool.take_idle(origin)) {
            Some(conn) => conn,
            // Boxed: connecting is rare and its future large.
            None => Box::pin(self.pool.connect(upstream, self.timeouts.connect, tls)).await?,
        };
        loop {
            match send(&mut conn, &mut outgoing, &self.timeouts).await {
                Ok(head) => return Ok((conn, head)),
                Err(Failure::Closed(error)) if conn.reused && replayable => {
                    tracing::debug!(%error, "an idle upstream connection was closed; sending again");
                    conn =
                        Box::pin(self.pool.connect(upstream, self.timeouts.connect, tls)).await?;
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

#[path = "upstream_send.rs"]
mod send;
use send::send;

#[path = "upstream_tls.rs"]
mod dial;
pub(super) use dial::{connect_tcp, handshake};
use dial::{Stream, TlsConnectors};

#[path = "upstream_body.rs"]
mod body;
use body::UpstreamBody;

#[cfg(test)]
#[path = "upstream_tests.rs"]
mod tests;
