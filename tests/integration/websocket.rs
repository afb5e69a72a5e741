//! Websockets through portico, at the byte level: the handshake goes
//! upstream with the signed-in user's identity headers (and not the
//! client's), the upstream's 101 comes back, and from then on bytes pass
//! both ways over the same two connections.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use crate::support::{Browser, TestApp};

/// The upstream's answer to a handshake, with the first bytes of the new
/// protocol right behind it.
const SWITCHED: &str = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
                        Connection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\nhello";

/// A websocket upstream: a handshake gets [`SWITCHED`] and then an echo of
/// every read, prefixed `echo:`; any other request gets a 200 "ok" and the
/// close. Every request head it reads goes to the receiver.
pub(crate) async fn echo_upstream() -> (String, mpsc::UnboundedReceiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (heads, received) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let heads = heads.clone();
            tokio::spawn(async move {
                let head = read_head(&mut stream).await;
                let handshake = head.to_ascii_lowercase().contains("upgrade: websocket");
                let _ = heads.send(head);
                if !handshake {
                    let _ = stream
                        .write_all(
                            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                        )
                        .await;
                    return;
                }
                if stream.write_all(SWITCHED.as_bytes()).await.is_err() {
                    return;
                }
                let mut buffer = [0u8; 1024];
                while let Ok(read @ 1..) = stream.read(&mut buffer).await {
                    let mut echo = b"echo:".to_vec();
                    echo.extend_from_slice(&buffer[..read]);
                    if stream.write_all(&echo).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (url, received)
}

/// Reads up to the end of a head, byte by byte (nothing after it is taken).
pub(crate) async fn read_head(stream: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte).await {
            Ok(1) => head.push(byte[0]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&head).into_owned()
}

/// A client's handshake for `/ws/chat`, with a forged identity header.
pub(crate) fn handshake(host: &str, upgrade: &str, cookie: Option<&str>) -> String {
    let cookie = cookie.map_or(String::new(), |cookie| format!("Cookie: {cookie}\r\n"));
    format!(
        "GET /ws/chat HTTP/1.1\r\nHost: {host}\r\nConnection: keep-alive, Upgrade\r\n\
         Upgrade: {upgrade}\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\nX-Forwarded-User: mallory\r\n{cookie}\r\n"
    )
}

/// A raw connection to `app` that has sent [`handshake`]; the answer's head
/// is left to read.
async fn send_handshake(app: &TestApp, upgrade: &str, cookie: Option<&str>) -> TcpStream {
    let address = app.url("");
    let address = address.trim_start_matches("http://").trim_end_matches('/');
    let mut client = TcpStream::connect(address).await.unwrap();
    client
        .write_all(handshake(address, upgrade, cookie).as_bytes())
        .await
        .unwrap();
    client
}

/// The next head the upstream read that is a handshake.
async fn next_handshake(heads: &mut mpsc::UnboundedReceiver<String>) -> String {
    loop {
        let head = heads.recv().await.expect("the upstream read a handshake");
        if head.to_ascii_lowercase().contains("upgrade: websocket") {
            return head;
        }
    }
}

#[tokio::test]
async fn a_signed_in_websocket_is_passed_through_both_ways() {
    let (upstream, mut heads) = echo_upstream().await;
    let app = TestApp::builder()
        .route(&format!("path_prefix = \"/\"\nupstream = \"{upstream}\""))
        .build()
        .await;
    let browser = Browser::new();
    app.sign_in(&browser, "/").await;
    let session = browser.cookie("portico_session").unwrap();

    let cookie = format!("portico_session={session}; theme=dark");
    let mut client = send_handshake(&app, "websocket", Some(&cookie)).await;
    let answer = read_head(&mut client).await;
    assert!(answer.starts_with("HTTP/1.1 101 "), "{answer}");
    let lower = answer.to_ascii_lowercase();
    for line in [
        "upgrade: websocket\r\n",
        "connection: upgrade\r\n",
        "sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo=\r\n",
        "x-request-id: ",
    ] {
        assert!(lower.contains(line), "{line:?} missing from {answer}");
    }

    // The upstream's first bytes, sent with its 101, then an echo each way.
    let mut first = [0u8; 5];
    client.read_exact(&mut first).await.unwrap();
    assert_eq!(&first, b"hello");
    for message in ["ping", "second message"] {
        client.write_all(message.as_bytes()).await.unwrap();
        let mut echo = vec![0u8; 5 + message.len()];
        client.read_exact(&mut echo).await.unwrap();
        assert_eq!(echo, format!("echo:{message}").into_bytes());
    }

    let head = next_handshake(&mut heads).await;
    let lower = head.to_ascii_lowercase();
    assert!(head.starts_with("GET /ws/chat HTTP/1.1\r\n"), "{head}");
    for line in [
        "connection: upgrade\r\n",
        "upgrade: websocket\r\n",
        "sec-websocket-key: dghlihnhbxbszsbub25jzq==\r\n",
        "sec-websocket-version: 13\r\n",
        "cookie: theme=dark\r\n",
        "x-forwarded-user: ",
    ] {
        assert!(lower.contains(line), "{line:?} missing from {head}");
    }
    assert!(!lower.contains("mallory"), "forged identity passed: {head}");
    assert!(
        !lower.contains("portico_session"),
        "session cookie passed: {head}"
    );
    assert!(
        !lower.contains("keep-alive"),
        "client's Connection passed: {head}"
    );

    // The client closes its side; the tunnel ends and the upstream sees it.
    drop(client);
}

#[tokio::test]
async fn a_handshake_without_a_session_never_reaches_the_upstream() {
    let (upstream, mut heads) = echo_upstream().await;
    let app = TestApp::builder()
        .route(&format!("path_prefix = \"/\"\nupstream = \"{upstream}\""))
        .build()
        .await;
    let mut client = send_handshake(&app, "websocket", None).await;
    let answer = read_head(&mut client).await;
    assert!(answer.starts_with("HTTP/1.1 401 "), "{answer}");
    assert!(heads.try_recv().is_err(), "the upstream was asked");
}

#[tokio::test]
async fn other_upgrades_are_not_passed_on() {
    let (upstream, mut heads) = echo_upstream().await;
    let app = TestApp::builder()
        .route(&format!(
            "path_prefix = \"/\"\nupstream = \"{upstream}\"\npublic = true"
        ))
        .build()
        .await;
    let mut client = send_handshake(&app, "h2c", None).await;
    let answer = read_head(&mut client).await;
    assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
    let head = heads.recv().await.unwrap().to_ascii_lowercase();
    assert!(
        !head.contains("upgrade"),
        "an h2c upgrade went upstream: {head}"
    );
}
