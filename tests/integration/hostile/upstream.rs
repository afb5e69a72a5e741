//! A hostile upstream: every answer an HTTP/1.1 upstream could botch or
//! forge, each followed by another user's request that must get its own
//! answer.

use std::time::{Duration, Instant};

use reqwest::StatusCode;

use super::{app_for, own_answer, Act, Hostile, Received};
use crate::metrics::{sample, scrape, upstream_errors};
use crate::support::TestApp;

/// A head of exactly `total` bytes (status line, one padded header, end).
fn head_of(total: usize) -> Vec<u8> {
    let start = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nx-pad: ";
    let pad = total - start.len() - 4;
    [start.as_slice(), &vec![b'a'; pad], b"\r\n\r\nok"].concat()
}

fn bytes(text: &str) -> Vec<u8> {
    text.as_bytes().to_vec()
}

/// The script every case here shares, by path.
fn script(request: &Received) -> Act {
    let path = request.target();
    let chunked_ok = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
    match path {
        "/trailer-flood" => Act::Flood(
            [
                chunked_ok.as_bytes(),
                b"1\r\nx\r\n0\r\n",
                &b"x-long: ".repeat(8 * 1024),
                b"\r\n",
            ]
            .concat(),
            bytes("x-t: 0123456789abcdef\r\n"),
        ),
        "/header-flood" => Act::Flood(bytes("HTTP/1.1 200 OK\r\nx-big: "), vec![b'a'; 1024]),
        "/stall" => Act::Stall(bytes(
            "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789",
        )),
        "/head-exact" => Act::Answer(head_of(64 * 1024)),
        "/head-over" => Act::Answer(head_of(64 * 1024 + 1)),
        "/cl-te" => Act::Answer(bytes(
            "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n\
             5\r\nhello\r\n0\r\n\r\n",
        )),
        "/two-cl" => Act::Answer(bytes(
            "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
        )),
        "/chunk-letters" => Act::Answer(bytes(&format!("{chunked_ok}zz\r\nhello\r\n0\r\n\r\n"))),
        "/chunk-negative" => Act::Answer(bytes(&format!("{chunked_ok}-5\r\nhello\r\n0\r\n\r\n"))),
        "/chunk-hex-prefix" => {
            Act::Answer(bytes(&format!("{chunked_ok}0x5\r\nhello\r\n0\r\n\r\n")))
        }
        "/chunk-overflow" => Act::Answer(bytes(&format!(
            "{chunked_ok}fffffffffffffffff\r\nhello\r\n0\r\n\r\n"
        ))),
        "/extra-bytes" => Act::Answer(bytes(
            "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok\
             HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nforged",
        )),
        "/no-content" => Act::Answer(bytes(
            "HTTP/1.1 204 No Content\r\nContent-Length: 6\r\n\r\nforged",
        )),
        "/not-modified" => Act::Answer(bytes(
            "HTTP/1.1 304 Not Modified\r\nContent-Length: 6\r\n\r\nforged",
        )),
        "/head-with-body" => {
            Act::Answer(bytes("HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nforged"))
        }
        "/interim" => Act::Answer(bytes(
            "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 102 Processing\r\n\r\n\
             HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n\
             HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfinal",
        )),
        "/unasked-101" => Act::Answer(bytes(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: upgrade\r\n\r\nforged",
        )),
        "/obs-fold" => Act::Answer(bytes(
            "HTTP/1.1 200 OK\r\nX-A: 1\r\n  folded\r\nContent-Length: 2\r\n\r\nok",
        )),
        "/nul" => Act::Answer(bytes(
            "HTTP/1.1 200 OK\r\nX-A: a\0b\r\nContent-Length: 2\r\n\r\nok",
        )),
        "/underscored-framing" => Act::Answer(bytes(
            "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent_Length: 99\r\n\
             Transfer_Encoding: chunked\r\nX_Custom: kept\r\n\r\nok",
        )),
        "/early-413" => Act::AnswerUnread(bytes(
            "HTTP/1.1 413 Payload Too Large\r\nContent-Length: 4\r\nConnection: close\r\n\r\nnope",
        )),
        _ => own_answer(request),
    }
}

async fn hostile_app(server: &[&str]) -> (Hostile, TestApp) {
    let hostile = Hostile::start(script).await;
    let app = app_for(&hostile.url, server).await;
    (hostile, app)
}

/// Another user asks for `/next-{tag}`: their own answer must come back.
/// Returns the upstream connection that carried it.
async fn next_user_gets_their_own(app: &TestApp, tag: &str) -> usize {
    let path = format!("/next-{tag}");
    let response = reqwest::Client::new()
        .get(app.url(&path))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK, "{tag}");
    let body = response.text().await.unwrap();
    let (target, connection) = body
        .strip_prefix("for ")
        .and_then(|rest| rest.split_once(" on "))
        .unwrap_or_else(|| panic!("{tag}: another answer came back: {body:?}"));
    assert_eq!(target, path, "{tag}: another user's answer");
    connection.parse().unwrap()
}

/// What the client got for `GET path`: status and body (or the body's error).
async fn get(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
) -> (StatusCode, Result<String, String>) {
    let response = reqwest::Client::new()
        .request(method, app.url(path))
        .send()
        .await
        .unwrap();
    let status = response.status();
    let body = tokio::time::timeout(Duration::from_secs(10), response.text())
        .await
        .expect("the body ends or breaks off, it never hangs")
        .map_err(|error| crate::support::error_text(&error));
    (status, body)
}

/// `GET path` must not complete: the answer breaks off, before its head
/// (when the body fails at once, hyper sends nothing) or in its body.
async fn broken(app: &TestApp, path: &str) {
    let sent = reqwest::Client::new().get(app.url(path)).send().await;
    let Ok(response) = sent else {
        return;
    };
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "{path}: the head was fine"
    );
    let body = tokio::time::timeout(Duration::from_secs(10), response.bytes())
        .await
        .expect("the body breaks off, it never hangs");
    assert!(body.is_err(), "{path}: a complete answer came: {body:?}");
}

fn only_request_was(hostile: &Hostile, path: &str) {
    let asked: Vec<String> = hostile
        .received()
        .iter()
        .map(|request| request.target().to_string())
        .filter(|target| !target.starts_with("/next-"))
        .collect();
    assert_eq!(asked, [path], "what the upstream received");
}

#[tokio::test]
async fn trailers_beyond_the_limit_break_the_body_and_nothing_is_kept() {
    let (hostile, app) = hostile_app(&[]).await;
    // A body with 32 MiB of trailers never ends well.
    broken(&app, "/trailer-flood").await;
    only_request_was(&hostile, "/trailer-flood");
    assert_eq!(next_user_gets_their_own(&app, "trailers").await, 1);
    let text = scrape(&app).await;
    assert_eq!(
        sample(&text, &upstream_errors(&hostile.url, "body")),
        Some(1.0),
        "{text}"
    );
}

#[tokio::test]
async fn a_flood_of_header_bytes_gets_a_502() {
    let (hostile, app) = hostile_app(&[]).await;
    let (status, _) = get(&app, reqwest::Method::GET, "/header-flood").await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    only_request_was(&hostile, "/header-flood");
    assert_eq!(next_user_gets_their_own(&app, "headers").await, 1);
}

#[tokio::test]
async fn a_stalled_body_is_cut_after_upstream_read_timeout() {
    let (hostile, app) = hostile_app(&["upstream_read_timeout = \"1s\""]).await;
    let started = Instant::now();
    let (status, body) = get(&app, reqwest::Method::GET, "/stall").await;
    let took = started.elapsed();
    assert_eq!(status, StatusCode::OK);
    assert!(body.is_err(), "a cut body is no complete answer: {body:?}");
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(5),
        "cut after the read timeout, took {took:?}"
    );
    only_request_was(&hostile, "/stall");
    assert_eq!(next_user_gets_their_own(&app, "stall").await, 1);
    let text = scrape(&app).await;
    assert_eq!(
        sample(&text, &upstream_errors(&hostile.url, "read_timeout")),
        Some(1.0),
        "{text}"
    );
}

#[tokio::test]
async fn the_response_head_limit_is_exactly_64_kib() {
    let (_hostile, app) = hostile_app(&[]).await;
    let (status, body) = get(&app, reqwest::Method::GET, "/head-exact").await;
    assert_eq!((status, body.as_deref()), (StatusCode::OK, Ok("ok")));
    assert_eq!(
        next_user_gets_their_own(&app, "exact").await,
        0,
        "the connection was kept"
    );
    let (status, _) = get(&app, reqwest::Method::GET, "/head-over").await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert_eq!(next_user_gets_their_own(&app, "over").await, 1);
}

#[tokio::test]
async fn content_length_with_transfer_encoding_is_read_chunked_and_the_connection_dropped() {
    let (hostile, app) = hostile_app(&[]).await;
    let (status, body) = get(&app, reqwest::Method::GET, "/cl-te").await;
    assert_eq!((status, body.as_deref()), (StatusCode::OK, Ok("hello")));
    only_request_was(&hostile, "/cl-te");
    assert_eq!(
        next_user_gets_their_own(&app, "clte").await,
        1,
        "a response framed both ways ends its connection"
    );
}

#[tokio::test]
async fn two_content_lengths_get_a_502() {
    let (hostile, app) = hostile_app(&[]).await;
    let (status, _) = get(&app, reqwest::Method::GET, "/two-cl").await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    only_request_was(&hostile, "/two-cl");
    assert_eq!(next_user_gets_their_own(&app, "twocl").await, 1);
}

#[tokio::test]
async fn bad_chunk_sizes_break_the_body() {
    let (hostile, app) = hostile_app(&[]).await;
    for (round, path) in [
        "/chunk-letters",
        "/chunk-negative",
        "/chunk-hex-prefix",
        "/chunk-overflow",
    ]
    .into_iter()
    .enumerate()
    {
        broken(&app, path).await;
        let connection = next_user_gets_their_own(&app, &format!("chunk{round}")).await;
        assert_eq!(connection, round + 1, "{path}: a new connection");
    }
    assert_eq!(hostile.accepted(), 5);
}

#[tokio::test]
async fn bytes_after_a_body_never_reach_the_next_user() {
    let (hostile, app) = hostile_app(&[]).await;
    let (status, body) = get(&app, reqwest::Method::GET, "/extra-bytes").await;
    assert_eq!((status, body.as_deref()), (StatusCode::OK, Ok("ok")));
    assert_eq!(next_user_gets_their_own(&app, "extra").await, 1);
    only_request_was(&hostile, "/extra-bytes");
}

#[tokio::test]
async fn bodies_on_head_204_and_304_answers_are_not_passed_on() {
    let (hostile, app) = hostile_app(&[]).await;
    let cases = [
        (reqwest::Method::HEAD, "/head-with-body", StatusCode::OK),
        (reqwest::Method::GET, "/no-content", StatusCode::NO_CONTENT),
        (
            reqwest::Method::GET,
            "/not-modified",
            StatusCode::NOT_MODIFIED,
        ),
    ];
    for (method, path, expected) in cases {
        let (status, body) = get(&app, method, path).await;
        assert_eq!((status, body.as_deref()), (expected, Ok("")), "{path}");
        // The stray body must not be read as the next user's answer,
        // whichever connection carries it.
        let tag = path.trim_start_matches('/');
        next_user_gets_their_own(&app, tag).await;
    }
    let asked: Vec<String> = hostile
        .received()
        .iter()
        .map(|request| request.target().to_string())
        .collect();
    assert_eq!(
        asked,
        [
            "/head-with-body",
            "/next-head-with-body",
            "/no-content",
            "/next-no-content",
            "/not-modified",
            "/next-not-modified"
        ]
    );
}

#[tokio::test]
async fn interim_answers_are_skipped_and_an_unasked_101_refused() {
    let (hostile, app) = hostile_app(&[]).await;
    let (status, body) = get(&app, reqwest::Method::GET, "/interim").await;
    assert_eq!((status, body.as_deref()), (StatusCode::OK, Ok("final")));
    assert_eq!(next_user_gets_their_own(&app, "interim").await, 0);
    let (status, body) = get(&app, reqwest::Method::GET, "/unasked-101").await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert!(!body.unwrap_or_default().contains("forged"));
    assert_eq!(next_user_gets_their_own(&app, "101").await, 1);
    assert_eq!(hostile.received().len(), 4);
}

#[tokio::test]
async fn obs_fold_and_nul_in_a_head_get_a_502() {
    let (hostile, app) = hostile_app(&[]).await;
    for (round, path) in ["/obs-fold", "/nul"].into_iter().enumerate() {
        let (status, _) = get(&app, reqwest::Method::GET, path).await;
        assert_eq!(status, StatusCode::BAD_GATEWAY, "{path}");
        // Each refused answer's connection is closed; the next user's
        // opens a new one, which the next case then gets from the pool.
        let connection = next_user_gets_their_own(&app, path.trim_start_matches('/')).await;
        assert_eq!(connection, round + 1, "{path}");
    }
    assert_eq!(hostile.accepted(), 3);
}

#[tokio::test]
async fn an_early_413_is_passed_on_without_waiting_for_the_body() {
    let (hostile, app) = hostile_app(&["upstream_timeout = \"10s\""]).await;
    // The client sends a little, then dawdles for longer than the test.
    let parts = futures_util::stream::unfold(0, |round| async move {
        if round > 0 {
            tokio::time::sleep(Duration::from_secs(20)).await;
        }
        (round < 2).then(|| {
            (
                Ok::<_, std::io::Error>(bytes::Bytes::from_static(b"first part")),
                round + 1,
            )
        })
    });
    let started = Instant::now();
    let response = reqwest::Client::new()
        .post(app.url("/early-413"))
        .body(reqwest::Body::wrap_stream(parts))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(response.text().await.unwrap(), "nope");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "answered at once, took {:?}",
        started.elapsed()
    );
    only_request_was(&hostile, "/early-413");
    assert_eq!(next_user_gets_their_own(&app, "413").await, 1);
}

#[tokio::test]
async fn framing_headers_spelt_with_underscores_do_not_reach_the_client() {
    let (hostile, app) = hostile_app(&[]).await;
    let response = reqwest::Client::new()
        .get(app.url("/underscored-framing"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let headers = response.headers().clone();
    assert_eq!(
        response.text().await.unwrap(),
        "ok",
        "framed by Content-Length"
    );
    for dropped in ["content_length", "transfer_encoding"] {
        assert!(
            !headers.contains_key(dropped),
            "{dropped} reached the client: {headers:?}"
        );
    }
    assert_eq!(
        headers.get("x_custom").map(|value| value.as_bytes()),
        Some(b"kept".as_slice()),
        "other underscored headers pass"
    );
    only_request_was(&hostile, "/underscored-framing");
    assert_eq!(
        next_user_gets_their_own(&app, "underscored").await,
        0,
        "the answer was well framed: its connection is reused"
    );
}
