//! The upstream client on the wire: a raw TCP upstream answers with exactly
//! the bytes each test scripts (chunked bodies with trailers, interim
//! answers, bodies delimited by the close, malformed heads, kept-alive
//! connections it closes), and portico must pass on, retry or refuse as a
//! careful HTTP/1.1 client does.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use reqwest::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::metrics::{sample, scrape, upstream_errors};
use crate::support::process::content_length_of;
use crate::support::{Browser, TestApp};

/// What the scripted upstream does with one request.
enum Act {
    /// Write these bytes and keep the connection for the next request.
    Answer(String),
    /// Write these bytes, then close.
    AnswerAndClose(String),
    /// Close without a word (the request was read).
    Close,
}

/// A raw upstream: `script(connection, request_on_it, request_head)` says
/// what to do. Request bodies with a Content-Length are read and appended
/// to the head passed to the script; the number of accepted connections is
/// counted.
async fn scripted_upstream<F>(script: F) -> (String, Arc<AtomicUsize>)
where
    F: Fn(usize, usize, &str) -> Act + Send + Sync + 'static,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    let script = Arc::new(script);
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            let connection = counter.fetch_add(1, Ordering::SeqCst);
            let script = script.clone();
            tokio::spawn(async move {
                let mut pending = Vec::new();
                for request in 0.. {
                    let Some(text) = read_request(&mut stream, &mut pending).await else {
                        return;
                    };
                    let (bytes, close) = match script(connection, request, &text) {
                        Act::Answer(bytes) => (bytes, false),
                        Act::AnswerAndClose(bytes) => (bytes, true),
                        Act::Close => return,
                    };
                    if stream.write_all(bytes.as_bytes()).await.is_err() || close {
                        return;
                    }
                }
            });
        }
    });
    (url, accepted)
}

/// One request's head (and Content-Length body) as text; None at the close.
async fn read_request(stream: &mut tokio::net::TcpStream, pending: &mut Vec<u8>) -> Option<String> {
    let mut buffer = [0u8; 4096];
    loop {
        if let Some(end) = pending.windows(4).position(|window| window == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&pending[..end + 4]).into_owned();
            let length = content_length_of(&head);
            if pending.len() >= end + 4 + length {
                let whole: Vec<u8> = pending.drain(..end + 4 + length).collect();
                return Some(String::from_utf8_lossy(&whole).into_owned());
            }
        }
        match stream.read(&mut buffer).await {
            Ok(0) | Err(_) => return None,
            Ok(read) => pending.extend_from_slice(&buffer[..read]),
        }
    }
}

/// A public route to `upstream` ("{upstream}" is the harness's echo upstream).
async fn public_app(upstream: &str) -> TestApp {
    TestApp::builder()
        .route(&format!(
            "path_prefix = \"/\"\nupstream = \"{upstream}\"\npublic = true"
        ))
        .build()
        .await
}

#[tokio::test]
async fn chunked_answers_with_trailers_and_answers_ended_by_the_close_pass_through() {
    let (upstream, accepted) = scripted_upstream(|_, _, head| {
        if head.starts_with("GET /chunked ") {
            Act::Answer(
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Kind: chunked\r\n\r\n\
                 5;note=x\r\nhello\r\n7\r\n, world\r\n0\r\nX-Trailer: t\r\n\r\n"
                    .into(),
            )
        } else {
            Act::AnswerAndClose("HTTP/1.1 200 OK\r\nX-Kind: close\r\n\r\nuntil the end".into())
        }
    })
    .await;
    let app = public_app(&upstream).await;
    let browser = Browser::new();
    for _ in 0..3 {
        let page = browser.get(&app.url("/chunked")).await;
        assert_eq!(page.status, StatusCode::OK);
        assert_eq!(page.body, "hello, world");
        assert_eq!(page.header("x-kind").as_deref(), Some("chunked"));
    }
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        1,
        "a chunked answer read to its end leaves the connection reusable"
    );
    // The kept connection carries the first of these; each one ends its
    // connection, so every next request needs a new one.
    for expected in 1..=3 {
        let page = browser.get(&app.url("/close")).await;
        assert_eq!(page.status, StatusCode::OK);
        assert_eq!(page.body, "until the end");
        assert_eq!(accepted.load(Ordering::SeqCst), expected);
    }
}

#[tokio::test]
async fn interim_answers_are_skipped_and_request_bodies_arrive_framed() {
    let (upstream, _) = scripted_upstream(|_, _, head| {
        let body = head
            .split_once("\r\n\r\n")
            .map_or("", |(_, body)| body)
            .to_string();
        Act::Answer(format!(
            "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\n\
             HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ))
    })
    .await;
    let app = public_app(&upstream).await;
    let response = reqwest::Client::new()
        .post(app.url("/upload"))
        .header("Expect", "100-continue")
        .body("twelve bytes")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.text().await.unwrap(), "twelve bytes");
}

#[tokio::test]
async fn a_streamed_request_body_goes_upstream_chunked() {
    // The echo upstream (hyper) decodes what portico frames.
    let app = public_app("{upstream}").await;
    let parts: Vec<Result<bytes::Bytes, std::io::Error>> = (0..40)
        .map(|index| Ok(bytes::Bytes::from(format!("part {index:02};"))))
        .collect();
    let response = reqwest::Client::new()
        .post(app.url("/echo-body"))
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            parts,
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let expected: String = (0..40).map(|index| format!("part {index:02};")).collect();
    assert_eq!(response.text().await.unwrap(), expected);
}

#[tokio::test]
async fn a_kept_connection_the_upstream_closed_is_replaced_for_a_repeatable_request() {
    // Each connection answers its first request and silently closes at the
    // second, as an upstream does whose keep-alive timeout just ran out.
    let (upstream, accepted) = scripted_upstream(|_, request, _| {
        if request == 0 {
            Act::Answer("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".into())
        } else {
            Act::Close
        }
    })
    .await;
    let app = public_app(&upstream).await;
    let browser = Browser::new();
    for round in 0..4 {
        let page = browser.get(&app.url("/again")).await;
        assert_eq!(page.status, StatusCode::OK, "round {round}: {}", page.body);
        assert_eq!(page.body, "ok");
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 4);
    let text = scrape(&app).await;
    assert_eq!(
        sample(&text, &upstream_errors(&upstream, "unreachable")),
        None,
        "a replaced connection is no failure: {text}"
    );
    // A request with a body is not sent twice: it gets a 502.
    let response = reqwest::Client::new()
        .post(app.url("/once"))
        .body("not to be repeated")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
}

#[tokio::test]
async fn malformed_upstream_answers_get_a_502_and_are_counted() {
    let (upstream, _) = scripted_upstream(|_, _, head| {
        Act::AnswerAndClose(if head.starts_with("GET /length ") {
            "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd".into()
        } else if head.starts_with("GET /upgrade ") {
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n".into()
        } else {
            "HTTP/1.1 2OO OK\r\n\r\n".into()
        })
    })
    .await;
    let app = public_app(&upstream).await;
    for path in ["/length", "/upgrade", "/garbage"] {
        let page = Browser::new().get(&app.url(path)).await;
        assert_eq!(
            page.status,
            StatusCode::BAD_GATEWAY,
            "{path}: {}",
            page.body
        );
    }
    let text = scrape(&app).await;
    assert_eq!(
        sample(&text, &upstream_errors(&upstream, "invalid")),
        Some(3.0),
        "{text}"
    );
}

#[tokio::test]
async fn head_requests_and_304s_take_no_body_and_keep_the_connection() {
    let (upstream, accepted) = scripted_upstream(|_, _, head| {
        Act::Answer(if head.starts_with("HEAD ") {
            "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n".into()
        } else {
            "HTTP/1.1 304 Not Modified\r\nETag: \"v1\"\r\n\r\n".into()
        })
    })
    .await;
    let app = public_app(&upstream).await;
    let client = reqwest::Client::new();
    for _ in 0..3 {
        let response = client.head(app.url("/file")).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["content-length"], "1000");
        let response = client.get(app.url("/file")).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::NOT_MODIFIED);
        assert_eq!(response.headers()["etag"], "\"v1\"");
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
}
