//! Outages of what portico depends on, made real: Redis hanging, the OP
//! down or slow at the callback, during refresh and during JWKS refresh, an
//! upstream resetting before or during its answer. Each gets a bounded wait,
//! a clear answer with the right status, a metric, and recovery without a
//! restart. (Redis stopped and restarted, the OP down at startup and during
//! refresh, and upstreams refusing or slow are in sessions.rs, tokens.rs,
//! lifecycle.rs and proxy.rs.)

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use portico::devop::Misbehavior;
use reqwest::StatusCode;

use crate::metrics::{sample, scrape, upstream_errors};
use crate::support::{Browser, RedisServer, TestApp};

/// Polls `app`'s metrics until `series` reaches at least `at_least`.
async fn wait_for_metric(app: &TestApp, series: &str, at_least: f64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = scrape(app).await;
        if sample(&text, series).is_some_and(|value| value >= at_least) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{series} never reached {at_least}:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn wait_until_ready(app: &TestApp) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while Browser::new().get(&app.url("/readyz")).await.status != StatusCode::OK {
        assert!(Instant::now() < deadline, "never ready again");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn redis_hanging_gets_a_503_after_the_command_timeout_and_recovers() {
    let redis = RedisServer::spawn();
    // The store read's timeout, so without the local cache (which serves a
    // hanging Redis's sessions for at most its lease: see
    // cache::a_hanging_redis_is_served_from_the_cache_for_at_most_the_lease).
    let app = TestApp::builder()
        .redis_url(&redis.url(0))
        .config("session", "local_cache = false")
        .build()
        .await;
    let browser = Browser::new();
    app.sign_in(&browser, "/").await;
    let sleeper = redis.hang_for(3);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let page = browser
        .get_with(&app.url("/during"), &[("Accept", "application/json")])
        .await;
    assert_eq!(
        page.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        page.body
    );
    assert_eq!(page.json()["error"], "session_store_unavailable");
    let text = scrape(&app).await;
    assert!(
        sample(
            &text,
            "portico_redis_command_errors_total{operation=\"session_load\"}"
        )
        .is_some_and(|errors| errors >= 1.0),
        "{text}"
    );
    tokio::task::spawn_blocking(move || sleeper.join().unwrap())
        .await
        .unwrap();
    wait_until_ready(&app).await;
    // Redis was only slow: the session is still there.
    let page = browser.get(&app.url("/after")).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
}

/// Walks a browser to the OP and back up to (not into) the callback;
/// returns the callback URL.
async fn up_to_the_callback(app: &TestApp, browser: &Browser) -> String {
    let to_op = browser.get(&app.url("/private")).await;
    assert_eq!(to_op.status, StatusCode::FOUND);
    let back = browser.get(&to_op.location().unwrap()).await;
    assert_eq!(back.status, StatusCode::FOUND, "{}", back.body);
    let callback = back.location().unwrap();
    assert!(callback.contains("/oauth2/callback"), "{callback}");
    callback
}

async fn assert_provider_unreachable_at_callback(app: &TestApp, misbehavior: Misbehavior) {
    let browser = Browser::new();
    let callback = up_to_the_callback(app, &browser).await;
    app.op.set_misbehavior(misbehavior.clone());
    let page = browser.get(&callback).await;
    assert_eq!(
        page.status,
        StatusCode::BAD_GATEWAY,
        "{misbehavior:?}: {}",
        page.body
    );
    assert!(
        page.body.contains("Identity provider unreachable"),
        "{misbehavior:?}: {}",
        page.body
    );
    assert!(browser.cookie("portico_session").is_none());
    // The provider comes back: the next sign-in works, no restart.
    app.op.set_misbehavior(Misbehavior::None);
    let page = app.sign_in(&Browser::new(), "/").await;
    assert_eq!(page.status, StatusCode::OK);
}

#[tokio::test]
async fn provider_down_at_the_callback_gets_a_502_page_and_sign_in_recovers() {
    let app = TestApp::start().await;
    assert_provider_unreachable_at_callback(&app, Misbehavior::Unavailable).await;
    let text = scrape(&app).await;
    assert_eq!(
        sample(
            &text,
            "portico_logins_failed_total{reason=\"token_endpoint_unreachable\"}"
        ),
        Some(1.0),
        "{text}"
    );
}

#[tokio::test]
async fn provider_slow_at_the_callback_is_cut_off_after_provider_timeout() {
    let app = TestApp::builder()
        .config("oidc", "provider_timeout = \"300ms\"")
        .build()
        .await;
    assert_provider_unreachable_at_callback(&app, Misbehavior::Slow(Duration::from_secs(3))).await;
    let text = scrape(&app).await;
    assert_eq!(
        sample(
            &text,
            "portico_logins_failed_total{reason=\"token_endpoint_unreachable\"}"
        ),
        Some(1.0),
        "{text}"
    );
}

#[tokio::test]
async fn provider_slow_during_refresh_keeps_a_valid_token_then_answers_503_and_recovers() {
    let app = TestApp::builder()
        .op_options(|options| {
            options.access_token_ttl = Duration::from_secs(120);
            options.id_token_ttl = Duration::from_secs(120);
        })
        .config("session", "refresh_before = \"60s\"")
        .config("oidc", "provider_timeout = \"300ms\"")
        .build()
        .await;
    let browser = Browser::new();
    app.sign_in(&browser, "/").await;
    app.op
        .set_misbehavior(Misbehavior::Slow(Duration::from_secs(3)));
    app.advance(Duration::from_secs(61));
    assert_eq!(browser.get(&app.url("/still")).await.status, StatusCode::OK);
    app.advance(Duration::from_secs(120));
    let page = browser
        .get_with(&app.url("/expired"), &[("Accept", "application/json")])
        .await;
    assert_eq!(
        page.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        page.body
    );
    assert_eq!(page.json()["error"], "refresh_unavailable");
    app.op.set_misbehavior(Misbehavior::None);
    assert_eq!(browser.get(&app.url("/back")).await.status, StatusCode::OK);
    let text = scrape(&app).await;
    for (outcome, count) in [
        ("failed_token_still_valid", 1.0),
        ("failed", 1.0),
        ("refreshed", 1.0),
    ] {
        assert_eq!(
            sample(
                &text,
                &format!("portico_session_refreshes_total{{outcome=\"{outcome}\"}}")
            ),
            Some(count),
            "{outcome}: {text}"
        );
    }
}

#[tokio::test]
async fn jwks_refresh_failing_keeps_the_old_keys_and_recovers() {
    let app = TestApp::builder()
        .config("oidc", "jwks_refresh = \"200ms\"")
        .build()
        .await;
    let browser = Browser::new();
    app.sign_in(&browser, "/").await;
    app.op.set_misbehavior(Misbehavior::Unavailable);
    wait_for_metric(
        &app,
        "portico_jwks_fetches_total{trigger=\"periodic\",outcome=\"error\"}",
        1.0,
    )
    .await;
    // Signed-in traffic needs no provider, and the gateway stays ready.
    assert_eq!(
        browser.get(&app.url("/during")).await.status,
        StatusCode::OK
    );
    assert_eq!(
        Browser::new().get(&app.url("/readyz")).await.status,
        StatusCode::OK
    );
    app.op.set_misbehavior(Misbehavior::None);
    let text = scrape(&app).await;
    let ok_before = sample(
        &text,
        "portico_jwks_fetches_total{trigger=\"periodic\",outcome=\"ok\"}",
    )
    .unwrap_or(0.0);
    wait_for_metric(
        &app,
        "portico_jwks_fetches_total{trigger=\"periodic\",outcome=\"ok\"}",
        ok_before + 1.0,
    )
    .await;
    assert_eq!(
        app.sign_in(&Browser::new(), "/").await.status,
        StatusCode::OK
    );
}

/// An upstream that, while `reset` is set, reads the request and resets the
/// connection without a word; otherwise answers 200 "fine".
async fn resetting_upstream(reset: Arc<AtomicBool>) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            let reset = reset.clone();
            tokio::spawn(async move {
                let mut buffer = [0u8; 4096];
                loop {
                    match stream.read(&mut buffer).await {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {}
                    }
                    if reset.load(Ordering::SeqCst) {
                        // Linger 0 makes the drop send RST; it does not block.
                        #[allow(deprecated)]
                        let _ = stream.set_linger(Some(Duration::ZERO));
                        return; // dropped: RST
                    }
                    let answer = "HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nfine";
                    if stream.write_all(answer.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    url
}

#[tokio::test]
async fn upstream_resetting_before_answering_gets_a_502_and_recovers() {
    let reset = Arc::new(AtomicBool::new(true));
    let upstream = resetting_upstream(reset.clone()).await;
    let app = TestApp::builder()
        .route(&format!(
            "path_prefix = \"/\"\nupstream = \"{upstream}\"\npublic = true"
        ))
        .build()
        .await;
    let page = Browser::new().get(&app.url("/x")).await;
    assert_eq!(page.status, StatusCode::BAD_GATEWAY, "{}", page.body);
    assert!(page.body.contains("could not be reached"), "{}", page.body);
    let text = scrape(&app).await;
    assert_eq!(
        sample(&text, &upstream_errors(&upstream, "unreachable")),
        Some(1.0),
        "{text}"
    );
    reset.store(false, Ordering::SeqCst);
    let page = Browser::new().get(&app.url("/x")).await;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(page.body, "fine");
}

#[tokio::test]
async fn upstream_breaking_off_mid_response_cuts_the_client_off_and_is_counted() {
    let app = TestApp::builder()
        .route("path_prefix = \"/\"\nupstream = \"{upstream}\"\npublic = true")
        .build()
        .await;
    let client = reqwest::Client::new();
    let response = client.get(app.url("/reset")).send().await.unwrap();
    // The head was already on its way: the status is the upstream's, and
    // the body breaks off as the upstream's did (never passed off as whole).
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.bytes().await.is_err(),
        "a truncated body must fail"
    );
    let upstream = app.upstream.url();
    wait_for_metric(&app, &upstream_errors(&upstream, "body"), 1.0).await;
    let text = scrape(&app).await;
    assert_eq!(sample(&text, "portico_upstream_active_requests"), Some(0.0));
    let page = Browser::new().get(&app.url("/fine")).await;
    assert_eq!(page.status, StatusCode::OK);
}
