//! Tests of the upstream client: the per-worker pool and the memory bound
//! under floods.

use std::future::poll_fn;

use super::body::UpstreamBody;
use super::send::read_head;
use super::*;
use crate::proxy::upstream_limit::Gate;
use std::pin::Pin;

use crate::front::pretend_worker;
use tokio::net::TcpStream;

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

/// A place under a limit of its own.
fn permit() -> Permit<Conn> {
    Gate::new(UpstreamLimit::default())
        .try_open()
        .expect("a permit")
}

async fn open_conn(listener: &tokio::net::TcpListener) -> Conn {
    let address = listener.local_addr().expect("address");
    let stream = TcpStream::connect(address).await.expect("connect");
    Conn::new(Stream::Plain(stream), permit())
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
        pool.take_idle(&origin).is_err(),
        "worker 1 must not reuse a connection registered with worker 0's reactor"
    );
    pretend_worker(None);
    assert!(pool.take_idle(&origin).is_err(), "nor may the main runtime");
    pretend_worker(Some(0));
    let conn = pool
        .take_idle(&origin)
        .ok()
        .expect("worker 0 gets its own connection back");
    assert!(
        conn.reused,
        "a connection taken from the pool is marked reused"
    );

    // Off the workers, connections are pooled (and reused) too.
    pretend_worker(None);
    pool.give_back(&origin, open_conn(&listener).await);
    assert!(pool.take_idle(&origin).is_ok());
    assert!(
        pool.take_idle(&origin).is_err(),
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

#[tokio::test(flavor = "current_thread")]
async fn at_the_limit_another_workers_idle_connection_is_used_and_goes_back_home() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let upstream = Url::parse(&format!(
        "http://{}",
        listener.local_addr().expect("address")
    ))
    .expect("url");
    let origin: Arc<str> = Arc::from(upstream.origin().ascii_serialization());
    let pool = pool();
    let limit = UpstreamLimit {
        max_connections: 1,
        max_pending: 0,
        pending_timeout: Duration::from_secs(1),
    };
    pool.set_limits([(&origin, limit)]);
    let metrics = Metrics::new();
    let second = Duration::from_secs(1);
    let connectors = TlsConnectors::new().expect("TLS connectors");
    let tls = connectors.default_http1();
    macro_rules! checkout {
        ($pool:expr) => {
            $pool.checkout(&upstream, &origin, second, &metrics, tls)
        };
    }

    pretend_worker(Some(0));
    let conn = checkout!(pool).await.expect("a new connection");
    assert_eq!(conn.home, 1, "opened by worker 0");
    assert!(
        matches!(
            checkout!(pool).await,
            Err(UpstreamError::Overloaded(Overflow::Full))
        ),
        "one connection is all there may be, and nobody may wait"
    );
    pool.give_back(&origin, conn);

    pretend_worker(Some(1));
    let conn = checkout!(pool)
        .await
        .expect("worker 0's idle connection, rather than a refusal");
    assert!(conn.reused);
    pool.give_back(&origin, conn);
    assert!(
        pool.take_idle(&origin).is_err(),
        "it went back to worker 0's shard"
    );
    pretend_worker(Some(0));
    assert!(pool.take_idle(&origin).is_ok());
    pretend_worker(None);
}
