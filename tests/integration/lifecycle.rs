//! Session lifecycle: refresh across replicas, provider-ended sessions,
//! RP-initiated logout, back-channel logout, sign-out everywhere, restarts.

use std::time::Duration;

use portico::devop::{LogoutDefect, LogoutTokenSpec, Misbehavior};
use reqwest::StatusCode;

use crate::support::{csrf_of, query_param, Browser, RedisServer, TestApp};

/// An app whose access tokens live two minutes and refresh in the last one.
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

#[tokio::test]
async fn tokens_are_refreshed_before_they_expire_and_the_session_goes_on() {
    let app = short_lived_tokens().await;
    let browser = Browser::new();
    app.sign_in(&browser, "/").await;
    assert_eq!(browser.get(&app.url("/early")).await.status, StatusCode::OK);
    assert_eq!(
        app.op.stats().refreshes,
        0,
        "no refresh while far from expiry"
    );
    for round in 1..=5 {
        app.advance(Duration::from_secs(61));
        assert_eq!(browser.get(&app.url("/later")).await.status, StatusCode::OK);
        assert_eq!(app.op.stats().refreshes, round);
    }
}

#[tokio::test]
async fn concurrent_requests_on_two_replicas_refresh_exactly_once_per_expiry() {
    let app = short_lived_tokens().await;
    let replica = app.replica().await;
    let browser = std::sync::Arc::new(Browser::new());
    app.sign_in(&browser, "/").await;
    // Ten expiries: over twenty minutes of traffic on the shared clock.
    for round in 1..=10u64 {
        app.advance(Duration::from_secs(121));
        let mut requests = Vec::new();
        for index in 0..8 {
            let url = if index % 2 == 0 {
                app.url("/a")
            } else {
                replica.url("/b")
            };
            let browser = browser.clone();
            requests.push(tokio::spawn(async move { browser.get(&url).await.status }));
        }
        for request in requests {
            assert_eq!(request.await.unwrap(), StatusCode::OK, "round {round}");
        }
        assert_eq!(
            app.op.stats().refreshes,
            round,
            "exactly one refresh in round {round}"
        );
    }
}

#[tokio::test]
async fn a_refused_refresh_ends_the_session_and_sends_the_browser_to_login() {
    let app = short_lived_tokens().await;
    let browser = Browser::new();
    app.sign_in(&browser, "/").await;
    app.op.revoke_refresh_tokens();
    app.advance(Duration::from_secs(61));
    let page = browser.get(&app.url("/kept/url?x=1")).await;
    assert_eq!(page.status, StatusCode::FOUND);
    assert!(page.location().unwrap().starts_with(&app.op.issuer()));
    let landing = browser.open(&page.location().unwrap()).await;
    assert_eq!(landing.json()["path"], "/kept/url");
}

#[tokio::test]
async fn a_refused_refresh_gives_api_clients_a_401() {
    let app = short_lived_tokens().await;
    let browser = Browser::new();
    app.sign_in(&browser, "/").await;
    app.op.revoke_refresh_tokens();
    app.advance(Duration::from_secs(61));
    let page = browser
        .get_with(&app.url("/api"), &[("Accept", "application/json")])
        .await;
    assert_eq!(page.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn provider_down_during_refresh_keeps_a_valid_token_then_answers_503() {
    let app = short_lived_tokens().await;
    let browser = Browser::new();
    app.sign_in(&browser, "/").await;
    app.op.set_misbehavior(Misbehavior::Unavailable);
    app.advance(Duration::from_secs(61));
    assert_eq!(browser.get(&app.url("/still")).await.status, StatusCode::OK);
    app.advance(Duration::from_secs(120));
    let page = browser.get(&app.url("/expired-token")).await;
    assert_eq!(
        page.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        page.body
    );
    app.op.set_misbehavior(Misbehavior::None);
    assert_eq!(
        browser.get(&app.url("/recovered")).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn backchannel_logout_by_sid_ends_that_session_on_every_replica() {
    let app = TestApp::start().await;
    let replica = app.replica().await;
    let first = Browser::new();
    app.sign_in(&first, "/").await;
    let first_sid = app.op.stats().last_sid.unwrap();
    let second = Browser::new();
    app.sign_in(&second, "/").await;
    assert_eq!(replica.op.stats().logins, 2);

    let token = app.op.logout_token(&LogoutTokenSpec {
        sid: Some(first_sid),
        ..Default::default()
    });
    let answer = app.backchannel_logout(&token).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert_eq!(
        first.get(&replica.url("/x")).await.status,
        StatusCode::FOUND
    );
    assert_eq!(first.get(&app.url("/x")).await.status, StatusCode::FOUND);
    assert_eq!(second.get(&replica.url("/x")).await.status, StatusCode::OK);
}

#[tokio::test]
async fn backchannel_logout_by_sub_ends_every_session_of_the_user() {
    let app = TestApp::start().await;
    let browsers = [Browser::new(), Browser::new()];
    for browser in &browsers {
        app.sign_in(browser, "/").await;
    }
    app.op.set_auto_approve(Some("bob".into()));
    let bob = Browser::new();
    app.sign_in(&bob, "/").await;
    let token = app.op.logout_token(&LogoutTokenSpec {
        sub: Some("alice".into()),
        ..Default::default()
    });
    assert_eq!(app.backchannel_logout(&token).await.status, StatusCode::OK);
    for browser in &browsers {
        assert_eq!(browser.get(&app.url("/x")).await.status, StatusCode::FOUND);
    }
    assert_eq!(bob.get(&app.url("/x")).await.status, StatusCode::OK);
}

#[tokio::test]
async fn malformed_logout_tokens_are_refused_and_end_nothing() {
    let app = TestApp::start().await;
    let browser = Browser::new();
    app.sign_in(&browser, "/").await;
    let sid = app.op.stats().last_sid.unwrap();
    for defect in [
        LogoutDefect::BadSignature,
        LogoutDefect::Unsigned,
        LogoutDefect::NoncePresent,
        LogoutDefect::EventsMissing,
        LogoutDefect::WrongEvent,
        LogoutDefect::WrongAudience,
        LogoutDefect::WrongIssuer,
        LogoutDefect::IssuedLongAgo,
        LogoutDefect::NoSubjectOrSession,
        LogoutDefect::NoJti,
    ] {
        let token = app.op.logout_token(&LogoutTokenSpec {
            sid: Some(sid.clone()),
            sub: Some("alice".into()),
            defect: Some(defect.clone()),
        });
        let answer = app.backchannel_logout(&token).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{defect:?}");
        assert_eq!(answer.json()["error"], "invalid_request", "{defect:?}");
        assert_eq!(
            browser.get(&app.url("/x")).await.status,
            StatusCode::OK,
            "{defect:?}"
        );
    }
    let missing = app.backchannel_logout("").await;
    assert_eq!(missing.status, StatusCode::BAD_REQUEST);
    let garbage = app.backchannel_logout("not.a.jwt").await;
    assert_eq!(garbage.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn a_replayed_logout_token_is_refused() {
    let app = TestApp::start().await;
    let token = app.op.logout_token(&LogoutTokenSpec {
        sub: Some("nobody".into()),
        ..Default::default()
    });
    assert_eq!(app.backchannel_logout(&token).await.status, StatusCode::OK);
    let replay = app.backchannel_logout(&token).await;
    assert_eq!(replay.status, StatusCode::BAD_REQUEST);
    assert!(replay.body.contains("already used"), "{}", replay.body);
}

#[tokio::test]
async fn sign_out_ends_the_provider_session_with_id_token_hint_and_returns_to_rd() {
    let app = TestApp::start().await;
    let browser = Browser::new();
    app.sign_in(&browser, "/").await;
    let csrf = csrf_of(&browser.get(&app.url("/oauth2/sign_out")).await.body);
    let answer = browser
        .post_form(
            &app.url("/oauth2/sign_out"),
            &[("csrf", &csrf), ("rd", "/goodbye?x=1")],
            &[("Origin", &app.base)],
        )
        .await;
    assert_eq!(answer.status, StatusCode::FOUND);
    let location = answer.location().unwrap();
    assert!(
        location.starts_with(&format!("{}/end_session?", app.op.issuer())),
        "{location}"
    );
    assert!(query_param(&location, "id_token_hint")
        .unwrap()
        .starts_with("eyJ"));
    assert_eq!(
        query_param(&location, "client_id").unwrap(),
        crate::support::CLIENT_ID
    );
    assert_eq!(
        query_param(&location, "post_logout_redirect_uri").unwrap(),
        app.url("/oauth2/signed_out")
    );
    assert!(browser.cookie("portico_session").is_none());
    let hops = browser.follow(&location).await;
    assert_eq!(app.op.stats().end_session_requests, 1);
    let back = hops
        .iter()
        .find(|hop| hop.url.starts_with(&app.url("/oauth2/signed_out")))
        .expect("the provider sends the browser back");
    assert_eq!(back.location().unwrap(), app.url("/goodbye?x=1"));
    // Signed out: the goodbye page is behind login again.
    assert!(
        hops.last().unwrap().url.starts_with(&app.op.issuer())
            || hops.last().unwrap().status == StatusCode::OK
    );
}

#[tokio::test]
async fn sign_out_rd_to_a_foreign_host_is_ignored() {
    let app = TestApp::start().await;
    let browser = Browser::new();
    app.sign_in(&browser, "/").await;
    let csrf = csrf_of(&browser.get(&app.url("/oauth2/sign_out")).await.body);
    let answer = browser
        .post_form(
            &app.url("/oauth2/sign_out"),
            &[("csrf", &csrf), ("rd", "https://evil.example/")],
            &[("Origin", &app.base)],
        )
        .await;
    let hops = browser.follow(&answer.location().unwrap()).await;
    let last = hops.last().unwrap();
    assert_eq!(last.status, StatusCode::OK);
    assert!(last.body.contains("You are signed out"), "{}", last.body);
}

#[tokio::test]
async fn sign_out_everywhere_ends_every_session_of_the_user() {
    let app = TestApp::start().await;
    let laptop = Browser::new();
    let phone = Browser::new();
    app.sign_in(&laptop, "/").await;
    app.sign_in(&phone, "/").await;
    let csrf = csrf_of(&laptop.get(&app.url("/oauth2/sign_out")).await.body);
    let answer = laptop
        .post_form(
            &app.url("/oauth2/sign_out?everywhere=1"),
            &[("csrf", &csrf)],
            &[("Origin", &app.base)],
        )
        .await;
    assert_eq!(answer.status, StatusCode::FOUND);
    assert_eq!(phone.get(&app.url("/x")).await.status, StatusCode::FOUND);
    assert_eq!(laptop.get(&app.url("/x")).await.status, StatusCode::FOUND);
}

#[tokio::test]
async fn sign_in_on_one_replica_works_on_the_other_and_survives_a_restart() {
    let redis = RedisServer::spawn();
    let app = TestApp::builder().redis_url(&redis.url(0)).build().await;
    let browser = Browser::new();
    app.sign_in(&browser, "/").await;
    let replica = app.replica().await;
    assert_eq!(
        browser.get(&replica.url("/on-b")).await.status,
        StatusCode::OK
    );
    app.stop();
    let restarted = replica.replica().await;
    replica.stop();
    let page = browser.get(&restarted.url("/after-restart")).await;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(page.json()["headers"]["x-forwarded-user"], "alice");
}
