//! The echo upstream over real HTTP.

use reqwest::StatusCode;
use serde_json::Value;

use super::EchoUpstream;

#[tokio::test]
async fn echo_describes_the_request_and_counts_connections() {
    let echo = EchoUpstream::start().await.unwrap();
    let client = reqwest::Client::new();
    let url = format!("{}/some/path?a=1&b=2", echo.url());
    let response = client
        .post(&url)
        .header("x-forwarded-user", "alice")
        .header("x-repeated", "one")
        .header("X-Repeated", "two")
        .body("hello")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let echoed: Value = response.json().await.unwrap();
    assert_eq!(echoed["method"], "POST");
    assert_eq!(echoed["path"], "/some/path");
    assert_eq!(echoed["query"], "a=1&b=2");
    assert_eq!(echoed["headers"]["x-forwarded-user"], "alice");
    assert_eq!(echoed["headers"]["x-repeated"], "one, two");
    assert_eq!(echoed["body_bytes"], 5);
    let again = client.get(echo.url()).send().await.unwrap();
    assert_eq!(again.json::<Value>().await.unwrap()["query"], Value::Null);
    assert_eq!(echo.requests(), 2);
    assert_eq!(
        echo.connections_accepted(),
        1,
        "keep-alive reuses one connection"
    );
}

#[tokio::test]
async fn echo_special_paths() {
    let echo = EchoUpstream::start().await.unwrap();
    let client = reqwest::Client::new();
    let status = client
        .get(format!("{}/status/418", echo.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(status.status(), StatusCode::IM_A_TEAPOT);
    let streamed = client
        .get(format!("{}/stream?chunks=3", echo.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(streamed.bytes().await.unwrap().len(), 3 * 1024);
    let body = vec![7u8; 100_000];
    let echoed = client
        .post(format!("{}/echo-body", echo.url()))
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(echoed.bytes().await.unwrap().to_vec(), body);
    let started = std::time::Instant::now();
    let slow = client
        .get(format!("{}/slow?ms=150", echo.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(slow.status(), StatusCode::OK);
    assert!(started.elapsed() >= std::time::Duration::from_millis(150));
}

#[tokio::test]
async fn echo_shows_identity_first_to_browsers() {
    let echo = EchoUpstream::start().await.unwrap();
    let page = reqwest::Client::new()
        .get(echo.url())
        .header("accept", "text/html,application/xhtml+xml")
        .header("x-forwarded-preferred-username", "alice")
        .header("x-forwarded-email", "alice@example.test")
        .send()
        .await
        .unwrap();
    assert!(page.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let html = page.text().await.unwrap();
    assert!(html.contains("Signed in as alice (alice@example.test)"));
}

#[tokio::test]
async fn dropping_the_echo_upstream_stops_it() {
    let echo = EchoUpstream::start().await.unwrap();
    let url = echo.url();
    drop(echo);
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert!(reqwest::Client::new().get(url).send().await.is_err());
}
