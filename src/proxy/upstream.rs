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

use std::future::{poll_fn, Future};
use std::io;
use std::pin::{pin, Pin};
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::response::Response;
use bytes::{Bytes, BytesMut};
use http::{HeaderValue, Method};
use http_body::{Body as _, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use url::Url;

use super::h1::{self, Decoder, Head, Step, WireError};
use super::headers::UpstreamHeaders;
use crate::fasthash::FastMap;
use crate::ops::metrics::ActiveGuard;
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

/// An upstream connection, plain or TLS.
enum Stream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl Stream {
    fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(tcp) => tcp,
            Stream::Tls(tls) => tls.get_ref().0,
        }
    }

    /// False once the upstream has closed the connection (or sent anything
    /// while it was idle, which leaves it unusable too). No system call
    /// unless the socket has signalled something since the last read.
    fn is_open(&self) -> bool {
        let mut probe = [0u8; 1];
        matches!(self.tcp().try_read(&mut probe), Err(error) if error.kind() == io::ErrorKind::WouldBlock)
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(tcp) => Pin::new(tcp).poll_read(context, buf),
            Stream::Tls(tls) => Pin::new(tls.as_mut()).poll_read(context, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(tcp) => Pin::new(tcp).poll_write(context, data),
            Stream::Tls(tls) => Pin::new(tls.as_mut()).poll_write(context, data),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(tcp) => Pin::new(tcp).poll_flush(context),
            Stream::Tls(tls) => Pin::new(tls.as_mut()).poll_flush(context),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(tcp) => Pin::new(tcp).poll_shutdown(context),
            Stream::Tls(tls) => Pin::new(tls.as_mut()).poll_shutdown(context),
        }
    }
}

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
    tls: tokio_rustls::TlsConnector,
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
    async fn connect(&self, upstream: &Url, timeout: Duration) -> Result<Conn, UpstreamError> {
        match tokio::time::timeout(timeout, self.open(upstream)).await {
            Ok(opened) => opened,
            Err(_) => Err(UpstreamError::ConnectTimeout(timeout)),
        }
    }

    async fn open(&self, upstream: &Url) -> Result<Conn, UpstreamError> {
        let unreachable = |what: &str, error: &dyn std::fmt::Display| {
            UpstreamError::Unreachable(format!(
                "{what} {}: {error}",
                upstream.origin().ascii_serialization()
            ))
        };
        let port = upstream
            .port_or_known_default()
            .ok_or_else(|| unreachable("no port for", &"unknown scheme"))?;
        let host = upstream
            .host()
            .ok_or_else(|| unreachable("no host for", &"the URL has none"))?;
        let connecting = async {
            match &host {
                url::Host::Domain(domain) => TcpStream::connect((*domain, port)).await,
                url::Host::Ipv4(ip) => TcpStream::connect((*ip, port)).await,
                url::Host::Ipv6(ip) => TcpStream::connect((*ip, port)).await,
            }
        };
        let tcp = connecting
            .await
            .map_err(|error| unreachable("connecting to", &error))?;
        if let Err(error) = tcp.set_nodelay(true) {
            tracing::debug!(%error, "could not set TCP_NODELAY on an upstream connection");
        }
        let stream = if upstream.scheme() == "https" {
            let name = match host {
                url::Host::Domain(domain) => {
                    rustls_pki_types::ServerName::try_from(domain.to_owned())
                        .map_err(|error| unreachable("no TLS name for", &error))?
                }
                url::Host::Ipv4(ip) => rustls_pki_types::ServerName::from(std::net::IpAddr::V4(ip)),
                url::Host::Ipv6(ip) => rustls_pki_types::ServerName::from(std::net::IpAddr::V6(ip)),
            };
            let tls = self
                .tls
                .connect(name, tcp)
                .await
                .map_err(|error| unreachable("TLS handshake with", &error))?;
            Stream::Tls(Box::new(tls))
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
    timeouts: UpstreamTimeouts,
    metrics: Metrics,
}

impl Upstreams {
    pub fn new(timeouts: UpstreamTimeouts, metrics: Metrics) -> Result<Self, UpstreamError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|error| UpstreamError::Request(error.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Upstreams {
            pool: Arc::new(Pool {
                shards: (0..=crate::front::worker_count())
                    .map(|_| Mutex::new(FastMap::default()))
                    .collect(),
                tls: tokio_rustls::TlsConnector::from(Arc::new(config)),
            }),
            timeouts,
            metrics,
        })
    }

    /// Sends the request for `path_and_query` to `upstream` (under its base
    /// path) and streams the answer back. For a websocket handshake
    /// ([`UpstreamHeaders::websocket`]) an upstream's 101 comes back with the
    /// connection as a [`Tunnel`]. `headers` must already be cleaned
    /// (identity, cookies, hop-by-hop) and carry the upstream's `Host`;
    /// `origin` names the upstream for the pool and in metrics.
    pub async fn forward(
        &self,
        method: &Method,
        upstream: &Url,
        path_and_query: &str,
        origin: &Arc<str>,
        headers: &UpstreamHeaders<'_>,
        body: Body,
    ) -> Result<(Response, Option<Tunnel>), UpstreamError> {
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
        let (conn, answer) = match self.exchange(upstream, origin, outgoing).await {
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

    /// Sends on an idle connection, or a new one. A request without a body
    /// whose method may be repeated (RFC 9110 §9.2.2) is sent again on a new
    /// connection when a reused one turns out to have been closed by the
    /// upstream before any answer came.
    async fn exchange(
        &self,
        upstream: &Url,
        origin: &Arc<str>,
        mut outgoing: Outgoing<'_>,
    ) -> Result<(Conn, Head), UpstreamError> {
        let replayable = outgoing.body.is_end_stream() && outgoing.method.is_idempotent();
        let mut conn = match self.pool.take_idle(origin) {
            Some(conn) => conn,
            // Boxed: connecting is rare and its future large.
            None => Box::pin(self.pool.connect(upstream, self.timeouts.connect)).await?,
        };
        loop {
            match send(&mut conn, &mut outgoing, &self.timeouts).await {
                Ok(head) => return Ok((conn, head)),
                Err(Failure::Closed(error)) if conn.reused && replayable => {
                    tracing::debug!(%error, "an idle upstream connection was closed; sending again");
                    conn = Box::pin(self.pool.connect(upstream, self.timeouts.connect)).await?;
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
}

/// Writes the request on `conn` and reads the response head: a request
/// without a body within `upstream_timeout` in all; one with a body within
/// `upstream_send_timeout` per write, then `upstream_timeout` for the head.
async fn send(
    conn: &mut Conn,
    outgoing: &mut Outgoing<'_>,
    timeouts: &UpstreamTimeouts,
) -> Result<Head, Failure> {
    let (method, upgrade) = (outgoing.method, outgoing.upgrade);
    if outgoing.body.is_end_stream() {
        let exchange = async {
            conn.stream
                .write_all(&outgoing.head)
                .await
                .map_err(Failure::Closed)?;
            conn.stream.flush().await.map_err(Failure::Closed)?;
            read_head(conn, method, upgrade).await
        };
        return match tokio::time::timeout(timeouts.head, exchange).await {
            Ok(answer) => answer,
            Err(_) => Err(UpstreamError::Timeout(timeouts.head).into()),
        };
    }
    match tokio::time::timeout(timeouts.send, conn.stream.write_all(&outgoing.head)).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => return Err(Failure::Closed(error)),
        Err(_) => return Err(UpstreamError::SendTimeout(timeouts.send).into()),
    }
    match send_body(conn, outgoing, timeouts.send).await {
        Ok(Sent::Whole) => {}
        Ok(Sent::Answered(mut head)) => {
            // The rest of the body was never sent: the connection is done.
            head.keep_alive = false;
            return Ok(head);
        }
        Err(BodyFailure::Client(error)) => return Err(error.into()),
        Err(BodyFailure::Timeout(error)) => return Err(error.into()),
        Err(BodyFailure::Upstream(error)) => {
            // The upstream may have answered and closed; that answer is
            // worth more than the write error.
            let answer = tokio::time::timeout(timeouts.head, read_head(conn, method, upgrade));
            return match answer.await {
                Ok(Ok(mut head)) => {
                    head.keep_alive = false;
                    Ok(head)
                }
                _ => Err(error.into()),
            };
        }
    }
    match tokio::time::timeout(timeouts.send, conn.stream.flush()).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => return Err(Failure::Closed(error)),
        Err(_) => return Err(UpstreamError::SendTimeout(timeouts.send).into()),
    }
    match tokio::time::timeout(timeouts.head, read_head(conn, method, upgrade)).await {
        Ok(answer) => answer,
        Err(_) => Err(UpstreamError::Timeout(timeouts.head).into()),
    }
}

/// How sending a request body ended.
enum Sent {
    Whole,
    /// The upstream gave its final answer first, and it ends the exchange.
    Answered(Head),
}

/// How sending a request body failed.
enum BodyFailure {
    /// The client's body broke off, was malformed or too large.
    Client(UpstreamError),
    /// Nothing moved for `upstream_send_timeout`.
    Timeout(UpstreamError),
    Upstream(UpstreamError),
}

/// One move of [`send_body`].
enum Moved {
    Some,
    Done,
    Answered(Head),
}

/// Sends the request body (chunked when `outgoing.chunked`), each move (a
/// piece from the client, a write to the upstream) within `timeout`,
/// watching for an early answer meanwhile.
async fn send_body(
    conn: &mut Conn,
    outgoing: &mut Outgoing<'_>,
    timeout: Duration,
) -> Result<Sent, BodyFailure> {
    let mut sending = Sending {
        pending: Bytes::new(),
        finished: false,
        answer_waiting: false,
    };
    loop {
        let step = poll_fn(|context| sending.poll_move(conn, outgoing, context));
        match tokio::time::timeout(timeout, step).await {
            Ok(Ok(Moved::Some)) => {}
            Ok(Ok(Moved::Done)) => return Ok(Sent::Whole),
            Ok(Ok(Moved::Answered(head))) => return Ok(Sent::Answered(head)),
            Ok(Err(failure)) => return Err(failure),
            // Waiting on the client for its next piece.
            Err(_) if sending.pending.is_empty() && !sending.finished => {
                return Err(BodyFailure::Client(UpstreamError::ClientTimeout(timeout)))
            }
            Err(_) => return Err(BodyFailure::Timeout(UpstreamError::SendTimeout(timeout))),
        }
    }
}

/// Where sending a request body stands.
struct Sending {
    /// Framed bytes not yet written.
    pending: Bytes,
    /// The client's body has ended (its last chunk is in `pending`).
    finished: bool,
    /// A final answer has come that waits for the body to be sent: the
    /// connection is no longer read meanwhile.
    answer_waiting: bool,
}

impl Sending {
    fn poll_move(
        &mut self,
        conn: &mut Conn,
        outgoing: &mut Outgoing<'_>,
        context: &mut Context<'_>,
    ) -> Poll<Result<Moved, BodyFailure>> {
        let upstream = |error: io::Error| {
            BodyFailure::Upstream(UpstreamError::Unreachable(format!(
                "sending the body: {error}"
            )))
        };
        if !self.pending.is_empty() {
            match Pin::new(&mut conn.stream).poll_write(context, &self.pending) {
                Poll::Ready(Ok(0)) => {
                    return Poll::Ready(Err(upstream(io::ErrorKind::WriteZero.into())))
                }
                Poll::Ready(Ok(written)) => {
                    bytes::Buf::advance(&mut self.pending, written);
                    return Poll::Ready(Ok(Moved::Some));
                }
                Poll::Ready(Err(error)) => return Poll::Ready(Err(upstream(error))),
                Poll::Pending => {}
            }
        } else if self.finished {
            return Poll::Ready(Ok(Moved::Done));
        } else {
            match Pin::new(&mut outgoing.body).poll_frame(context) {
                Poll::Ready(None) => {
                    self.finished = true;
                    if outgoing.chunked {
                        self.pending = Bytes::from_static(h1::LAST_CHUNK);
                    }
                    return Poll::Ready(Ok(Moved::Some));
                }
                Poll::Ready(Some(Err(error))) => {
                    return Poll::Ready(Err(BodyFailure::Client(UpstreamError::ClientBody(
                        error.to_string(),
                    ))))
                }
                Poll::Ready(Some(Ok(frame))) => {
                    // Trailers are not passed on.
                    if let Ok(data) = frame.into_data() {
                        if !data.is_empty() {
                            self.pending = if outgoing.chunked {
                                Bytes::from(h1::chunk(&data))
                            } else {
                                data
                            };
                        }
                    }
                    return Poll::Ready(Ok(Moved::Some));
                }
                Poll::Pending => {}
            }
        }
        if self.answer_waiting {
            return Poll::Pending;
        }
        // Nothing moved: has the upstream answered meanwhile?
        loop {
            match ready!(conn.poll_fill(context, HEAD_CHUNK)) {
                Ok(0) => {
                    return Poll::Ready(Err(BodyFailure::Upstream(UpstreamError::Unreachable(
                        "the upstream closed the connection while the body was being sent".into(),
                    ))))
                }
                Ok(_) => {}
                Err(error) => return Poll::Ready(Err(upstream(error))),
            }
            // Looked at on a copy: an answer that lets the body finish stays
            // buffered for `read_head`.
            let mut probe = conn.buf.clone();
            match h1::parse_head(&mut probe, outgoing.method, outgoing.upgrade) {
                // Interim answers skipped (and gone from the buffer: a
                // stream of them must not pile up), the rest partial.
                Ok(None) => conn.buf = probe,
                Ok(Some(head)) if head.status.as_u16() >= 400 || !head.keep_alive => {
                    conn.buf = probe;
                    return Poll::Ready(Ok(Moved::Answered(head)));
                }
                Ok(Some(_)) => {
                    self.answer_waiting = true;
                    return Poll::Pending;
                }
                Err(error) => {
                    return Poll::Ready(Err(BodyFailure::Upstream(UpstreamError::Invalid(error))))
                }
            }
        }
    }
}

async fn read_head(conn: &mut Conn, method: &Method, upgrade: bool) -> Result<Head, Failure> {
    let mut answered = false;
    loop {
        if !conn.buf.is_empty() {
            answered = true;
            if let Some(head) = h1::parse_head(&mut conn.buf, method, upgrade)? {
                return Ok(head);
            }
        }
        let read = poll_fn(|context| conn.poll_fill(context, HEAD_CHUNK)).await;
        match read {
            Ok(0) if !answered => return Err(Failure::Closed(io::ErrorKind::UnexpectedEof.into())),
            Ok(0) => {
                return Err(Failure::Failed(UpstreamError::Unreachable(
                    "the connection closed in the middle of the response head".into(),
                )))
            }
            Ok(_) => {}
            Err(error) if !answered => return Err(Failure::Closed(error)),
            Err(error) => {
                return Err(Failure::Failed(UpstreamError::Unreachable(
                    error.to_string(),
                )))
            }
        }
    }
}

/// An upstream response body, read from the connection as the client takes
/// it. The connection goes back to the pool once the body has been read to
/// its end (when the upstream allows); the request counts as active until
/// then; a body that breaks off is counted.
struct UpstreamBody {
    conn: Option<Conn>,
    decoder: Decoder,
    /// `upstream_read_timeout`: the longest wait for the next bytes.
    read_timeout: Duration,
    /// Armed the first time a read has to wait (most bodies come whole with
    /// their head and never need it), then moved on after each read.
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
    /// Bytes came since the timer was last set.
    progressed: bool,
    /// The most bytes the connection's buffer held, kept once it is gone.
    peak: usize,
    keep_alive: bool,
    pool: Arc<Pool>,
    origin: Arc<str>,
    metrics: Metrics,
    _active: ActiveGuard,
}

impl UpstreamBody {
    fn finish(&mut self) {
        if let Some(conn) = self.conn.take() {
            self.peak = conn.peak;
            if self.keep_alive {
                self.pool.give_back(&self.origin, conn);
            }
        }
    }

    fn broke_off(&mut self, kind: &'static str, error: &dyn std::fmt::Display) -> io::Error {
        if let Some(conn) = self.conn.take() {
            self.peak = conn.peak;
        }
        self.metrics.upstream_failed(&self.origin, kind);
        tracing::warn!(%error, "upstream response body broke off");
        io::Error::other(format!("upstream response body broke off: {error}"))
    }
}

impl http_body::Body for UpstreamBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = self.get_mut();
        loop {
            let Some(conn) = this.conn.as_mut() else {
                return Poll::Ready(None);
            };
            match this.decoder.step(&mut conn.buf) {
                Ok(Step::Data(data)) => return Poll::Ready(Some(Ok(Frame::data(data)))),
                Ok(Step::Done) => {
                    this.finish();
                    return Poll::Ready(None);
                }
                Ok(Step::NeedMore) => {}
                Err(error) => return Poll::Ready(Some(Err(this.broke_off("body", &error)))),
            }
            let read = match conn.poll_fill(context, BODY_CHUNK) {
                Poll::Ready(read) => read,
                Poll::Pending => {
                    let timeout = this.read_timeout;
                    let timer = match &mut this.timer {
                        Some(timer) => {
                            if this.progressed {
                                timer.as_mut().reset(tokio::time::Instant::now() + timeout);
                            }
                            timer
                        }
                        None => this.timer.insert(Box::pin(tokio::time::sleep(timeout))),
                    };
                    this.progressed = false;
                    if timer.as_mut().poll(context).is_pending() {
                        return Poll::Pending;
                    }
                    let error = format!("nothing came for {timeout:?} (upstream_read_timeout)");
                    return Poll::Ready(Some(Err(this.broke_off("read_timeout", &error))));
                }
            };
            match read {
                Ok(0) => match this.decoder.at_close() {
                    Ok(()) => {
                        this.peak = conn.peak;
                        this.conn = None;
                        return Poll::Ready(None);
                    }
                    Err(error) => return Poll::Ready(Some(Err(this.broke_off("body", &error)))),
                },
                Ok(_) => this.progressed = true,
                Err(error) => return Poll::Ready(Some(Err(this.broke_off("body", &error)))),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.conn.is_none() || self.decoder.remaining() == Some(0)
    }

    fn size_hint(&self) -> SizeHint {
        match self.decoder.remaining() {
            Some(remaining) => SizeHint::with_exact(remaining),
            None => SizeHint::default(),
        }
    }
}

impl Drop for UpstreamBody {
    fn drop(&mut self) {
        // The server may stop polling once the length is reached: the body
        // is still complete.
        if self.decoder.remaining() == Some(0) {
            self.finish();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::front::pretend_worker;

    fn timeouts() -> UpstreamTimeouts {
        UpstreamTimeouts {
            connect: Duration::from_secs(1),
            head: Duration::from_secs(1),
            read: Duration::from_secs(1),
            send: Duration::from_secs(1),
        }
    }

    fn pool() -> Pool {
        let upstreams = Upstreams::new(timeouts(), Metrics::new()).expect("upstreams");
        Arc::into_inner(upstreams.pool).expect("the only handle")
    }

    async fn open_conn(listener: &tokio::net::TcpListener) -> Conn {
        let address = listener.local_addr().expect("address");
        let stream = TcpStream::connect(address).await.expect("connect");
        Conn::new(Stream::Plain(stream))
    }

    #[tokio::test(flavor = "current_thread")]
    async fn idle_connections_stay_with_the_worker_that_opened_them() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let pool = pool();
        let origin: Arc<str> = Arc::from("http://127.0.0.1:1");

        pretend_worker(Some(0));
        pool.give_back(&origin, open_conn(&listener).await);
        pretend_worker(Some(1));
        assert!(
            pool.take_idle(&origin).is_none(),
            "worker 1 must not reuse a connection registered with worker 0's reactor"
        );
        pretend_worker(None);
        assert!(
            pool.take_idle(&origin).is_none(),
            "nor may the main runtime"
        );
        pretend_worker(Some(0));
        let conn = pool
            .take_idle(&origin)
            .expect("worker 0 gets its own connection back");
        assert!(
            conn.reused,
            "a connection taken from the pool is marked reused"
        );

        // Off the workers, connections are pooled (and reused) too.
        pretend_worker(None);
        pool.give_back(&origin, open_conn(&listener).await);
        assert!(pool.take_idle(&origin).is_some());
        assert!(
            pool.take_idle(&origin).is_none(),
            "each idle connection is handed out once"
        );
    }

    /// A raw upstream that writes `head`, then `repeat` copies of `unit`
    /// (until portico stops reading), to whoever connects.
    async fn flooding_upstream(head: &'static [u8], unit: Vec<u8>, repeat: usize) -> Conn {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let conn = open_conn(&listener).await;
        let (mut stream, _) = listener.accept().await.expect("accept");
        tokio::spawn(async move {
            if stream.write_all(head).await.is_err() {
                return;
            }
            let batch = unit.repeat((64 * 1024 / unit.len()).max(1));
            let mut sent = 0;
            while sent < repeat * unit.len() {
                if stream.write_all(&batch).await.is_err() {
                    return;
                }
                sent += batch.len();
            }
        });
        conn
    }

    const FLOOD: usize = 32 * 1024 * 1024;

    #[tokio::test]
    async fn thirty_two_mib_of_headers_are_refused_holding_a_bounded_buffer() {
        // One endless header line, and many long ones.
        // (Lines of 1 KiB: 64 of them reach the limit before the count of
        // headers does.)
        let long_line = [b"\r\nx-h: ".as_slice(), &b"a".repeat(1024)].concat();
        for unit in [b"a".repeat(1024), long_line] {
            let repeat = FLOOD / unit.len();
            let mut conn = flooding_upstream(b"HTTP/1.1 200 OK\r\nx-big: ", unit, repeat).await;
            let refused = read_head(&mut conn, &Method::GET, false).await;
            assert!(
                matches!(
                    refused,
                    Err(Failure::Failed(UpstreamError::Invalid(
                        WireError::HeadTooLarge
                    )))
                ),
                "an endless head is refused"
            );
            assert!(
                conn.peak <= h1::MAX_HEAD + HEAD_CHUNK,
                "held {} bytes",
                conn.peak
            );
        }
    }

    #[tokio::test]
    async fn thirty_two_mib_of_trailers_are_refused_holding_a_bounded_buffer() {
        let head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n";
        // A trailer line as long as the whole budget first (the old
        // underflow), then trailers without end; and only small ones.
        for first in [true, false] {
            let mut unit = b"x-t: 0123456789abcdef0123456789abcdef\r\n".to_vec();
            if first {
                unit = [
                    b"x-long: ".repeat(h1::MAX_TRAILERS / 8),
                    b"\r\n".to_vec(),
                    unit,
                ]
                .concat();
            }
            let mut conn = flooding_upstream(head, unit.clone(), FLOOD / unit.len()).await;
            let answer = read_head(&mut conn, &Method::GET, false)
                .await
                .ok()
                .expect("a head");
            let metrics = Metrics::new();
            let mut body = UpstreamBody {
                conn: Some(conn),
                decoder: Decoder::new(answer.framing),
                read_timeout: Duration::from_secs(5),
                timer: None,
                progressed: false,
                peak: 0,
                keep_alive: answer.keep_alive,
                pool: Arc::new(pool()),
                origin: Arc::from("http://flood"),
                _active: metrics.upstream_active(),
                metrics,
            };
            let mut data = Vec::new();
            let ended = loop {
                match poll_fn(|context| Pin::new(&mut body).poll_frame(context)).await {
                    Some(Ok(frame)) => data.extend_from_slice(&frame.into_data().expect("data")),
                    Some(Err(error)) => break Err(error),
                    None => break Ok(()),
                }
            };
            assert_eq!(data, b"x");
            let error = ended.expect_err("the body breaks off, it never ends well");
            assert!(error.to_string().contains("trailers larger"), "{error}");
            assert!(
                body.peak <= h1::MAX_TRAILERS + BODY_CHUNK,
                "held {} bytes",
                body.peak
            );
            assert!(body.peak <= MAX_BUFFERED);
        }
    }
}
