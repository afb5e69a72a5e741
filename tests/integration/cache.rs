//! The local session cache: no Redis round trip for a cached session, and
//! revocation on one replica is seen by every other on its next request.

use portico::devop::LogoutTokenSpec;
use reqwest::StatusCode;

use crate::support::{csrf_of, Browser, RedisServer, TestApp};

async fn cached_pair(redis: &RedisServer) -> (TestApp, TestApp) {
    let app = TestApp::builder()
        .redis_url(&redis.url(0))
        .config("session", "local_cache = true")
        .build()
        .await;
    let replica = app.replica().await;
    (app, replica)
}

#[tokio::test]
async fn cached_sessions_need_no_redis_round_trip() {
    let redis = RedisServer::spawn();
    let (app, _replica) = cached_pair(&redis).await;
    let browser = Browser::new();
    app.sign_in(&browser, "/").await;
    assert_eq!(browser.get(&app.url("/warm")).await.status, StatusCode::OK);
    redis.reset_stats();
    for _ in 0..20 {
        assert_eq!(browser.get(&app.url("/hot")).await.status, StatusCode::OK);
    }
    assert_eq!(redis.data_commands(), 0, "{}", redis.commands_by_name());
}

#[tokio::test]
async fn sign_out_on_one_replica_is_seen_by_the_other_on_its_next_request() {
    let redis = RedisServer::spawn();
    let (app, replica) = cached_pair(&redis).await;
    let browser = Browser::new();
    app.sign_in(&browser, "/").await;
    // Both replicas now hold the session in their caches.
    assert_eq!(browser.get(&app.url("/a")).await.status, StatusCode::OK);
    assert_eq!(browser.get(&replica.url("/b")).await.status, StatusCode::OK);
    let cookie = browser.cookie("portico_session").unwrap();
    let csrf = csrf_of(&browser.get(&app.url("/oauth2/sign_out")).await.body);
    let done = browser
        .post_form(
            &app.url("/oauth2/sign_out"),
            &[("csrf", &csrf)],
            &[("Origin", &app.base)],
        )
        .await;
    assert_eq!(done.status, StatusCode::FOUND);
    // The same cookie, replayed at the other replica right away.
    let replay = Browser::new();
    replay.set_cookie("portico_session", &cookie);
    assert_eq!(
        replay.get(&replica.url("/after")).await.status,
        StatusCode::FOUND
    );
}

#[tokio::test]
async fn backchannel_logout_on_one_replica_clears_every_cache() {
    let redis = RedisServer::spawn();
    let (app, replica) = cached_pair(&redis).await;
    let browser = Browser::new();
    app.sign_in(&browser, "/").await;
    let sid = app.op.stats().last_sid.unwrap();
    assert_eq!(
        browser.get(&replica.url("/cached")).await.status,
        StatusCode::OK
    );
    let token = app.op.logout_token(&LogoutTokenSpec {
        sid: Some(sid),
        ..Default::default()
    });
    let answer = app.backchannel_logout(&token).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(
        browser.get(&replica.url("/next")).await.status,
        StatusCode::FOUND
    );
}

#[tokio::test]
async fn a_cached_session_is_not_reached_with_an_altered_cookie() {
    let redis = RedisServer::spawn();
    let (app, _replica) = cached_pair(&redis).await;
    let browser = Browser::new();
    app.sign_in(&browser, "/").await;
    // The cookie's value is now remembered as opening to this session.
    assert_eq!(browser.get(&app.url("/warm")).await.status, StatusCode::OK);
    let cookie = browser.cookie("portico_session").unwrap();
    let mut altered = cookie.clone().into_bytes();
    let last = altered.len() - 2;
    altered[last] = if altered[last] == b'A' { b'B' } else { b'A' };
    let forged = Browser::new();
    forged.set_cookie("portico_session", &String::from_utf8(altered).unwrap());
    assert_eq!(
        forged.get(&app.url("/forged")).await.status,
        StatusCode::FOUND,
        "an altered cookie must start a sign-in, not reach the cached session"
    );
    let genuine = Browser::new();
    genuine.set_cookie("portico_session", &cookie);
    assert_eq!(genuine.get(&app.url("/again")).await.status, StatusCode::OK);
}
