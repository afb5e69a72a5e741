//! Hostile input at the front door: size limits and request framing.

use reqwest::StatusCode;

use crate::metrics::{sample, scrape};
use crate::proxy::raw_request;
use crate::support::{Browser, TestApp};

/// A public catch-all route with small limits.
async fn small_limits() -> TestApp {
    TestApp::builder()
        .route("path_prefix = \"/\"\nupstream = \"{upstream}\"\npublic = true")
        .config(
            "server",
            "max_header_bytes = \"8KiB\"\nmax_cookie_bytes = \"2KiB\"\n\
             max_query_bytes = \"512\"\nmax_body_bytes = \"64KiB\"",
        )
        .build()
        .await
}

fn status_of(raw: &str) -> u16 {
    raw.split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn oversized_headers_cookies_and_queries_are_refused() {
    let app = small_limits().await;
    let browser = Browser::new();
    let big = "h".repeat(9 * 1024);
    let page = browser.get_with(&app.url("/x"), &[("X-Big", &big)]).await;
    assert_eq!(page.status, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    assert!(page.body.contains("Request too large"), "{}", page.body);
    assert!(page.body.contains(&page.header("x-request-id").unwrap()));

    let cookies = format!("junk={}", "c".repeat(3 * 1024));
    let page = browser
        .get_with(
            &app.url("/x"),
            &[("Cookie", &cookies), ("Accept", "application/json")],
        )
        .await;
    assert_eq!(page.status, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    assert_eq!(page.json()["error"], "cookies_too_large");

    let query = format!("/x?q={}", "q".repeat(600));
    let page = browser.get(&app.url(&query)).await;
    assert_eq!(page.status, StatusCode::URI_TOO_LONG);

    // Just under every limit passes.
    let fits = format!("/x?q={}", "q".repeat(400));
    let cookie = format!("ok={}", "c".repeat(1024));
    let page = browser
        .get_with(&app.url(&fits), &[("Cookie", &cookie)])
        .await;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(
        app.upstream.requests(),
        1,
        "refused requests never reach the upstream"
    );

    let text = scrape(&app).await;
    for limit in ["headers", "cookies", "query"] {
        assert_eq!(
            sample(
                &text,
                &format!("portico_request_limit_rejections_total{{limit=\"{limit}\"}}")
            ),
            Some(1.0),
            "{limit}: {text}"
        );
    }
}

#[tokio::test]
async fn a_body_declared_too_large_is_refused_before_it_is_read() {
    let app = small_limits().await;
    let answer = raw_request(
        &app.base,
        "POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\nConnection: close\r\n\r\npartial",
    )
    .await;
    assert_eq!(status_of(&answer), 413, "{answer}");
    assert!(answer.contains("Request too large"), "{answer}");
    assert_eq!(app.upstream.requests(), 0);
}

#[tokio::test]
async fn a_streamed_body_is_counted_as_it_flows_and_refused_past_the_limit() {
    let app = small_limits().await;
    let client = reqwest::Client::new();
    // Chunked (no Content-Length): only counting can catch it.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..20).map(|_| Ok(vec![b'z'; 8 * 1024])).collect();
    let response = client
        .post(app.url("/upload"))
        .header("Accept", "application/json")
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"], "body_too_large");
    // A body within the limit streams through.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..7).map(|_| Ok(vec![b'z'; 8 * 1024])).collect();
    let response = client
        .post(app.url("/upload"))
        .header("Accept", "application/json")
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["body_bytes"], 7 * 8 * 1024);
    let text = scrape(&app).await;
    assert_eq!(
        sample(
            &text,
            "portico_request_limit_rejections_total{limit=\"body\"}"
        ),
        Some(1.0),
        "{text}"
    );
}

#[tokio::test]
async fn content_length_with_transfer_encoding_cannot_smuggle_a_second_request() {
    let app = small_limits().await;
    // A front proxy trusting Content-Length would see one request with a
    // body; a back end trusting Transfer-Encoding would see two.
    let answer = raw_request(
        &app.base,
        "POST /first HTTP/1.1\r\nHost: x\r\nContent-Length: 44\r\nTransfer-Encoding: chunked\r\n\r\n\
         0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    .await;
    // hyper reads the body as chunked (it wins, RFC 9112 §6.3), drops the
    // Content-Length, answers once and closes the connection.
    assert_eq!(answer.matches("HTTP/1.1 ").count(), 1, "{answer}");
    assert_eq!(status_of(&answer), 200, "{answer}");
    assert!(answer.contains("\"/first\""), "{answer}");
    assert!(!answer.contains("content-length\":"), "{answer}");
    assert_eq!(app.upstream.requests(), 1, "the smuggled request never ran");
}

#[tokio::test]
async fn ambiguous_framing_is_refused_with_400() {
    let app = small_limits().await;
    for (what, request) in [
        (
            "stacked codings",
            "POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\nConnection: close\r\n\r\n0\r\n\r\n",
        ),
        (
            "repeated chunked",
            "POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n0\r\n\r\n",
        ),
        (
            "chunked not last (hyper)",
            "POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, gzip\r\nConnection: close\r\n\r\n0\r\n\r\n",
        ),
        (
            "differing Content-Lengths (hyper)",
            "POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 5\r\nConnection: close\r\n\r\nabcde",
        ),
        (
            "Transfer-Encoding on HTTP/1.0 (hyper)",
            "POST /x HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        ),
        (
            "a Content-Length that is not a number (hyper)",
            "POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 5x\r\nConnection: close\r\n\r\nabcde",
        ),
    ] {
        let answer = raw_request(&app.base, request).await;
        assert_eq!(status_of(&answer), 400, "{what}: {answer}");
    }
    assert_eq!(app.upstream.requests(), 0);
}
