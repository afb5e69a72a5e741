//! One client connection of a per-core worker, start to finish.
//!
//! hyper keeps two 8 KiB buffers (read, and response heads) and its
//! dispatcher for as long as it serves a connection, idle or not: 10,000
//! keep-alive connections were 18.7 KiB each (docs/benchmarks.md). So a
//! connection holds hyper only while it is used:
//!
//! - nothing but the socket until its first bytes arrive (and the protocol
//!   is told from them with `peek`, no buffer kept: HTTP/1.1, or HTTP/2
//!   with prior knowledge when `[server] h2c` is on);
//! - an HTTP/1.1 connection on which no request started for a full
//!   [`PARK_CHECK`] period, with every answer written, is *parked*: hyper
//!   closes it as it would an idle keep-alive connection, the socket is kept
//!   open (with any bytes hyper read and did not use), and hyper is put on
//!   it again when the next bytes arrive. The client sees nothing of it.
//!
//! HTTP/2 connections and upgraded ones (websockets) are served by hyper to
//! their end.

use std::future::{poll_fn, Future as _};
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use hyper_util::rt::{TokioExecutor, TokioIo};
use prometheus_client::metrics::gauge::Gauge;
use tokio::net::TcpStream;
use tokio::sync::watch;

use super::activity::{Activity, FrontStream, Served, Snapshot};
use super::Entry;

/// How often a connection in use is checked for parking: one that started
/// no request over a whole period (so idle for one to two periods) is parked.
pub(super) const PARK_CHECK: Duration = Duration::from_secs(1);

/// The longest wait for the rest of an HTTP/2 preface whose start arrived
/// alone; after it the bytes are served as HTTP/1.1 (and refused there).
const PREFACE_WAIT: Duration = Duration::from_secs(10);

/// The client connection preface of HTTP/2 (RFC 9113 §3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// What a connection's first bytes say it speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Sniffed {
    Http1,
    Http2,
    /// A proper start of the HTTP/2 preface: more bytes decide.
    NeedMore,
}

/// Tells HTTP/2 with prior knowledge from HTTP/1.1 by the first bytes.
fn sniff(first: &[u8]) -> Sniffed {
    let compared = first.len().min(H2_PREFACE.len());
    if first[..compared] != H2_PREFACE[..compared] {
        Sniffed::Http1
    } else if compared == H2_PREFACE.len() {
        Sniffed::Http2
    } else {
        Sniffed::NeedMore
    }
}

/// Whether a connection in use may be parked now, given what it showed at
/// the last check (`before`), when hyper was put on it (`at_start`), and now.
/// It must have answered a request under this hyper (hyper counts a fresh
/// connection as busy until then), started none since the last check, and
/// have every answer written to the socket.
fn may_park(at_start: usize, before: usize, now: Snapshot) -> bool {
    now.started != at_start && now.started == before && now.in_flight == 0 && !now.write_blocked
}

/// Serves one connection until it ends, or, once portico stops, until the
/// request in flight is answered (idle connections are closed at once).
pub(super) async fn serve(
    stream: TcpStream,
    entry: Entry,
    mut stop: watch::Receiver<bool>,
    _open: watch::Receiver<()>,
) {
    let h2c = entry.app.config.server.h2c;
    let http2 = tokio::select! {
        first = first_bytes(&stream, h2c) => match first {
            Some(sniffed) => sniffed == Sniffed::Http2,
            None => return,
        },
        _ = stop.wait_for(|stopping| *stopping) => return,
    };
    let activity = Arc::new(Activity::default());
    let service = Served { entry, activity };
    if http2 {
        serve_http2(stream, service, stop).await;
    } else {
        serve_http1(stream, service, stop).await;
    }
}

/// Waits for the connection's first bytes and tells its protocol (HTTP/1.1
/// only when `h2c` is off). `None` when the client closed or the socket
/// failed first.
async fn first_bytes(stream: &TcpStream, h2c: bool) -> Option<Sniffed> {
    let mut first = [0u8; H2_PREFACE.len()];
    if !h2c {
        return match stream.peek(&mut first[..1]).await {
            Ok(0) | Err(_) => None,
            Ok(_) => Some(Sniffed::Http1),
        };
    }
    let deadline = tokio::time::Instant::now() + PREFACE_WAIT;
    let mut had = 0;
    loop {
        let read = match stream.peek(&mut first).await {
            Ok(0) | Err(_) => return None,
            Ok(read) => read,
        };
        match sniff(&first[..read]) {
            Sniffed::NeedMore if tokio::time::Instant::now() < deadline => {
                // peek answers at once while unread bytes wait: look again
                // shortly rather than spin.
                if read == had {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                had = read;
            }
            Sniffed::NeedMore => return Some(Sniffed::Http1),
            decided => return Some(decided),
        }
    }
}

/// Counts a connection as active or parked while it is open.
struct Gauged {
    active: Gauge,
    parked: Gauge,
    is_parked: bool,
}

impl Gauged {
    fn new(metrics: &crate::ops::metrics::Metrics) -> Self {
        let (active, parked) = metrics.client_connections();
        active.inc();
        Gauged {
            active,
            parked,
            is_parked: false,
        }
    }

    fn set_parked(&mut self, parked: bool) {
        if parked != self.is_parked {
            let (from, to) = if parked {
                (&self.active, &self.parked)
            } else {
                (&self.parked, &self.active)
            };
            from.dec();
            to.inc();
            self.is_parked = parked;
        }
    }
}

impl Drop for Gauged {
    fn drop(&mut self) {
        if self.is_parked {
            self.parked.dec();
        } else {
            self.active.dec();
        }
    }
}

/// HTTP/1.1, with parking between uses.
async fn serve_http1(mut stream: TcpStream, service: Served, mut stop: watch::Receiver<bool>) {
    let builder = hyper::server::conn::http1::Builder::new();
    let mut gauged = Gauged::new(&service.entry.app.metrics);
    let mut unread = Bytes::new();
    loop {
        gauged.set_parked(false);
        let activity = service.activity.clone();
        let io = TokioIo::new(FrontStream {
            stream,
            unread,
            activity: activity.clone(),
        });
        let connection = builder
            .serve_connection(io, service.clone())
            .with_upgrades();
        // Boxed, with its timer: a parked connection's task keeps neither.
        let Some(parked) = Box::pin(drive(Box::new(connection), activity, &mut stop)).await else {
            return;
        };
        let front = parked.io.into_inner();
        stream = front.stream;
        unread = join(parked.read_buf, front.unread);
        if unread.is_empty() {
            gauged.set_parked(true);
            tokio::select! {
                ready = stream.readable() => if ready.is_err() { return },
                _ = stop.wait_for(|stopping| *stopping) => return,
            }
        }
    }
}

type Http1Connection =
    hyper::server::conn::http1::UpgradeableConnection<TokioIo<FrontStream>, Served>;
type Http1Parts = hyper::server::conn::http1::Parts<TokioIo<FrontStream>, Served>;

/// Drives hyper on a connection until it ends (`None`) or is parked (its
/// parts).
async fn drive(
    mut connection: Box<Http1Connection>,
    activity: Arc<Activity>,
    stop: &mut watch::Receiver<bool>,
) -> Option<Http1Parts> {
    let at_start = activity.snapshot().started;
    let mut before = at_start;
    let check = tokio::time::sleep(PARK_CHECK);
    tokio::pin!(check);
    loop {
        enum Woke {
            Ended(Result<(), hyper::Error>),
            Check,
            Stop,
        }
        let woke = tokio::select! {
            ended = &mut *connection => Woke::Ended(ended),
            () = &mut check => Woke::Check,
            _ = stop.wait_for(|stopping| *stopping) => Woke::Stop,
        };
        match woke {
            Woke::Ended(ended) => {
                if let Err(error) = ended {
                    tracing::trace!(%error, "connection ended with an error");
                }
                return None;
            }
            Woke::Check => {
                let now = activity.snapshot();
                if may_park(at_start, before, now) {
                    return park(connection, &activity).await;
                }
                before = now.started;
                check
                    .as_mut()
                    .reset(tokio::time::Instant::now() + PARK_CHECK);
            }
            Woke::Stop => {
                Pin::new(&mut *connection).graceful_shutdown();
                if let Err(error) = connection.await {
                    tracing::trace!(%error, "connection ended with an error");
                }
                return None;
            }
        }
    }
}

/// Takes hyper off an idle connection. hyper closes an idle connection on a
/// graceful shutdown at once, so the first poll after it tells: ready, and
/// the socket and unread bytes are handed back; still pending, and hyper
/// was busy after all (a request had just arrived), so it answers it with
/// `Connection: close` and the connection ends as hyper ends it.
async fn park(mut connection: Box<Http1Connection>, activity: &Activity) -> Option<Http1Parts> {
    activity.set_parking(true);
    Pin::new(&mut *connection).graceful_shutdown();
    let first = poll_fn(|cx| Poll::Ready(Pin::new(&mut *connection).poll(cx))).await;
    match first {
        Poll::Ready(Ok(())) => {
            activity.set_parking(false);
            connection.into_parts()
        }
        Poll::Ready(Err(error)) => {
            tracing::trace!(%error, "connection ended with an error");
            None
        }
        Poll::Pending => {
            // Keep-alive is off now: hyper finishes the request and closes,
            // which is all a stop would ask of it too.
            activity.set_parking(false);
            if let Err(error) = connection.await {
                tracing::trace!(%error, "connection ended with an error");
            }
            None
        }
    }
}

/// Bytes hyper read and did not use, then bytes it never read. hyper's are
/// a view of its whole read buffer (8 KiB or more, even when empty), so
/// they are copied out: what a parked connection keeps is only its bytes.
fn join(read: Bytes, unread: Bytes) -> Bytes {
    if read.is_empty() {
        return unread;
    }
    let mut both = BytesMut::with_capacity(read.len() + unread.len());
    both.extend_from_slice(&read);
    both.extend_from_slice(&unread);
    both.freeze()
}

/// HTTP/2 with prior knowledge, served by hyper to its end.
async fn serve_http2(stream: TcpStream, service: Served, mut stop: watch::Receiver<bool>) {
    let _gauged = Gauged::new(&service.entry.app.metrics);
    let io = TokioIo::new(FrontStream {
        stream,
        unread: Bytes::new(),
        activity: service.activity.clone(),
    });
    let connection = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
        .serve_connection(io, service);
    let mut connection = Box::pin(connection);
    tokio::select! {
        ended = connection.as_mut() => {
            if let Err(error) = ended {
                tracing::trace!(%error, "connection ended with an error");
            }
            return;
        }
        _ = stop.wait_for(|stopping| *stopping) => {}
    }
    connection.as_mut().graceful_shutdown();
    if let Err(error) = connection.await {
        tracing::trace!(%error, "connection ended with an error");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_http2_preface_is_told_from_http1_by_as_few_bytes_as_decide() {
        assert_eq!(sniff(b"GET / HTTP/1.1\r\n"), Sniffed::Http1);
        assert_eq!(sniff(b"P"), Sniffed::NeedMore);
        assert_eq!(sniff(b"PRI * HTTP/2.0\r\n"), Sniffed::NeedMore);
        assert_eq!(sniff(b"POST / HTTP/1.1\r\n"), Sniffed::Http1);
        assert_eq!(sniff(H2_PREFACE), Sniffed::Http2);
        let mut more = H2_PREFACE.to_vec();
        more.extend_from_slice(b"\0\0\x12\x04");
        assert_eq!(sniff(&more), Sniffed::Http2);
        assert_eq!(sniff(b"PRI * HTTP/1.1\r\n"), Sniffed::Http1);
    }

    fn snapshot(started: usize, in_flight: usize, write_blocked: bool) -> Snapshot {
        Snapshot {
            started,
            in_flight,
            write_blocked,
        }
    }

    #[test]
    fn only_a_connection_idle_for_a_whole_check_with_its_answers_written_is_parked() {
        // One request answered under this hyper, none since the last check.
        assert!(may_park(4, 5, snapshot(5, 0, false)));
        // Nothing answered yet under this hyper: hyper counts it busy.
        assert!(!may_park(5, 5, snapshot(5, 0, false)));
        // A request started since the last check.
        assert!(!may_park(4, 5, snapshot(6, 0, false)));
        // An answer still being written, or stuck in hyper's buffer.
        assert!(!may_park(4, 5, snapshot(5, 1, false)));
        assert!(!may_park(4, 5, snapshot(5, 0, true)));
        // The counter wraps.
        assert!(may_park(usize::MAX, 0, snapshot(0, 0, false)));
    }

    #[test]
    fn bytes_hyper_read_come_before_bytes_it_never_read() {
        assert_eq!(
            join(
                Bytes::from_static(b"GET / HT"),
                Bytes::from_static(b"TP/1.1")
            ),
            Bytes::from_static(b"GET / HTTP/1.1")
        );
        assert_eq!(join(Bytes::new(), Bytes::from_static(b"x")), "x");
        assert_eq!(join(Bytes::from_static(b"y"), Bytes::new()), "y");
    }

    #[test]
    fn what_is_kept_of_hypers_read_buffer_is_a_copy_of_its_bytes() {
        let mut buffer = BytesMut::with_capacity(8192);
        buffer.extend_from_slice(b"GET / HT");
        let read = buffer.freeze();
        let original = read.as_ptr_range();
        let kept = join(read.clone(), Bytes::new());
        assert_eq!(kept, read);
        assert!(!original.contains(&kept.as_ptr()));
        assert!(join(read.slice(8..), Bytes::new()).is_empty());
        assert!(!original.contains(&join(read.slice(8..), Bytes::new()).as_ptr()));
    }
}
