//! What portico logs: an access line per request with the request id, auth
//! lines, and never a token, code, cookie or secret.
//!
//! Each test installs its own subscriber (`set_default`) writing to a
//! buffer. `#[tokio::test]` runs on a current-thread runtime, so every task
//! the test spawns — portico, its Redis client, the dev OP — is polled on
//! this thread and logs into the test's buffer, and no other test's lines
//! get in.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use portico::config::LogFormat;
use reqwest::StatusCode;
use tracing_subscriber::fmt::MakeWriter;

use crate::support::app::{CLIENT_SECRET, COOKIE_SECRET};
use crate::support::{query_param, Browser, TestApp};

#[derive(Clone, Default)]
pub(crate) struct Capture(Arc<Mutex<Vec<u8>>>);

impl Capture {
    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl Write for Capture {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'writer> MakeWriter<'writer> for Capture {
    type Writer = Capture;

    fn make_writer(&'writer self) -> Self::Writer {
        self.clone()
    }
}

/// Captures every log line at debug and above (trace for portico), in `format`.
pub(crate) fn capture(format: LogFormat) -> (Capture, tracing::subscriber::DefaultGuard) {
    capture_with(format, "debug,portico=trace")
}

fn capture_with(format: LogFormat, filter: &str) -> (Capture, tracing::subscriber::DefaultGuard) {
    let capture = Capture::default();
    let subscriber = portico::ops::logging::subscriber(
        format,
        tracing_subscriber::EnvFilter::new(filter),
        capture.clone(),
    );
    let guard = tracing::subscriber::set_default(subscriber);
    (capture, guard)
}

/// The provider's tokens of the browser's current session, read the way
/// portico reads them.
async fn tokens_of(app: &TestApp, browser: &Browser) -> Vec<String> {
    let cookie = browser.cookie("portico_session").unwrap();
    let mut headers = http::HeaderMap::new();
    headers.insert(
        http::header::COOKIE,
        format!("portico_session={cookie}").parse().unwrap(),
    );
    let active = app.state.sessions.load(&headers).await.unwrap().unwrap();
    let tokens = app.state.sessions.open_tokens(&active.data).unwrap();
    let mut values = vec![tokens.access_token, tokens.id_token];
    values.extend(tokens.refresh_token);
    values
}

fn csrf_of(page: &str) -> String {
    page.split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap()
        .to_string()
}

/// Signs in, uses the app, refreshes, signs out; returns every secret value
/// seen on the way.
async fn full_flow(app: &TestApp) -> Vec<String> {
    let browser = Browser::new();
    let mut secrets = vec![CLIENT_SECRET.to_string(), COOKIE_SECRET.to_string()];
    let hops = browser.follow(&app.url("/app/page?x=1")).await;
    assert_eq!(hops.last().unwrap().status, StatusCode::OK);
    for hop in &hops {
        if hop.url.contains("/oauth2/callback") {
            secrets.push(query_param(&hop.url, "code").unwrap());
            secrets.push(query_param(&hop.url, "state").unwrap());
        }
        for set_cookie in hop.set_cookies() {
            let pair = set_cookie.split(';').next().unwrap();
            let value = pair.split_once('=').unwrap().1;
            if !value.is_empty() {
                secrets.push(value.to_string());
            }
        }
        // The authorization request's nonce and PKCE challenge.
        for name in ["nonce", "code_challenge"] {
            if let Some(value) = query_param(&hop.url, name) {
                secrets.push(value);
            }
        }
    }
    secrets.extend(tokens_of(app, &browser).await);
    assert_eq!(
        browser.get(&app.url("/app/other")).await.status,
        StatusCode::OK
    );
    // The access token is due: the next request refreshes it.
    app.advance(Duration::from_secs(61));
    assert_eq!(
        browser.get(&app.url("/app/after-refresh")).await.status,
        StatusCode::OK
    );
    assert_eq!(app.op.stats().refreshes, 1);
    secrets.extend(tokens_of(app, &browser).await);
    secrets.push(browser.cookie("portico_session").unwrap());
    let confirm = browser.get(&app.url("/oauth2/sign_out")).await;
    let csrf = csrf_of(&confirm.body);
    secrets.push(csrf.clone());
    let done = browser
        .post_form(
            &app.url("/oauth2/sign_out"),
            &[("csrf", &csrf)],
            &[("Origin", &app.base)],
        )
        .await;
    assert_eq!(done.status, StatusCode::FOUND);
    secrets.retain(|secret| secret.len() >= 8);
    // Secrets: client and cookie secrets, code, state, nonce, PKCE challenge,
    // login and session cookies, two sets of tokens, the CSRF token.
    assert!(secrets.len() >= 14, "{}", secrets.len());
    secrets
}

async fn short_lived_tokens() -> TestApp {
    TestApp::builder()
        .op_options(|options| {
            options.access_token_ttl = Duration::from_secs(120);
            options.id_token_ttl = Duration::from_secs(120);
        })
        .config("session", "refresh_before = \"60s\"")
        .build()
        .await
}

/// Lines written by the gateway (the dev OP in the same process is not portico).
fn gateway_lines(text: &str) -> Vec<&str> {
    text.lines()
        .filter(|line| !line.contains("portico::devop"))
        .collect()
}

fn assert_no_secret(lines: &[&str], secrets: &[String]) {
    for secret in secrets {
        for line in lines {
            assert!(
                !line.contains(secret.as_str()),
                "a secret value ({}…) is in the log:\n{line}",
                &secret[..4]
            );
            let encoded = crate::support::encode(secret);
            assert!(
                !line.contains(encoded.as_str()),
                "a secret value ({}…, URL-encoded) is in the log:\n{line}",
                &secret[..4]
            );
        }
    }
}

#[tokio::test]
async fn json_logs_of_a_full_flow_hold_no_token_code_cookie_or_secret() {
    let (capture, _guard) = capture(LogFormat::Json);
    let app = short_lived_tokens().await;
    let secrets = full_flow(&app).await;
    let text = capture.text();
    let lines = gateway_lines(&text);
    assert!(lines.len() > 20, "too few lines captured:\n{text}");
    assert_no_secret(&lines, &secrets);

    let objects: Vec<serde_json::Value> = lines
        .iter()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}")))
        .collect();
    let access: Vec<&serde_json::Value> = objects
        .iter()
        .filter(|object| object["target"] == "portico::access")
        .collect();
    let paths: Vec<&str> = access
        .iter()
        .map(|line| line["path"].as_str().unwrap())
        .collect();
    for path in [
        "/app/page",
        "/oauth2/callback",
        "/app/other",
        "/app/after-refresh",
        "/oauth2/sign_out",
    ] {
        assert!(
            paths.contains(&path),
            "no access line for {path}: {paths:?}"
        );
    }
    for line in &access {
        let request_id = line["span"]["request_id"].as_str().unwrap_or_default();
        assert_eq!(
            request_id.len(),
            24,
            "access line without request id: {line}"
        );
        assert!(line["status"].as_u64().is_some(), "{line}");
        assert!(line["latency_ms"].as_f64().is_some(), "{line}");
        assert!(line["route"].as_str().is_some(), "{line}");
        assert!(!line["path"].as_str().unwrap().contains('?'), "{line}");
    }
    let signed_in_request = access
        .iter()
        .find(|line| line["path"] == "/app/other")
        .unwrap();
    assert_eq!(signed_in_request["sub"], "alice");
    assert_eq!(signed_in_request["route"], "/");
    assert_eq!(signed_in_request["method"], "GET");
    assert_eq!(signed_in_request["status"], 200);

    // Every line written while a request was served names that request.
    for object in objects.iter().filter(|object| object.get("span").is_some()) {
        let spans = object["spans"].as_array().unwrap();
        if spans.iter().any(|span| span["name"] == "request") {
            assert!(
                spans
                    .iter()
                    .any(|span| span["request_id"].as_str().is_some()),
                "{object}"
            );
        }
    }
    // Auth lines: sign-in, refresh, sign-out.
    let auth: Vec<&str> = objects
        .iter()
        .filter(|object| object["target"] == "portico::auth")
        .filter_map(|object| object["message"].as_str())
        .collect();
    for event in ["signed in", "session refreshed", "signed out"] {
        assert!(auth.contains(&event), "no auth line {event:?}: {auth:?}");
    }
}

#[tokio::test]
async fn text_logs_of_a_full_flow_hold_no_secret_and_carry_the_request_id() {
    let (capture, _guard) = capture(LogFormat::Text);
    let app = short_lived_tokens().await;
    let secrets = full_flow(&app).await;
    let text = capture.text();
    let lines = gateway_lines(&text);
    assert_no_secret(&lines, &secrets);
    let access: Vec<&&str> = lines
        .iter()
        .filter(|line| line.contains("portico::access"))
        .collect();
    assert!(access.len() >= 5, "{text}");
    for line in access {
        assert!(line.contains("request{request_id="), "{line}");
        assert!(line.contains("latency_ms="), "{line}");
        assert!(line.contains("status="), "{line}");
    }
    let failed_login = lines
        .iter()
        .filter(|line| line.contains("portico::auth"))
        .count();
    assert!(failed_login >= 3, "{text}");
}

#[tokio::test]
async fn warnings_keep_the_request_id_when_only_warnings_are_logged() {
    let (capture, _guard) = capture_with(LogFormat::Json, "warn");
    let app = TestApp::start().await;
    app.op
        .set_misbehavior(portico::devop::Misbehavior::BadSignature);
    let page = Browser::new().open(&app.url("/x")).await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    let request_id = page.header("x-request-id").unwrap();
    let text = capture.text();
    let line = text
        .lines()
        .find(|line| line.contains("login failed"))
        .unwrap_or_else(|| panic!("no warning:\n{text}"));
    let object: serde_json::Value = serde_json::from_str(line).unwrap();
    assert_eq!(object["span"]["request_id"], request_id.as_str(), "{line}");
    assert_eq!(object["reason"], "bad_signature");
    assert!(
        !text.contains("portico::access"),
        "info lines are filtered out"
    );
}

/// The served binary writes its access lines itself (not through tracing,
/// see `ops::access_line`): the line is there, whole, in the configured
/// format, with the request's id and without the query.
#[tokio::test]
async fn the_served_binary_writes_json_access_lines_itself() {
    let portico = crate::support::process::PorticoProcess::start(
        "[[routes]]\npath_prefix = \"/\"\npublic = true\nupstream = \"{upstream}\"\n",
        "",
    )
    .await;
    let response = reqwest::get(portico.url("/pub/a\"b{c}é?token=query-secret-4f2a"))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let request_id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let line = loop {
        let logs = portico.logs();
        if let Some(line) = logs
            .lines()
            .find(|line| line.contains(&request_id) && line.contains("portico::access"))
        {
            break line.to_owned();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no access line:\n{logs}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let object: serde_json::Value =
        serde_json::from_str(&line).unwrap_or_else(|_| panic!("not JSON: {line}"));
    assert_eq!(object["target"], "portico::access", "{line}");
    assert_eq!(object["level"], "INFO", "{line}");
    assert_eq!(object["message"], "request", "{line}");
    assert_eq!(object["method"], "GET", "{line}");
    assert_eq!(object["path"], "/pub/a%22b%7Bc%7D%C3%A9", "{line}");
    assert_eq!(object["status"], 200, "{line}");
    assert_eq!(object["route"], "/", "{line}");
    assert!(object["latency_ms"].as_f64().is_some(), "{line}");
    assert!(object.get("sub").is_none(), "nobody signed in: {line}");
    assert_eq!(object["span"]["request_id"], request_id.as_str(), "{line}");
    assert_eq!(object["span"]["name"], "request", "{line}");
    assert_eq!(object["spans"][0], object["span"], "{line}");
    let timestamp = object["timestamp"].as_str().unwrap();
    assert_eq!(timestamp.len(), 27, "{line}");
    assert!(timestamp.ends_with('Z'), "{line}");
    assert!(!portico.logs().contains("query-secret-4f2a"));
}
