//! `/metrics`: what an operator scrapes, counted for real by one gateway.

use portico::devop::Misbehavior;
use reqwest::StatusCode;

use crate::support::{Browser, TestApp};

/// The scrape of `app`'s /metrics.
pub async fn scrape(app: &TestApp) -> String {
    let page = Browser::new().get(&app.url("/metrics")).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(
        page.header("content-type")
            .unwrap()
            .starts_with("application/openmetrics-text"),
        "{:?}",
        page.header("content-type")
    );
    page.body
}

/// The value of the sample `series` (name with labels, exactly as exposed).
/// The series name of `upstream`'s failures of `kind`.
pub fn upstream_errors(upstream: &str, kind: &str) -> String {
    format!("portico_upstream_errors_total{{upstream=\"{upstream}\",kind=\"{kind}\"}}")
}

pub fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|value| value.trim().parse().ok())
}

#[tokio::test]
async fn metrics_show_the_login_failure_reasons_of_bad_token_logins() {
    let app = TestApp::start().await;
    for misbehavior in [
        Misbehavior::BadSignature,
        Misbehavior::WrongAudience,
        Misbehavior::WrongAudience,
        Misbehavior::WrongNonce,
    ] {
        app.op.set_misbehavior(misbehavior.clone());
        let page = Browser::new().open(&app.url("/private")).await;
        assert_eq!(page.status, StatusCode::BAD_REQUEST, "{misbehavior:?}");
    }
    app.op.set_misbehavior(Misbehavior::None);
    app.sign_in(&Browser::new(), "/").await;

    let text = scrape(&app).await;
    let failed = |reason: &str| {
        sample(
            &text,
            &format!("portico_logins_failed_total{{reason=\"{reason}\"}}"),
        )
    };
    assert_eq!(failed("bad_signature"), Some(1.0), "{text}");
    assert_eq!(failed("wrong_aud"), Some(2.0), "{text}");
    assert_eq!(failed("bad_nonce"), Some(1.0), "{text}");
    assert_eq!(failed("bad_state"), None, "{text}");
    assert_eq!(sample(&text, "portico_logins_started_total"), Some(5.0));
    assert_eq!(sample(&text, "portico_logins_succeeded_total"), Some(1.0));
    assert_eq!(
        sample(
            &text,
            "portico_http_requests_total{route=\"/oauth2/callback\",method=\"GET\",status_class=\"4xx\"}"
        ),
        Some(4.0),
        "{text}"
    );
}

#[tokio::test]
async fn requests_are_counted_by_route_prefix_never_by_raw_path() {
    let app = TestApp::builder()
        .route("path_prefix = \"/\"\nupstream = \"{upstream}\"")
        .route("path_prefix = \"/api\"\nupstream = \"{upstream}\"\napi = true")
        .build()
        .await;
    let browser = Browser::new();
    app.sign_in(&browser, "/").await;
    for id in 0..3 {
        let page = browser.get(&app.url(&format!("/api/users/{id}"))).await;
        assert_eq!(page.status, StatusCode::OK);
    }
    let post = browser
        .post_form(&app.url("/api/things"), &[("a", "b")], &[])
        .await;
    assert_eq!(post.status, StatusCode::OK);
    let anonymous = Browser::new()
        .get_with(&app.url("/api/x"), &[("Accept", "application/json")])
        .await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);

    let text = scrape(&app).await;
    let requests = |method: &str, class: &str| {
        sample(
            &text,
            &format!(
                "portico_http_requests_total{{route=\"/api\",method=\"{method}\",status_class=\"{class}\"}}"
            ),
        )
    };
    assert_eq!(requests("GET", "2xx"), Some(3.0), "{text}");
    assert_eq!(requests("POST", "2xx"), Some(1.0), "{text}");
    assert_eq!(requests("GET", "4xx"), Some(1.0), "{text}");
    assert!(
        !text.contains("/api/users"),
        "raw paths never become labels"
    );
    assert!(!text.contains("alice"), "users never become labels");
    let upstream = app.upstream.url();
    assert_eq!(
        sample(
            &text,
            &format!("portico_upstream_duration_seconds_count{{upstream=\"{upstream}\"}}")
        ),
        Some(5.0),
        "{text}"
    );
    assert_eq!(sample(&text, "portico_upstream_active_requests"), Some(0.0));
    assert!(
        sample(
            &text,
            "portico_redis_command_duration_seconds_count{operation=\"session_load\"}"
        )
        .is_some_and(|count| count >= 5.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "portico_jwks_fetches_total{trigger=\"discovery\",outcome=\"ok\"}"
        ),
        Some(1.0),
        "{text}"
    );
    assert!(text.contains("portico_build_info{version=\""), "{text}");
    assert!(
        text.contains(
            "portico_http_request_duration_seconds_bucket{le=\"+Inf\",route=\"/api\",method=\"GET\"} 4"
        ),
        "{text}"
    );
}
