//! Sending a request on an upstream connection and reading the answer's
//! head: the request body streamed with a bound on every move, the
//! connection watched meanwhile for an early answer.

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::Method;
use http_body::Body as _;
use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::{h1, Conn, Failure, Head, Outgoing, UpstreamError, UpstreamTimeouts, HEAD_CHUNK};

/// Writes the request on `conn` and reads the response head: a request
/// without a body within `upstream_timeout` in all; one with a body within
/// `upstream_send_timeout` per write, then `upstream_timeout` for the head.
pub(super) async fn send(
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

pub(super) async fn read_head(
    conn: &mut Conn,
    method: &Method,
    upgrade: bool,
) -> Result<Head, Failure> {
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
