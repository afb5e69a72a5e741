//! An upstream response body, streamed to the client as it is read, each
//! read bounded by `upstream_read_timeout`.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Frame, SizeHint};

use super::{Conn, Decoder, Pool, Step, BODY_CHUNK};
use crate::ops::metrics::ActiveGuard;
use crate::ops::Metrics;

/// An upstream response body, read from the connection as the client takes
/// it. The connection goes back to the pool once the body has been read to
/// its end (when the upstream allows); the request counts as active until
/// then; a body that breaks off is counted.
pub(super) struct UpstreamBody {
    pub(super) conn: Option<Conn>,
    pub(super) decoder: Decoder,
    /// `upstream_read_timeout`: the longest wait for the next bytes.
    pub(super) read_timeout: Duration,
    /// Armed the first time a read has to wait (most bodies come whole with
    /// their head and never need it), then moved on after each read.
    pub(super) timer: Option<Pin<Box<tokio::time::Sleep>>>,
    /// Bytes came since the timer was last set.
    pub(super) progressed: bool,
    /// The most bytes the connection's buffer held, kept once it is gone.
    pub(super) peak: usize,
    pub(super) keep_alive: bool,
    pub(super) pool: Arc<Pool>,
    pub(super) origin: Arc<str>,
    pub(super) metrics: Metrics,
    pub(super) _active: ActiveGuard,
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
        broken_body(&self.metrics, &self.origin, kind, error)
    }
}

/// A response body that broke off mid-way (HTTP/1.1 or HTTP/2): counted by
/// `kind` under the upstream, logged, and the error the client's body ends
/// with.
pub(in crate::proxy) fn broken_body(
    metrics: &Metrics,
    origin: &str,
    kind: &'static str,
    error: &dyn std::fmt::Display,
) -> io::Error {
    metrics.upstream_failed(origin, kind);
    tracing::warn!(%error, "upstream response body broke off");
    io::Error::other(format!("upstream response body broke off: {error}"))
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
                    let error = ready!(poll_read_gap(
                        &mut this.timer,
                        &mut this.progressed,
                        this.read_timeout,
                        context
                    ));
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

/// The `upstream_read_timeout` of a response body, HTTP/1.1 or HTTP/2,
/// polled when a read found nothing: the timer starts at the first wait and
/// restarts when data came since the last one (`progressed`). Ready, with
/// the reason, once `timeout` passed with nothing.
pub(in crate::proxy) fn poll_read_gap(
    timer: &mut Option<Pin<Box<tokio::time::Sleep>>>,
    progressed: &mut bool,
    timeout: Duration,
    context: &mut Context<'_>,
) -> Poll<String> {
    let timer = match timer {
        Some(timer) => {
            if *progressed {
                timer.as_mut().reset(tokio::time::Instant::now() + timeout);
            }
            timer
        }
        None => timer.insert(Box::pin(tokio::time::sleep(timeout))),
    };
    *progressed = false;
    ready!(timer.as_mut().poll(context));
    Poll::Ready(format!(
        "nothing came for {timeout:?} (upstream_read_timeout)"
    ))
}
