//! What a connection's driver needs to know about hyper's side of it without
//! looking inside hyper: how many requests started, how many are still being
//! answered, and whether the socket refused the last write. The service,
//! the response bodies and the socket each keep their part up to date; the
//! driver (`connection`) reads them once a second to decide on parking.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::response::Response;
use bytes::{Buf, Bytes};
use http_body::{Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use super::Entry;

/// One connection's counters. Relaxed atomics: one task touches them in
/// turn, and a stale read only delays or cancels a parking (see
/// `connection::park`), it never parks a busy connection.
#[derive(Debug, Default)]
pub(super) struct Activity {
    /// Requests whose answer started, ever (wrapping).
    started: AtomicUsize,
    /// Requests whose answer has not been written to its end (the response
    /// body not yet dropped by hyper).
    in_flight: AtomicUsize,
    /// The socket's last write returned `Pending`: hyper may hold bytes it
    /// has not been able to write yet.
    write_blocked: AtomicBool,
    /// The driver is taking hyper off this connection: a shutdown of the
    /// socket is then not a close.
    parking: AtomicBool,
}

/// What the driver reads at each check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Snapshot {
    pub started: usize,
    pub in_flight: usize,
    pub write_blocked: bool,
}

impl Activity {
    pub(super) fn snapshot(&self) -> Snapshot {
        Snapshot {
            started: self.started.load(Relaxed),
            in_flight: self.in_flight.load(Relaxed),
            write_blocked: self.write_blocked.load(Relaxed),
        }
    }

    pub(super) fn set_parking(&self, parking: bool) {
        self.parking.store(parking, Relaxed);
    }
}

/// The hyper service of a connection: [`Entry`], counting requests in and
/// answers out.
#[derive(Clone)]
pub(super) struct Served {
    pub entry: Entry,
    pub activity: Arc<Activity>,
}

impl hyper::service::Service<http::Request<hyper::body::Incoming>> for Served {
    type Response = http::Response<Counted>;
    type Error = Infallible;
    type Future = Answer;

    fn call(&self, request: http::Request<hyper::body::Incoming>) -> Self::Future {
        self.activity.started.fetch_add(1, Relaxed);
        self.activity.in_flight.fetch_add(1, Relaxed);
        Answer {
            inner: self.entry.serve(request.map(Body::new)),
            in_flight: Some(InFlight(self.activity.clone())),
        }
    }
}

/// Counts one request as in flight until dropped.
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Relaxed);
    }
}

/// The answer being computed; its [`InFlight`] moves into the body.
pub(super) struct Answer {
    inner: Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>,
    in_flight: Option<InFlight>,
}

impl Future for Answer {
    type Output = Result<http::Response<Counted>, Infallible>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let Poll::Ready(Ok(response)) = self.inner.as_mut().poll(cx) else {
            return Poll::Pending;
        };
        let in_flight = self.in_flight.take();
        Poll::Ready(Ok(response.map(|body| Counted {
            body,
            _in_flight: in_flight,
        })))
    }
}

/// A response body that keeps its request in flight until hyper drops it,
/// which it does once the body's last byte is written (or the connection
/// failed).
pub(super) struct Counted {
    body: Body,
    _in_flight: Option<InFlight>,
}

impl http_body::Body for Counted {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// The client's socket as hyper sees it: bytes read before hyper was put on
/// it come first, writes that the kernel refuses are noted, and while the
/// driver parks the connection a shutdown leaves the socket open.
pub(super) struct FrontStream {
    pub stream: TcpStream,
    pub unread: Bytes,
    pub activity: Arc<Activity>,
}

impl FrontStream {
    fn noted<T>(&self, polled: Poll<std::io::Result<T>>) -> Poll<std::io::Result<T>> {
        self.activity
            .write_blocked
            .store(polled.is_pending(), Relaxed);
        polled
    }
}

impl AsyncRead for FrontStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.unread.is_empty() {
            return Pin::new(&mut self.stream).poll_read(cx, buf);
        }
        let take = self.unread.len().min(buf.remaining());
        buf.put_slice(&self.unread[..take]);
        self.unread.advance(take);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for FrontStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bytes: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.stream).poll_write(cx, bytes);
        self.noted(polled)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buffers: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.stream).poll_write_vectored(cx, buffers);
        self.noted(polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        if self.activity.parking.load(Relaxed) {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}
