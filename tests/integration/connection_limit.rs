//! Each upstream's connection limit (issue 19): never more than
//! `max_connections` open to one upstream however many clients come; the
//! excess waits for a connection (`max_pending`, `pending_timeout`) and is
//! then served on it; past that, 503 with `Retry-After` at once, counted.

use std::time::{Duration, Instant};

use reqwest::StatusCode;

use crate::metrics::{sample, scrape};
use crate::support::holding_upstream::HoldingUpstream;
use crate::support::{Browser, Page, TestApp};

/// Waits (up to 10 s) until the metric `series` reads `value`.
async fn wait_for_sample(app: &TestApp, series: &str, value: f64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = scrape(app).await;
        if sample(&text, series) == Some(value) {
            return;
        }
        assert!(Instant::now() < deadline, "{series} never {value}:\n{text}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// GETs `path` from a client of its own, in the background.
fn request(app: &TestApp, path: &str, accept: &'static str) -> tokio::task::JoinHandle<Page> {
    let url = app.url(path);
    tokio::spawn(async move { Browser::new().get_with(&url, &[("Accept", accept)]).await })
}

const JSON: &str = "application/json";
const HTML: &str = "text/html";

fn assert_busy(page: &Page) {
    assert_eq!(
        page.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        page.body
    );
    assert_eq!(page.header("retry-after").as_deref(), Some("1"), "{page:?}");
}

#[tokio::test]
async fn one_upstream_never_gets_more_than_max_connections_and_the_excess_waits_or_gets_503() {
    let upstream = HoldingUpstream::start().await;
    let origin = upstream.url();
    // Two routes to one upstream: they share its limit.
    let app = TestApp::builder()
        .route(&format!(
            "path_prefix = \"/a\"\nupstream = \"{origin}\"\npublic = true\n\
             max_connections = 2\nmax_pending = 2\npending_timeout = \"10s\""
        ))
        .route(&format!(
            "path_prefix = \"/b\"\nupstream = \"{origin}\"\npublic = true"
        ))
        .build()
        .await;
    let pending = format!("portico_upstream_pending_requests{{upstream=\"{origin}\"}}");

    // Two requests take both connections and are held there.
    let mut served = vec![request(&app, "/a/1", JSON), request(&app, "/b/2", JSON)];
    upstream.wait_until_held(2).await;
    // Two more wait for one of them (through either route).
    served.push(request(&app, "/b/3", JSON));
    served.push(request(&app, "/a/4", JSON));
    wait_for_sample(&app, &pending, 2.0).await;

    // The line is full: refused at once, not after pending_timeout.
    let started = Instant::now();
    let api = request(&app, "/a/5", JSON).await.unwrap();
    let browser = request(&app, "/b/6", HTML).await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_busy(&api);
    assert_eq!(api.json()["error"], "upstream_busy", "{}", api.body);
    assert!(api.json()["request_id"].is_string(), "{}", api.body);
    assert_busy(&browser);
    assert!(
        browser.body.contains("The application is busy"),
        "{}",
        browser.body
    );
    let id = browser.header("x-request-id").unwrap();
    assert!(browser.body.contains(&id), "the page names the request id");
    assert_eq!(upstream.open(), 2);

    // Released, the held ones are answered and the waiting ones served on
    // the same two connections.
    upstream.release();
    for request in served {
        let page = request.await.unwrap();
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        assert_eq!(page.body, "ok");
    }
    assert_eq!(upstream.most_open(), 2, "never more than max_connections");
    assert_eq!(upstream.accepted(), 2, "the waiters reused the connections");

    let text = scrape(&app).await;
    let overflow = |reason: &str| {
        sample(
            &text,
            &format!(
                "portico_upstream_overflow_total{{upstream=\"{origin}\",reason=\"{reason}\"}}"
            ),
        )
    };
    assert_eq!(overflow("pending_full"), Some(2.0), "{text}");
    assert_eq!(overflow("pending_timeout"), None, "{text}");
    assert_eq!(sample(&text, &pending), Some(0.0));
    // Refusals at the limit are not the upstream's errors.
    assert!(!text.contains("portico_upstream_errors_total{"), "{text}");
}

#[tokio::test]
async fn a_request_that_waits_past_pending_timeout_gets_503_and_other_upstreams_are_not_held_up() {
    let slow = HoldingUpstream::start().await;
    let other = HoldingUpstream::start().await;
    other.release();
    let app = TestApp::builder()
        .route(&format!(
            "path_prefix = \"/slow\"\nupstream = \"{}\"\npublic = true\n\
             max_connections = 1\nmax_pending = 4\npending_timeout = \"300ms\"",
            slow.url()
        ))
        .route(&format!(
            "path_prefix = \"/other\"\nupstream = \"{}\"\npublic = true",
            other.url()
        ))
        .config("server", "max_connections = 1\nmax_pending = 0")
        .build()
        .await;

    let held = request(&app, "/slow/1", JSON);
    slow.wait_until_held(1).await;
    let started = Instant::now();
    let waited = request(&app, "/slow/2", JSON).await.unwrap();
    let elapsed = started.elapsed();
    assert_busy(&waited);
    assert!(
        elapsed >= Duration::from_millis(300) && elapsed < Duration::from_secs(5),
        "waited {elapsed:?}, pending_timeout is 300ms"
    );
    // Another upstream has a limit of its own ([server]'s).
    let page = request(&app, "/other/x", JSON).await.unwrap();
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);

    slow.release();
    assert_eq!(held.await.unwrap().status, StatusCode::OK);
    assert_eq!(slow.most_open(), 1);
    let text = scrape(&app).await;
    assert_eq!(
        sample(
            &text,
            &format!(
                "portico_upstream_overflow_total{{upstream=\"{}\",reason=\"pending_timeout\"}}",
                slow.url()
            )
        ),
        Some(1.0),
        "{text}"
    );
}
