//! HTTP/2 upstreams, through hyper's HTTP/2 client: `h2c://` ones (clear
//! text, prior knowledge) and https ones that pick `h2` by ALPN. This is
//! what lets a gRPC service sit behind portico: bodies stream both ways
//! and the upstream's trailers (`grpc-status`) reach the client.
//!
//! One multiplexed connection per upstream carries every request to it; it
//! is opened on the first request (one at a time: the others wait for it)
//! and opened again once it has closed. For an https upstream the first
//! connection also tells which protocol the upstream picked; one that
//! picks `http/1.1` is remembered, and from then on gets the HTTP/1.1
//! client (which is handed that first connection).
//!
//! The waits are the HTTP/1.1 client's: `upstream_connect_timeout` for TCP,
//! TLS and the HTTP/2 preface; `upstream_send_timeout` for each move of the
//! request body (the upstream taking none, or the client sending none);
//! `upstream_timeout` from the end of the request body to the response
//! head; `upstream_read_timeout` between frames of the response body.
//!
//! Memory: HTTP/2 flow control bounds what an upstream may send ahead of
//! the client: [`STREAM_WINDOW`] per request, [`CONNECTION_WINDOW`] per
//! connection, and [`MAX_HEADER_LIST`] of headers.

use std::future::Future;
use std::pin::{pin, Pin};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use http::header::{HOST, TE};
use http::{HeaderName, HeaderValue, Request, Uri};
use http_body::{Body as _, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;
use url::Url;

use super::headers::{is_underscored_framing, UpstreamHeaders};
use super::upstream::{connect_tcp, handshake, Target, UpstreamError, UpstreamTimeouts};
use crate::error::error_chain;
use crate::fasthash::FastMap;
use crate::ops::Metrics;

/// Most response bytes an upstream may send on one request ahead of the
/// client reading them.
pub const STREAM_WINDOW: u32 = 256 * 1024;
/// Most response bytes an upstream may send on its connection ahead of the
/// clients reading them.
pub const CONNECTION_WINDOW: u32 = 1024 * 1024;
/// Largest response head (and trailers), as the HTTP/1.1 client's.
pub const MAX_HEADER_LIST: u32 = super::h1::MAX_HEAD as u32;
/// Most request body bytes buffered per request for the upstream.
const SEND_BUFFER: usize = 256 * 1024;
/// An idle connection is pinged this often, and dropped when no answer
/// comes within [`KEEP_ALIVE_TIMEOUT`].
const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(30);
const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(20);

type Sender = http2::SendRequest<RequestBody>;

/// Which client an upstream gets.
pub(super) enum Chosen {
    Http2(Sender),
    /// An https upstream that picked HTTP/1.1, with the connection that
    /// found out (when this request made it).
    Http1(Option<Box<TlsStream<TcpStream>>>),
}

/// The HTTP/2 connections, by upstream origin.
#[derive(Default)]
pub(super) struct Http2Upstreams {
    slots: Mutex<FastMap<Arc<str>, Slot>>,
}

#[derive(Default)]
struct Slot {
    sender: Option<Sender>,
    /// An https upstream that picked HTTP/1.1 by ALPN.
    http1: bool,
    /// Held while a connection is being opened.
    opening: Arc<tokio::sync::Mutex<()>>,
}

enum Known {
    Chosen(Chosen),
    /// No open connection: take this turn to open one.
    Unknown(Arc<tokio::sync::Mutex<()>>),
}

impl Http2Upstreams {
    fn lock(&self) -> MutexGuard<'_, FastMap<Arc<str>, Slot>> {
        self.slots
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The client for `upstream` (h2c or https), opening its connection
    /// when there is none, all within `connect_timeout`.
    pub async fn choose(
        &self,
        upstream: &Url,
        origin: &Arc<str>,
        tls: &TlsConnector,
        connect_timeout: Duration,
    ) -> Result<Chosen, UpstreamError> {
        let opening = match self.known(origin) {
            Known::Chosen(chosen) => return Ok(chosen),
            Known::Unknown(opening) => opening,
        };
        let connecting = async {
            let _turn = opening.lock().await;
            // Another request may have opened it meanwhile.
            if let Known::Chosen(chosen) = self.known(origin) {
                return Ok(chosen);
            }
            self.open(upstream, origin, tls).await
        };
        match tokio::time::timeout(connect_timeout, connecting).await {
            Ok(chosen) => chosen,
            Err(_) => Err(UpstreamError::ConnectTimeout(connect_timeout)),
        }
    }

    fn known(&self, origin: &Arc<str>) -> Known {
        let mut slots = self.lock();
        let slot = match slots.get_mut(&**origin) {
            Some(slot) => slot,
            None => slots.entry(origin.clone()).or_default(),
        };
        if slot.http1 {
            return Known::Chosen(Chosen::Http1(None));
        }
        match &slot.sender {
            Some(sender) if !sender.is_closed() => Known::Chosen(Chosen::Http2(sender.clone())),
            _ => {
                slot.sender = None;
                Known::Unknown(slot.opening.clone())
            }
        }
    }

    async fn open(
        &self,
        upstream: &Url,
        origin: &Arc<str>,
        tls: &TlsConnector,
    ) -> Result<Chosen, UpstreamError> {
        let tcp = connect_tcp(upstream).await?;
        let sender = if upstream.scheme() == "https" {
            let stream = handshake(tls, upstream, tcp).await?;
            if stream.get_ref().1.alpn_protocol() != Some(b"h2".as_slice()) {
                tracing::info!(upstream = %origin, "the upstream chose HTTP/1.1 by ALPN");
                self.lock().entry(origin.clone()).or_default().http1 = true;
                return Ok(Chosen::Http1(Some(Box::new(stream))));
            }
            start(TokioIo::new(stream), origin).await?
        } else {
            start(TokioIo::new(tcp), origin).await?
        };
        tracing::debug!(upstream = %origin, "opened an HTTP/2 upstream connection");
        self.lock().entry(origin.clone()).or_default().sender = Some(sender.clone());
        Ok(Chosen::Http2(sender))
    }

    /// Sends the request on `sender`'s connection and streams the answer
    /// back, trailers and all.
    pub async fn forward(
        &self,
        mut sender: Sender,
        target: &Target<'_>,
        headers: &UpstreamHeaders<'_>,
        body: Body,
        timeouts: &UpstreamTimeouts,
        metrics: &Metrics,
    ) -> Result<Response, UpstreamError> {
        if headers.is_websocket() {
            return Err(UpstreamError::Request(
                "a websocket cannot be passed to an HTTP/2 (h2c) upstream".into(),
            ));
        }
        let shared = Arc::new(Shared {
            progress: Mutex::new(Progress {
                moved: Instant::now(),
                finished: body.is_end_stream().then(Instant::now),
                waiting_on_client: false,
                failure: None,
            }),
            changed: Notify::new(),
        });
        let body = RequestBody {
            inner: body,
            send_timeout: timeouts.send,
            timer: None,
            shared: shared.clone(),
        };
        let request = request(target, headers, body)?;
        let active = metrics.upstream_active();
        let started = Instant::now();
        let response = wait_for_head(sender.send_request(request), &shared, timeouts).await?;
        metrics.upstream_answered(target.origin, started.elapsed());
        let (mut parts, incoming) = response.into_parts();
        // `Content_Length` and the like: see `headers::is_underscored_framing`.
        let underscored: Vec<HeaderName> = parts
            .headers
            .keys()
            .filter(|name| is_underscored_framing(name.as_str()))
            .cloned()
            .collect();
        for name in underscored {
            parts.headers.remove(name);
        }
        let body = ResponseBody {
            inner: incoming,
            read_timeout: timeouts.read,
            timer: None,
            progressed: false,
            ended: false,
            origin: target.origin.clone(),
            metrics: metrics.clone(),
            _active: active,
        };
        let mut response = Response::new(Body::new(body));
        *response.status_mut() = parts.status;
        *response.headers_mut() = parts.headers;
        Ok(response)
    }
}

/// Starts HTTP/2 on `io`; the connection runs as a task of its own.
async fn start<T>(io: T, origin: &Arc<str>) -> Result<Sender, UpstreamError>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let mut builder = http2::Builder::new(TokioExecutor::new());
    builder
        .timer(TokioTimer::new())
        .initial_stream_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .max_header_list_size(MAX_HEADER_LIST)
        .max_send_buf_size(SEND_BUFFER)
        .keep_alive_interval(KEEP_ALIVE_INTERVAL)
        .keep_alive_timeout(KEEP_ALIVE_TIMEOUT);
    let (sender, connection) = builder.handshake(io).await.map_err(|error| {
        UpstreamError::Unreachable(format!(
            "HTTP/2 handshake with {origin}: {}",
            error_chain(&error)
        ))
    })?;
    let origin = origin.clone();
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::debug!(upstream = %origin, error = %error_chain(&error), "an HTTP/2 upstream connection ended");
        }
    });
    Ok(sender)
}

/// The request as hyper's HTTP/2 client takes it: the absolute URI gives
/// `:scheme` and `:authority` (the upstream's host, as `Host` is for
/// HTTP/1.1), and `TE: trailers` goes along when the client sent it.
fn request(
    target: &Target<'_>,
    headers: &UpstreamHeaders<'_>,
    body: RequestBody,
) -> Result<Request<RequestBody>, UpstreamError> {
    let upstream = target.upstream;
    let scheme = if upstream.scheme() == "https" {
        "https"
    } else {
        "http"
    };
    let host = upstream.host_str().unwrap_or_default();
    let base = upstream.path().trim_end_matches('/');
    let uri = match upstream.port() {
        Some(port) => format!("{scheme}://{host}:{port}{base}{}", target.path_and_query),
        None => format!("{scheme}://{host}{base}{}", target.path_and_query),
    };
    let uri = Uri::try_from(uri)
        .map_err(|error| UpstreamError::Request(format!("the request's target: {error}")))?;
    let mut request = Request::new(body);
    *request.method_mut() = target.method.clone();
    *request.uri_mut() = uri;
    *request.version_mut() = http::Version::HTTP_2;
    let sent = request.headers_mut();
    for (name, value) in headers.iter() {
        if name != HOST {
            sent.append(name.clone(), value.clone());
        }
    }
    if headers.client_takes_trailers() {
        sent.insert(TE, HeaderValue::from_static("trailers"));
    }
    Ok(request)
}

/// Waits for the response head: while the request body moves, each move
/// within `upstream_send_timeout`; once it has ended, the head within
/// `upstream_timeout`.
async fn wait_for_head(
    sending: impl Future<Output = hyper::Result<http::Response<Incoming>>>,
    shared: &Shared,
    timeouts: &UpstreamTimeouts,
) -> Result<http::Response<Incoming>, UpstreamError> {
    let mut sending = pin!(sending);
    loop {
        let changed = shared.changed.notified();
        let deadline = shared.lock().deadline(timeouts, Instant::now());
        tokio::select! {
            answered = sending.as_mut() => {
                return answered.map_err(|error| {
                    // The client's own failure, when its body broke.
                    shared.lock().failure.take().unwrap_or_else(|| {
                        UpstreamError::Unreachable(format!("HTTP/2: {}", error_chain(&error)))
                    })
                });
            }
            () = tokio::time::sleep_until(deadline.into()) => {
                if let Some(error) = shared.lock().expired(timeouts, Instant::now()) {
                    return Err(error);
                }
            }
            () = changed => {}
        }
    }
}

/// Between the request body and the wait for the head.
struct Shared {
    progress: Mutex<Progress>,
    /// The body ended (the head's timeout starts).
    changed: Notify,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Progress> {
        self.progress
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

struct Progress {
    /// When the request body last moved (or the request went).
    moved: Instant,
    /// When the request body ended.
    finished: Option<Instant>,
    /// The body waits for the client (its own timer judges that wait).
    waiting_on_client: bool,
    /// The client's body failed.
    failure: Option<UpstreamError>,
}

impl Progress {
    /// When to look again.
    fn deadline(&self, timeouts: &UpstreamTimeouts, now: Instant) -> Instant {
        match self.finished {
            Some(at) => at + timeouts.head,
            None if self.waiting_on_client => now + timeouts.send,
            None => self.moved + timeouts.send,
        }
    }

    /// The timeout that has run out by `now`, if one has.
    fn expired(&self, timeouts: &UpstreamTimeouts, now: Instant) -> Option<UpstreamError> {
        match self.finished {
            Some(at) => {
                (now >= at + timeouts.head).then_some(UpstreamError::Timeout(timeouts.head))
            }
            None if self.waiting_on_client => None,
            None => (now >= self.moved + timeouts.send)
                .then_some(UpstreamError::SendTimeout(timeouts.send)),
        }
    }
}

/// The client's request body on its way to an HTTP/2 upstream: each wait
/// for the client's next piece bounded by `upstream_send_timeout`, its
/// progress told to [`wait_for_head`].
pub(super) struct RequestBody {
    inner: Body,
    send_timeout: Duration,
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
    shared: Arc<Shared>,
}

impl RequestBody {
    fn moved(&mut self, ended: bool) {
        let now = Instant::now();
        let mut progress = self.shared.lock();
        progress.moved = now;
        progress.waiting_on_client = false;
        if ended && progress.finished.is_none() {
            progress.finished = Some(now);
            drop(progress);
            self.shared.changed.notify_one();
        }
        self.timer = None;
    }

    fn failed(&mut self, error: UpstreamError, text: String) -> UpstreamError {
        self.shared.lock().failure = Some(error);
        self.shared.changed.notify_one();
        UpstreamError::ClientBody(text)
    }
}

impl http_body::Body for RequestBody {
    type Data = Bytes;
    type Error = UpstreamError;

    fn poll_frame(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, UpstreamError>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(context) {
            Poll::Ready(Some(Ok(frame))) => {
                let ended = this.inner.is_end_stream();
                this.moved(ended);
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(error))) => {
                let text = error.to_string();
                let failure = UpstreamError::ClientBody(text.clone());
                Poll::Ready(Some(Err(this.failed(failure, text))))
            }
            Poll::Ready(None) => {
                this.moved(true);
                Poll::Ready(None)
            }
            Poll::Pending => {
                this.shared.lock().waiting_on_client = true;
                let timeout = this.send_timeout;
                let timer = this
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                if timer.as_mut().poll(context).is_pending() {
                    return Poll::Pending;
                }
                let failure = UpstreamError::ClientTimeout(timeout);
                let text = failure.to_string();
                Poll::Ready(Some(Err(this.failed(failure, text))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[path = "h2_upstream_body.rs"]
mod body;
use body::ResponseBody;

#[cfg(test)]
mod tests {
    use super::*;

    fn timeouts() -> UpstreamTimeouts {
        UpstreamTimeouts {
            connect: Duration::from_secs(1),
            head: Duration::from_secs(2),
            read: Duration::from_secs(3),
            send: Duration::from_secs(5),
        }
    }

    fn progress(finished: Option<Instant>, waiting_on_client: bool, moved: Instant) -> Progress {
        Progress {
            moved,
            finished,
            waiting_on_client,
            failure: None,
        }
    }

    #[test]
    fn the_head_is_timed_from_the_end_of_the_body() {
        let start = Instant::now();
        let done = progress(Some(start), false, start);
        assert_eq!(
            done.deadline(&timeouts(), start),
            start + Duration::from_secs(2)
        );
        assert!(done
            .expired(&timeouts(), start + Duration::from_secs(1))
            .is_none());
        assert!(matches!(
            done.expired(&timeouts(), start + Duration::from_secs(2)),
            Some(UpstreamError::Timeout(_))
        ));
    }

    #[test]
    fn a_body_the_upstream_takes_none_of_is_a_send_timeout() {
        let start = Instant::now();
        let stuck = progress(None, false, start);
        assert_eq!(
            stuck.deadline(&timeouts(), start),
            start + Duration::from_secs(5)
        );
        assert!(matches!(
            stuck.expired(&timeouts(), start + Duration::from_secs(5)),
            Some(UpstreamError::SendTimeout(_))
        ));
        // Waiting on the client is judged by the body's own timer.
        let waiting = progress(None, true, start);
        assert!(waiting
            .expired(&timeouts(), start + Duration::from_secs(60))
            .is_none());
    }
}
