//! Sessions: fixation, tampering, what Redis holds, what a request costs,
//! expiry, sign-out, and Redis going away and coming back.

use std::time::Duration;

use reqwest::StatusCode;

use crate::support::{Browser, RedisServer, TestApp};

#[tokio::test]
async fn session_cookie_has_secure_defaults_and_holds_no_token() {
    let app = TestApp::start().await;
    let browser = Browser::new();
    let start = browser.get(&app.url("/")).await;
    let callback = browser
        .get(&start.location().unwrap())
        .await
        .location()
        .unwrap();
    let done = browser.get(&callback).await;
    let cookie = done
        .set_cookies()
        .into_iter()
        .find(|line| line.starts_with("portico_session="))
        .unwrap();
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    assert!(cookie.contains("SameSite=Lax"), "{cookie}");
    assert!(cookie.contains("Path=/"), "{cookie}");
    // http public URL in tests: Secure follows public_url's scheme.
    assert!(!cookie.contains("Secure"), "{cookie}");
    assert!(
        cookie.len() < 200,
        "the cookie holds only an encrypted id: {cookie}"
    );
}

#[tokio::test]
async fn https_public_url_makes_cookies_secure() {
    let config = portico::config::parse(
        r#"
[server]
public_url = "https://app.example.com"
[oidc]
issuer = "https://op.example.com"
client_id = "c"
[session]
cookie_secret = "dGVzdC1jb29raWUtc2VjcmV0LXRoYXQtaXMtbG9uZy1lbm91Z2g="
[[routes]]
upstream = "http://127.0.0.1:9"
"#,
        &Default::default(),
    )
    .unwrap();
    assert!(config.session.cookie_secure);
}

#[tokio::test]
async fn a_planted_session_id_is_never_kept_at_login() {
    let app = TestApp::start().await;
    // The attacker signs in as bob and plants bob's cookie in the victim's browser.
    app.op.set_auto_approve(Some("bob".into()));
    let attacker = Browser::new();
    app.sign_in(&attacker, "/").await;
    let planted = attacker.cookie("portico_session").unwrap();
    let victim = Browser::new();
    victim.set_cookie("portico_session", &planted);
    // The victim signs in (as alice) through a fresh login.
    app.op.set_auto_approve(Some("alice".into()));
    let page = victim.open(&app.url("/oauth2/start?rd=%2Fmine")).await;
    assert_eq!(page.json()["headers"]["x-forwarded-user"], "alice");
    let issued = victim.cookie("portico_session").unwrap();
    assert_ne!(issued, planted, "a new session id at login");
    // The planted session was deleted: the attacker's cookie no longer works.
    let attacker_page = attacker.get(&app.url("/again")).await;
    assert_eq!(attacker_page.status, StatusCode::FOUND);
}

#[tokio::test]
async fn tampered_or_forged_session_cookies_count_as_signed_out() {
    let app = TestApp::start().await;
    let browser = Browser::new();
    app.sign_in(&browser, "/").await;
    let good = browser.cookie("portico_session").unwrap();
    let mut bytes = good.into_bytes();
    bytes[5] = if bytes[5] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(bytes).unwrap();
    for value in [
        tampered.as_str(),
        "not-even-base64!",
        "",
        "%00%01",
        "\"quoted\"",
    ] {
        let forged = Browser::new();
        forged.set_cookie("portico_session", value);
        let page = forged.get(&app.url("/x")).await;
        assert_eq!(page.status, StatusCode::FOUND, "value {value:?}");
    }
}

#[tokio::test]
async fn redis_holds_no_token_in_the_clear() {
    let redis = RedisServer::spawn();
    let app = TestApp::builder().redis_url(&redis.url(0)).build().await;
    let browser = Browser::new();
    app.sign_in(&browser, "/").await;
    let keys = redis.command(&["KEYS", "*"]);
    let key = keys
        .lines()
        .find(|line| {
            !line.starts_with('*') && !line.starts_with('$') && !line.starts_with("portico:")
        })
        .expect("one session key")
        .to_string();
    let value = redis.command(&["GET", &key]);
    assert!(value.contains("alice"), "the record holds the identity");
    assert!(
        !value.contains("eyJ"),
        "no JWT (ID or access token) in the clear: {value}"
    );
    assert!(!value.to_lowercase().contains("refresh"), "{value}");
    let ttl: i64 = redis
        .command(&["TTL", &key])
        .trim_start_matches(':')
        .trim()
        .parse()
        .unwrap();
    assert!(
        ttl > 0 && ttl <= 3600,
        "Redis expires the record with the idle timeout: {ttl}"
    );
}

#[tokio::test]
async fn a_signed_in_request_costs_one_redis_command_and_anonymous_traffic_none() {
    let redis = RedisServer::spawn();
    // The uncached path (with the default local cache a request costs none;
    // see cache::cached_sessions_need_no_redis_round_trip).
    let app = TestApp::builder()
        .redis_url(&redis.url(0))
        .config("session", "local_cache = false")
        .route("path_prefix = \"/\"\nupstream = \"{upstream}\"")
        .route("path_prefix = \"/public\"\nupstream = \"{upstream}\"\npublic = true")
        .build()
        .await;
    let browser = Browser::new();
    app.sign_in(&browser, "/").await;

    redis.reset_stats();
    for _ in 0..10 {
        assert_eq!(browser.get(&app.url("/page")).await.status, StatusCode::OK);
    }
    assert_eq!(redis.data_commands(), 10, "{}", redis.commands_by_name());

    redis.reset_stats();
    let anonymous = Browser::new();
    for _ in 0..5 {
        assert_eq!(
            anonymous.get(&app.url("/public/x")).await.status,
            StatusCode::OK
        );
        assert_eq!(
            anonymous.get(&app.url("/private")).await.status,
            StatusCode::FOUND
        );
    }
    assert_eq!(redis.data_commands(), 0, "{}", redis.commands_by_name());
}

#[tokio::test]
async fn idle_expiry_is_extended_at_most_once_a_minute_and_enforced() {
    let redis = RedisServer::spawn();
    // Counts the uncached path's commands exactly; the cached path's
    // extension is in cache::an_idle_extension_on_a_cached_session_is_one_write.
    let app = TestApp::builder()
        .redis_url(&redis.url(0))
        .config("session", "local_cache = false")
        .config("session", "idle_timeout = \"10m\"")
        .build()
        .await;
    let browser = Browser::new();
    app.sign_in(&browser, "/").await;
    redis.reset_stats();
    browser.get(&app.url("/a")).await;
    browser.get(&app.url("/b")).await;
    assert_eq!(
        redis.data_commands(),
        2,
        "reads only within the first minute"
    );
    app.clock.advance(Duration::from_secs(61));
    browser.get(&app.url("/c")).await;
    browser.get(&app.url("/d")).await;
    // /c and /d read (2); the extension once: lock (SET NX), re-read under
    // the lock (GET), write (SET), release (EVAL, which Redis counts with the
    // GET and DEL it runs inside): 2 + 2 + 6 = 10.
    assert_eq!(
        redis.data_commands(),
        10,
        "one extension: {}",
        redis.commands_by_name()
    );
    // Idle for longer than the timeout: back to login, keeping the URL.
    app.clock.advance(Duration::from_secs(11 * 60));
    let page = browser.get(&app.url("/deep/link?q=1")).await;
    assert_eq!(page.status, StatusCode::FOUND);
    assert!(page.location().unwrap().starts_with(&app.op.issuer()));
    // The provider's tokens carry real time, so sign in again at real time.
    app.clock.reset();
    let landing = browser.open(&page.location().unwrap()).await;
    assert_eq!(landing.json()["path"], "/deep/link");
    assert_eq!(landing.json()["query"], "q=1");
}

#[tokio::test]
async fn absolute_ttl_ends_a_session_even_when_active() {
    let app = TestApp::builder()
        .config("session", "ttl = \"30m\"")
        .config("session", "idle_timeout = \"10m\"")
        .build()
        .await;
    let browser = Browser::new();
    app.sign_in(&browser, "/").await;
    for _ in 0..4 {
        app.clock.advance(Duration::from_secs(8 * 60));
        if browser.get(&app.url("/keepalive")).await.status != StatusCode::OK {
            break;
        }
    }
    let page = browser.get(&app.url("/after-ttl")).await;
    assert_eq!(
        page.status,
        StatusCode::FOUND,
        "32 minutes after login the 30m session is over"
    );
}

#[tokio::test]
async fn sign_out_needs_a_same_origin_post_with_the_csrf_token() {
    let app = TestApp::start().await;
    let browser = Browser::new();
    app.sign_in(&browser, "/").await;
    let confirm = browser.get(&app.url("/oauth2/sign_out")).await;
    assert_eq!(confirm.status, StatusCode::OK);
    assert!(confirm.body.contains("Sign out?"));
    let csrf = confirm
        .body
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap()
        .to_string();
    // A GET never signs out.
    assert_eq!(
        browser.get(&app.url("/still-in")).await.status,
        StatusCode::OK
    );
    // A cross-site POST is refused even with the token.
    let cross = browser
        .post_form(
            &app.url("/oauth2/sign_out"),
            &[("csrf", &csrf)],
            &[("Origin", "https://evil.example")],
        )
        .await;
    assert_eq!(cross.status, StatusCode::FORBIDDEN);
    // A same-origin POST without the token is refused.
    let tokenless = browser
        .post_form(
            &app.url("/oauth2/sign_out"),
            &[("csrf", "")],
            &[("Origin", &app.base)],
        )
        .await;
    assert_eq!(tokenless.status, StatusCode::FORBIDDEN);
    assert_eq!(
        browser.get(&app.url("/still-in")).await.status,
        StatusCode::OK
    );
    let session_cookie = browser.cookie("portico_session").unwrap();
    // The real thing.
    let done = browser
        .post_form(
            &app.url("/oauth2/sign_out"),
            &[("csrf", &csrf)],
            &[("Origin", &app.base)],
        )
        .await;
    assert_eq!(done.status, StatusCode::FOUND);
    assert!(
        browser.cookie("portico_session").is_none(),
        "cookie cleared"
    );
    let signed_out = browser.open(&done.location().unwrap()).await;
    assert!(
        signed_out.body.contains("You are signed out"),
        "{}",
        signed_out.body
    );
    // The record is gone from the store: replaying the old cookie does not work.
    let replay = Browser::new();
    replay.set_cookie("portico_session", &session_cookie);
    assert_eq!(replay.get(&app.url("/x")).await.status, StatusCode::FOUND);
}

#[tokio::test]
async fn redis_outage_gets_a_quick_503_and_recovers_without_restart() {
    let mut redis = RedisServer::spawn();
    let app = TestApp::builder().redis_url(&redis.url(0)).build().await;
    let browser = Browser::new();
    app.sign_in(&browser, "/").await;
    redis.stop();
    let started = std::time::Instant::now();
    let page = browser.get(&app.url("/during-outage")).await;
    assert_eq!(
        page.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        page.body
    );
    assert!(
        page.body.contains("Temporarily unavailable"),
        "{}",
        page.body
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "no hang: {:?}",
        started.elapsed()
    );
    let ready = Browser::new().get(&app.url("/readyz")).await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(ready.json()["session_store"], false);

    redis.start();
    // Redis kept nothing (no persistence), so the old session is gone: a new login works.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let status = Browser::new().get(&app.url("/readyz")).await.status;
        if status == StatusCode::OK {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "Redis never came back"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let fresh = Browser::new();
    assert_eq!(app.sign_in(&fresh, "/").await.status, StatusCode::OK);
    assert_eq!(fresh.get(&app.url("/after")).await.status, StatusCode::OK);
}

#[tokio::test]
async fn health_and_readiness() {
    let app = TestApp::start().await;
    let health = Browser::new().get(&app.url("/healthz")).await;
    assert_eq!(health.status, StatusCode::OK);
    let ready = Browser::new().get(&app.url("/readyz")).await;
    assert_eq!(ready.status, StatusCode::OK);
    assert_eq!(ready.json()["ready"], true);
}
