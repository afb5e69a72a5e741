//! Hostile clients: framing no browser sends, bodies that break, stall or
//! never end, pipelining behind a refusal, and HTTP/2 uploads.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use tokio::io::AsyncWriteExt;

use super::{app_for, own_answer, raw_exchange, status_of, Hostile};
use crate::support::process::PorticoProcess;

#[tokio::test]
async fn a_framing_refusal_closes_the_connection_and_a_pipelined_request_never_runs() {
    let hostile = Hostile::start(own_answer).await;
    let app = app_for(&hostile.url, &[]).await;
    for coding in [
        "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked",
        "Transfer-Encoding: chunked, chunked",
        "Transfer-Encoding: gzip, chunked",
        "Transfer-Encoding: chunked, gzip",
        "Transfer-Encoding: xchunked",
        "Transfer-Encoding: identity",
    ] {
        let request = format!(
            "POST /refused HTTP/1.1\r\nHost: x\r\n{coding}\r\n\r\n0\r\n\r\n\
             GET /pipelined HTTP/1.1\r\nHost: x\r\n\r\n"
        );
        let (answer, closed) =
            raw_exchange(&app.base, request.as_bytes(), Duration::from_secs(5)).await;
        assert_eq!(status_of(&answer), 400, "{coding}: {answer}");
        assert!(
            closed,
            "{coding}: the connection is closed after the refusal"
        );
        assert_eq!(answer.matches("HTTP/1.1 ").count(), 1, "{coding}: {answer}");
        assert!(
            answer.to_ascii_lowercase().contains("connection: close"),
            "{coding}: {answer}"
        );
    }
    assert!(
        hostile.received().is_empty(),
        "neither the refused nor the pipelined request went upstream"
    );
}

#[tokio::test]
async fn framing_headers_spelt_with_underscores_never_reach_the_upstream() {
    let hostile = Hostile::start(own_answer).await;
    let app = app_for(&hostile.url, &[]).await;
    let request = "POST /underscores HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\
                   Transfer_Encoding: chunked\r\nContent_Length: 99\r\nKeep_Alive: 1\r\n\
                   X_Kept: yes\r\nConnection: close\r\n\r\nhello";
    let (answer, _) = raw_exchange(&app.base, request.as_bytes(), Duration::from_secs(5)).await;
    assert_eq!(status_of(&answer), 200, "{answer}");
    let received = hostile.received();
    assert_eq!(received.len(), 1);
    let upstream = &received[0];
    assert_eq!(upstream.body, b"hello");
    for dropped in ["transfer_encoding", "content_length", "keep_alive"] {
        assert!(
            !upstream.has_header(dropped),
            "{dropped}: {}",
            upstream.head
        );
    }
    assert!(upstream.has_header("x_kept"), "{}", upstream.head);
    assert!(upstream.has_header("content-length"), "{}", upstream.head);
}

#[tokio::test]
async fn content_length_with_chunked_goes_upstream_chunked_only() {
    let hostile = Hostile::start(own_answer).await;
    let app = app_for(&hostile.url, &[]).await;
    let request = "POST /both HTTP/1.1\r\nHost: x\r\nContent-Length: 40\r\n\
                   Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n\
                   GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n";
    let (answer, closed) =
        raw_exchange(&app.base, request.as_bytes(), Duration::from_secs(5)).await;
    assert_eq!(status_of(&answer), 200, "{answer}");
    assert!(closed);
    let received = hostile.received();
    assert_eq!(received.len(), 1, "only the first request went upstream");
    assert_eq!(received[0].body, b"hello");
    assert!(received[0].has_header("transfer-encoding"));
    assert!(
        !received[0].has_header("content-length"),
        "{}",
        received[0].head
    );
}

/// Waits until the hostile upstream has seen `count` connections closed.
async fn upstream_connections_closed(hostile: &Hostile, count: usize, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if hostile.closed_by_portico() >= count {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

#[tokio::test]
async fn a_malformed_chunked_body_is_answered_400_at_once_and_the_upstream_released() {
    let hostile = Hostile::start(own_answer).await;
    let app = app_for(&hostile.url, &["upstream_timeout = \"10s\""]).await;
    let started = Instant::now();
    let request = "POST /bad-chunk HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n\
                   5\r\nhello\r\nzz\r\n";
    let (answer, closed) =
        raw_exchange(&app.base, request.as_bytes(), Duration::from_secs(5)).await;
    assert_eq!(status_of(&answer), 400, "{answer}");
    assert!(closed, "the client's connection is closed: {answer}");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "answered within a second, took {:?}",
        started.elapsed()
    );
    assert!(
        upstream_connections_closed(&hostile, 1, Duration::from_secs(1)).await,
        "the upstream connection was released"
    );
}

#[tokio::test]
async fn a_chunked_body_over_the_limit_gets_413_at_once_and_the_upstream_released() {
    let hostile = Hostile::start(own_answer).await;
    let app = app_for(
        &hostile.url,
        &["upstream_timeout = \"10s\"", "max_body_bytes = \"1KiB\""],
    )
    .await;
    let started = Instant::now();
    // 2 KiB in chunks, and no last chunk: the upstream waits for more.
    let mut request =
        b"POST /too-large HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..8 {
        request.extend_from_slice(b"100\r\n");
        request.extend_from_slice(&[b'a'; 256]);
        request.extend_from_slice(b"\r\n");
    }
    let (answer, closed) = raw_exchange(&app.base, &request, Duration::from_secs(5)).await;
    assert_eq!(status_of(&answer), 413, "{answer}");
    assert!(closed, "the client's connection is closed");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "answered within a second, took {:?}",
        started.elapsed()
    );
    assert!(
        upstream_connections_closed(&hostile, 1, Duration::from_secs(1)).await,
        "the upstream connection was released"
    );
}

#[tokio::test]
async fn a_client_gone_mid_body_releases_the_upstream_connection() {
    let hostile = Hostile::start(own_answer).await;
    let app = app_for(&hostile.url, &["upstream_timeout = \"10s\""]).await;
    let address = app.base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    stream
        .write_all(
            b"POST /gone HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
        )
        .await
        .unwrap();
    // The head reaches the upstream, then the client goes.
    let deadline = Instant::now() + Duration::from_secs(2);
    while hostile.accepted() == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    drop(stream);
    assert!(
        upstream_connections_closed(&hostile, 1, Duration::from_secs(1)).await,
        "the upstream connection was released within a second"
    );
}

fn slow_parts(
    parts: usize,
    pause: Duration,
) -> impl futures_util::Stream<Item = std::io::Result<bytes::Bytes>> {
    futures_util::stream::unfold(0, move |round| async move {
        if round >= parts {
            return None;
        }
        if round > 0 {
            tokio::time::sleep(pause).await;
        }
        Some((Ok(bytes::Bytes::from(format!("part {round};"))), round + 1))
    })
}

#[tokio::test]
async fn an_upload_slower_than_upstream_timeout_arrives_whole() {
    let hostile = Hostile::start(own_answer).await;
    let app = app_for(
        &hostile.url,
        &[
            "upstream_timeout = \"1s\"",
            "upstream_send_timeout = \"2s\"",
        ],
    )
    .await;
    let response = reqwest::Client::new()
        .post(app.url("/slow-upload"))
        .body(reqwest::Body::wrap_stream(slow_parts(
            5,
            Duration::from_millis(600),
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.text().await.unwrap(), "for /slow-upload on 0");
    let received = hostile.received();
    assert_eq!(received.len(), 1);
    let expected: String = (0..5).map(|round| format!("part {round};")).collect();
    assert_eq!(String::from_utf8_lossy(&received[0].body), expected);
}

#[tokio::test]
async fn a_client_that_stops_sending_its_body_gets_408_after_upstream_send_timeout() {
    let hostile = Hostile::start(own_answer).await;
    let app = app_for(
        &hostile.url,
        &[
            "upstream_timeout = \"10s\"",
            "upstream_send_timeout = \"1s\"",
        ],
    )
    .await;
    let started = Instant::now();
    let request = "POST /stops HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n\
                   5\r\nhello\r\n";
    let (answer, closed) =
        raw_exchange(&app.base, request.as_bytes(), Duration::from_secs(5)).await;
    assert_eq!(status_of(&answer), 408, "{answer}");
    assert!(closed);
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(3),
        "{took:?}"
    );
    assert!(upstream_connections_closed(&hostile, 1, Duration::from_secs(1)).await);
}

#[tokio::test]
async fn h2c_uploads_without_a_length_reach_the_upstream_whole_and_h2c_can_be_turned_off() {
    let routes = "[[routes]]\npath_prefix = \"/\"\nupstream = \"{upstream}\"\npublic = true\n";
    let portico = PorticoProcess::start(routes, "").await;
    let client = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let response = client
        .post(portico.url("/echo-body"))
        .body(reqwest::Body::wrap_stream(slow_parts(
            20,
            Duration::from_millis(5),
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    assert_eq!(response.status(), StatusCode::OK);
    let expected: String = (0..20).map(|round| format!("part {round};")).collect();
    assert_eq!(response.text().await.unwrap(), expected, "no byte lost");
    drop(portico);

    let portico = PorticoProcess::start(routes, "h2c = false").await;
    let client = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let refused = client.get(portico.url("/")).send().await;
    assert!(refused.is_err(), "h2c is off: {refused:?}");
    let http1 = reqwest::get(portico.url("/")).await.unwrap();
    assert_eq!(http1.status(), StatusCode::OK, "HTTP/1.1 still served");
}

/// Where a new browser lands after signing in, having started the sign-in
/// with `rd` as its return URL.
async fn return_target(app: &crate::support::TestApp, rd: &str) -> url::Url {
    let browser = crate::support::Browser::new();
    let start = format!("/oauth2/start?rd={}", crate::support::encode(rd));
    let first = browser.get(&app.url(&start)).await;
    assert_eq!(first.status, StatusCode::FOUND, "{rd}: {}", first.body);
    let authorize = first.location().unwrap();
    let callback = browser.get(&authorize).await.location().unwrap();
    let done = browser.get(&callback).await;
    assert_eq!(done.status, StatusCode::FOUND, "{rd}: {}", done.body);
    let own = url::Url::parse(&app.base).unwrap();
    own.join(&done.location().unwrap()).unwrap()
}

#[tokio::test]
async fn a_return_path_that_decodes_to_another_host_lands_on_public_url() {
    let app = crate::support::TestApp::start().await;
    let own = url::Url::parse(&app.base).unwrap();
    let control = return_target(&app, "/app/page").await;
    assert_eq!(control.path(), "/app/page", "a plain path is kept");
    for rd in [
        "/%2F%2Fevil.example",
        "/%5Cevil.example",
        "/%09/evil.example",
        "/.//evil.example",
        "%2F%2Fevil.example",
    ] {
        let target = return_target(&app, rd).await;
        assert_eq!(target.as_str(), own.as_str(), "{rd}: sent to {target}");
    }
}
