//! Idle keep-alive connections of the real binary are parked: hyper is
//! taken off them (its buffers freed) after a second or two without a
//! request, and put back when the client writes again. The client never
//! notices: the next request, a request begun before the parking, and a
//! websocket handshake are served on the same connection as before, and a
//! stop closes parked connections at once.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::process::{content_length_of, request_on, PorticoProcess};
use crate::websocket::{echo_upstream, handshake, read_head};

/// portico with a public websocket route and a public echo route.
async fn portico() -> PorticoProcess {
    let (websocket, _heads) = echo_upstream().await;
    PorticoProcess::start(
        &format!(
            "[[routes]]\npath_prefix = \"/ws\"\npublic = true\nupstream = \"{websocket}\"\n\n\
             [[routes]]\npath_prefix = \"/\"\npublic = true\nupstream = \"{{upstream}}\"\n"
        ),
        "",
    )
    .await
}

/// (active, parked) client connections as portico's metrics say.
async fn connections(portico: &PorticoProcess) -> (i64, i64) {
    let text = reqwest::get(format!("{}/metrics", portico.metrics_base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let gauge = |state: &str| {
        let prefix = format!("portico_client_connections{{state=\"{state}\"}} ");
        text.lines()
            .find_map(|line| line.strip_prefix(&prefix)?.trim().parse().ok())
            .unwrap_or(0)
    };
    (gauge("active"), gauge("parked"))
}

/// Waits (up to 6 s) until the metrics show `expected`; returns what they
/// showed last.
async fn wait_for_connections(portico: &PorticoProcess, expected: (i64, i64)) -> (i64, i64) {
    let deadline = Instant::now() + Duration::from_secs(6);
    loop {
        let seen = connections(portico).await;
        if seen == expected || Instant::now() > deadline {
            return seen;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn connect(portico: &PorticoProcess) -> TcpStream {
    TcpStream::connect(portico.base.trim_start_matches("http://"))
        .await
        .unwrap()
}

#[tokio::test]
async fn an_idle_connection_is_parked_and_serves_its_next_request_and_a_websocket_on_waking() {
    let portico = portico().await;
    let mut client = connect(&portico).await;
    assert_eq!(wait_for_connections(&portico, (0, 0)).await, (0, 0));

    let (status, body) = request_on(&mut client, "/first").await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(wait_for_connections(&portico, (0, 1)).await, (0, 1));

    let (status, body) = request_on(&mut client, "/second").await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("/second"), "{body}");
    assert_eq!(connections(&portico).await, (1, 0));
    assert_eq!(wait_for_connections(&portico, (0, 1)).await, (0, 1));

    // A websocket handshake wakes it as well, and the upgrade goes through.
    client
        .write_all(handshake("127.0.0.1", "websocket", None).as_bytes())
        .await
        .unwrap();
    let answer = read_head(&mut client).await;
    assert!(answer.starts_with("HTTP/1.1 101 "), "{answer}");
    let mut first = [0u8; 5];
    client.read_exact(&mut first).await.unwrap();
    assert_eq!(&first, b"hello");
    client.write_all(b"ping").await.unwrap();
    let mut echo = [0u8; 9];
    tokio::time::timeout(Duration::from_secs(5), client.read_exact(&mut echo))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&echo, b"echo:ping");
}

#[tokio::test]
async fn a_request_begun_before_the_connection_was_parked_is_answered_whole() {
    let portico = portico().await;
    let mut client = connect(&portico).await;
    assert_eq!(request_on(&mut client, "/a").await.unwrap().0, 200);
    // Half a head, then silence past a parking check, then the rest.
    client
        .write_all(b"GET /begun-before HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    client
        .write_all(b"Accept: application/json\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let mut chunk = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(5);
    let (head, body) = loop {
        let read = tokio::time::timeout_at(deadline.into(), client.read(&mut chunk))
            .await
            .expect("an answer within 5 s")
            .unwrap();
        assert!(read > 0, "closed: {}", String::from_utf8_lossy(&answer));
        answer.extend_from_slice(&chunk[..read]);
        let text = String::from_utf8_lossy(&answer).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            if body.len() >= content_length_of(head) {
                break (head.to_owned(), body.to_owned());
            }
        }
    };
    assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
    assert!(body.contains("/begun-before"), "{body}");
    // And the connection goes on.
    assert_eq!(request_on(&mut client, "/after").await.unwrap().0, 200);
}

#[tokio::test]
async fn a_stop_closes_parked_connections_at_once() {
    let mut portico = portico().await;
    let mut client = connect(&portico).await;
    assert_eq!(request_on(&mut client, "/a").await.unwrap().0, 200);
    assert_eq!(wait_for_connections(&portico, (0, 1)).await, (0, 1));
    portico.signal("TERM");
    let mut byte = [0u8; 1];
    let read = tokio::time::timeout(Duration::from_secs(5), client.read(&mut byte))
        .await
        .expect("the parked connection is closed within 5 s");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    assert_eq!(portico.exit_code(Duration::from_secs(10)).await, Some(0));
}
