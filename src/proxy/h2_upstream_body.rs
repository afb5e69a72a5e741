//! An HTTP/2 upstream's response body on its way to the client.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;

use crate::error::error_chain;
use crate::ops::metrics::ActiveGuard;
use crate::ops::Metrics;
use crate::proxy::upstream::body::{broken_body, poll_read_gap};

/// An HTTP/2 upstream's response body, frames (trailers too) passed on as
/// they come, each wait bounded by `upstream_read_timeout`.
pub(super) struct ResponseBody {
    pub(super) inner: Incoming,
    pub(super) read_timeout: Duration,
    /// Armed the first time a read has to wait, moved on after each frame.
    pub(super) timer: Option<Pin<Box<tokio::time::Sleep>>>,
    pub(super) progressed: bool,
    /// It ended or broke off: nothing more comes.
    pub(super) ended: bool,
    pub(super) origin: Arc<str>,
    pub(super) metrics: Metrics,
    pub(super) _active: ActiveGuard,
}

impl ResponseBody {
    fn broke_off(&mut self, kind: &'static str, error: &dyn std::fmt::Display) -> io::Error {
        self.ended = true;
        broken_body(&self.metrics, &self.origin, kind, error)
    }
}

impl http_body::Body for ResponseBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = self.get_mut();
        if this.ended {
            return Poll::Ready(None);
        }
        match Pin::new(&mut this.inner).poll_frame(context) {
            Poll::Ready(Some(Ok(frame))) => {
                this.progressed = true;
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(error))) => {
                let error = error_chain(&error);
                Poll::Ready(Some(Err(this.broke_off("body", &error))))
            }
            Poll::Ready(None) => {
                this.ended = true;
                Poll::Ready(None)
            }
            Poll::Pending => {
                let error = std::task::ready!(poll_read_gap(
                    &mut this.timer,
                    &mut this.progressed,
                    this.read_timeout,
                    context
                ));
                Poll::Ready(Some(Err(this.broke_off("read_timeout", &error))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.ended || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
