//! Claims where providers put them (issue 20): userinfo at sign-in and at
//! refresh, checked as the OpenID RP certification asks, against the dev OP
//! in its "claims at userinfo" mode (the ID token carries only `sub` and the
//! protocol claims, as conforming providers do for the code flow, OpenID
//! Connect Core 1.0 §5.4) and misbehaving on demand.

use std::sync::Arc;
use std::time::Duration;

use portico::devop::{DevOp, DevOpOptions, DevUser, Misbehavior};
use reqwest::StatusCode;
use serde_json::json;

use crate::support::{Browser, TestApp};

/// "/" open to any signed-in user, "/admin" to admins, "/finance" to the
/// finance department (a claim served only at userinfo).
fn routes(builder: crate::support::app::TestAppBuilder) -> crate::support::app::TestAppBuilder {
    builder
        .route("path_prefix = \"/\"\nupstream = \"{upstream}\"")
        .route("path_prefix = \"/admin\"\nupstream = \"{upstream}\"\nrequire_roles = [\"admin\"]")
        .route(
            "path_prefix = \"/finance\"\nupstream = \"{upstream}\"\n\
             require_claims = { department = [\"finance\"] }",
        )
}

fn alice() -> DevUser {
    let mut alice = DevUser::new("alice").with_roles(&["admin"]);
    alice
        .extra_claims
        .insert("department".into(), json!("finance"));
    alice
}

fn claims_at_userinfo(options: &mut DevOpOptions) {
    options.claims_at_userinfo = true;
    options.users = vec![alice(), DevUser::new("bob")];
}

/// The reason a failed sign-in was counted under (the same as its log line's).
async fn login_failures(app: &TestApp, reason: &str) -> u64 {
    let text = Browser::new().get(&app.url("/metrics")).await.body;
    let prefix = format!("portico_logins_failed_total{{reason=\"{reason}\"}} ");
    text.lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .map_or(0, |count| count.trim().parse().unwrap())
}

/// Signs in while the OP misbehaves; asserts no session, the page, the reason.
async fn assert_sign_in_refused(app: &TestApp, status: StatusCode, title: &str, reason: &str) {
    let browser = Browser::new();
    let page = browser.open(&app.url("/private")).await;
    assert_eq!(page.status, status, "{reason}: {}", page.body);
    assert!(page.body.contains(title), "{reason}: {}", page.body);
    let request_id = page.header("x-request-id").unwrap();
    assert!(
        page.body.contains(&request_id),
        "{reason}: the page shows the request id"
    );
    assert!(
        browser.cookie("portico_session").is_none(),
        "{reason}: no session"
    );
    assert_eq!(
        login_failures(app, reason).await,
        1,
        "{reason}: counted and logged under its own reason"
    );
}

#[tokio::test]
async fn claims_served_only_at_userinfo_reach_headers_and_rules() {
    let app = routes(TestApp::builder().op_options(claims_at_userinfo))
        .build()
        .await;
    let browser = Browser::new();
    let page = app.sign_in(&browser, "/hello").await;
    assert_eq!(page.status, StatusCode::OK);
    let headers = &page.json()["headers"];
    assert_eq!(headers["x-forwarded-user"], "alice");
    assert_eq!(headers["x-forwarded-email"], "alice@example.test");
    assert_eq!(headers["x-forwarded-groups"], "admin");
    assert_eq!(headers["x-forwarded-preferred-username"], "alice");
    assert_eq!(browser.get(&app.url("/admin")).await.status, StatusCode::OK);
    assert_eq!(
        browser.get(&app.url("/finance/q3")).await.status,
        StatusCode::OK
    );
    assert_eq!(
        app.op.stats().userinfo_requests,
        1,
        "one userinfo call per sign-in"
    );

    app.op.set_auto_approve(Some("bob".into()));
    let bob = Browser::new();
    app.sign_in(&bob, "/").await;
    assert_eq!(
        bob.get(&app.url("/admin")).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        bob.get(&app.url("/finance")).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(app.op.stats().userinfo_requests, 2);
}

#[tokio::test]
async fn auto_mode_costs_no_userinfo_call_when_the_id_token_has_every_claim() {
    let app = TestApp::builder()
        .op_options(|options| {
            options.access_token_ttl = Duration::from_secs(120);
            options.id_token_ttl = Duration::from_secs(120);
        })
        .config("session", "refresh_before = \"60s\"")
        .build()
        .await;
    let browser = Browser::new();
    let page = app.sign_in(&browser, "/").await;
    assert_eq!(
        page.json()["headers"]["x-forwarded-email"],
        "alice@example.test"
    );
    app.advance(Duration::from_secs(61));
    assert_eq!(browser.get(&app.url("/later")).await.status, StatusCode::OK);
    assert_eq!(app.op.stats().refreshes, 1);
    assert_eq!(
        app.op.stats().userinfo_requests,
        0,
        "neither at sign-in nor at refresh"
    );
}

#[tokio::test]
async fn always_mode_asks_userinfo_even_when_the_id_token_has_every_claim() {
    let app = TestApp::builder()
        .config("oidc", "userinfo = \"always\"")
        .build()
        .await;
    app.sign_in(&Browser::new(), "/").await;
    assert_eq!(app.op.stats().userinfo_requests, 1);
}

#[tokio::test]
async fn never_mode_keeps_to_the_id_token() {
    let app = routes(TestApp::builder().op_options(claims_at_userinfo))
        .config("oidc", "userinfo = \"never\"")
        .build()
        .await;
    let browser = Browser::new();
    let page = app.sign_in(&browser, "/").await;
    let headers = &page.json()["headers"];
    assert_eq!(headers["x-forwarded-user"], "alice");
    assert!(headers.get("x-forwarded-email").is_none(), "{headers}");
    assert_eq!(
        browser.get(&app.url("/admin")).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(app.op.stats().userinfo_requests, 0);
}

#[tokio::test]
async fn a_userinfo_answer_about_another_subject_refuses_the_sign_in() {
    // RP certification rp-userinfo-bad-sub-claim; Core §5.3.2.
    let app = TestApp::builder()
        .op_options(claims_at_userinfo)
        .build()
        .await;
    app.op.set_misbehavior(Misbehavior::UserinfoWrongSub);
    assert_sign_in_refused(
        &app,
        StatusCode::BAD_REQUEST,
        "Sign-in failed",
        "userinfo_sub_mismatch",
    )
    .await;
}

#[tokio::test]
async fn a_signed_userinfo_answer_is_verified_and_used() {
    let app = routes(TestApp::builder().op_options(|options| {
        claims_at_userinfo(options);
        options.signed_userinfo = true;
    }))
    .build()
    .await;
    let browser = Browser::new();
    let page = app.sign_in(&browser, "/").await;
    assert_eq!(
        page.json()["headers"]["x-forwarded-email"],
        "alice@example.test"
    );
    assert_eq!(browser.get(&app.url("/admin")).await.status, StatusCode::OK);
    assert_eq!(app.op.stats().userinfo_requests, 1);
}

#[tokio::test]
async fn a_signed_userinfo_answer_for_another_client_is_refused() {
    let app = TestApp::builder()
        .op_options(claims_at_userinfo)
        .build()
        .await;
    app.op.set_misbehavior(Misbehavior::UserinfoWrongAudience);
    assert_sign_in_refused(
        &app,
        StatusCode::BAD_REQUEST,
        "Sign-in failed",
        "userinfo_wrong_aud",
    )
    .await;
}

#[tokio::test]
async fn userinfo_down_at_sign_in_says_the_provider_is_unreachable() {
    let app = TestApp::builder()
        .op_options(claims_at_userinfo)
        .build()
        .await;
    app.op.set_misbehavior(Misbehavior::UserinfoUnavailable);
    assert_sign_in_refused(
        &app,
        StatusCode::BAD_GATEWAY,
        "Identity provider unreachable",
        "userinfo_unreachable",
    )
    .await;
}

/// Claims at userinfo, access tokens for two minutes, refreshed in the last one.
async fn short_lived_claims_at_userinfo() -> TestApp {
    routes(TestApp::builder().op_options(|options| {
        claims_at_userinfo(options);
        options.access_token_ttl = Duration::from_secs(120);
        options.id_token_ttl = Duration::from_secs(120);
    }))
    .config("session", "refresh_before = \"60s\"")
    .build()
    .await
}

#[tokio::test]
async fn a_role_removed_at_the_provider_disappears_after_the_next_refresh() {
    let app = short_lived_claims_at_userinfo().await;
    let browser = Browser::new();
    app.sign_in(&browser, "/").await;
    assert_eq!(browser.get(&app.url("/admin")).await.status, StatusCode::OK);

    app.op.set_user(DevUser::new("alice"));
    assert_eq!(
        browser.get(&app.url("/admin")).await.status,
        StatusCode::OK,
        "until the access token is refreshed, the session keeps what it was given"
    );
    app.advance(Duration::from_secs(61));
    assert_eq!(
        browser.get(&app.url("/admin")).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(app.op.stats().refreshes, 1);
    assert_eq!(
        app.op.stats().userinfo_requests,
        2,
        "sign-in, then the refresh"
    );
    let page = browser.get(&app.url("/")).await;
    assert!(page.json()["headers"].get("x-forwarded-groups").is_none());

    app.op.set_user(alice());
    app.advance(Duration::from_secs(61));
    assert_eq!(
        browser.get(&app.url("/admin")).await.status,
        StatusCode::OK,
        "and a granted one appears"
    );
}

#[tokio::test]
async fn a_refresh_without_an_id_token_asks_userinfo_as_the_sign_in_did() {
    // Core §12.2: a refresh response may carry no ID token; the claims the
    // sign-in's ID token lacked are fetched again all the same.
    let app = short_lived_claims_at_userinfo().await;
    let browser = Browser::new();
    app.sign_in(&browser, "/").await;
    app.op.set_misbehavior(Misbehavior::RefreshWithoutIdToken);
    app.op.set_user(DevUser::new("alice"));
    app.advance(Duration::from_secs(61));
    assert_eq!(
        browser.get(&app.url("/admin")).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(app.op.stats().refreshes, 1);
    assert_eq!(app.op.stats().userinfo_requests, 2);
    let page = browser.get(&app.url("/")).await;
    assert_eq!(page.json()["headers"]["x-forwarded-user"], "alice");
    assert_eq!(
        page.json()["headers"]["x-forwarded-email"],
        "alice@example.test"
    );
}

#[tokio::test]
async fn a_refresh_without_an_id_token_asks_nothing_when_the_sign_in_had_every_claim() {
    let app = TestApp::builder()
        .op_options(|options| {
            options.access_token_ttl = Duration::from_secs(120);
            options.id_token_ttl = Duration::from_secs(120);
        })
        .config("session", "refresh_before = \"60s\"")
        .build()
        .await;
    let browser = Browser::new();
    app.sign_in(&browser, "/").await;
    app.op.set_misbehavior(Misbehavior::RefreshWithoutIdToken);
    app.advance(Duration::from_secs(61));
    let page = browser.get(&app.url("/")).await;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(page.json()["headers"]["x-forwarded-groups"], "admin");
    assert_eq!(app.op.stats().refreshes, 1);
    assert_eq!(app.op.stats().userinfo_requests, 0);
}

#[tokio::test]
async fn refresh_asks_userinfo_once_per_refresh_across_replicas() {
    let app = short_lived_claims_at_userinfo().await;
    let replica = app.replica().await;
    let browser = Arc::new(Browser::new());
    app.sign_in(&browser, "/").await;
    assert_eq!(app.op.stats().userinfo_requests, 1);
    for round in 1..=5u64 {
        app.advance(Duration::from_secs(121));
        let mut requests = Vec::new();
        for index in 0..8 {
            let url = if index % 2 == 0 {
                app.url("/admin/a")
            } else {
                replica.url("/admin/b")
            };
            let browser = browser.clone();
            requests.push(tokio::spawn(async move { browser.get(&url).await.status }));
        }
        for request in requests {
            assert_eq!(request.await.unwrap(), StatusCode::OK, "round {round}");
        }
        assert_eq!(app.op.stats().refreshes, round, "round {round}");
        assert_eq!(
            app.op.stats().userinfo_requests,
            1 + round,
            "exactly one userinfo call in round {round}"
        );
    }
}

#[tokio::test]
async fn a_refresh_whose_userinfo_names_another_subject_ends_the_session() {
    let app = short_lived_claims_at_userinfo().await;
    let browser = Browser::new();
    app.sign_in(&browser, "/").await;
    app.op.set_misbehavior(Misbehavior::UserinfoWrongSub);
    app.advance(Duration::from_secs(61));
    let page = browser
        .get_with(&app.url("/api"), &[("Accept", "application/json")])
        .await;
    assert_eq!(page.status, StatusCode::UNAUTHORIZED, "{}", page.body);
}

#[tokio::test]
async fn userinfo_down_at_refresh_keeps_the_session_and_its_claims() {
    let app = short_lived_claims_at_userinfo().await;
    let browser = Browser::new();
    app.sign_in(&browser, "/").await;
    app.op.set_misbehavior(Misbehavior::UserinfoUnavailable);
    app.advance(Duration::from_secs(61));
    assert_eq!(browser.get(&app.url("/admin")).await.status, StatusCode::OK);
    assert_eq!(app.op.stats().refreshes, 1);
    app.op.set_misbehavior(Misbehavior::None);
    app.op.set_user(DevUser::new("alice"));
    app.advance(Duration::from_secs(121));
    assert_eq!(
        browser.get(&app.url("/admin")).await.status,
        StatusCode::FORBIDDEN,
        "the next refresh asks again"
    );
}

// The rest of the Basic RP certification cases for ID tokens.

#[tokio::test]
async fn an_id_token_without_kid_is_accepted_when_the_jwks_has_one_key() {
    // rp-id_token-kid-absent-single-jwks
    let app = TestApp::start().await;
    app.op.set_misbehavior(Misbehavior::OmitKid);
    let page = app.sign_in(&Browser::new(), "/").await;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(page.json()["headers"]["x-forwarded-user"], "alice");
}

#[tokio::test]
async fn an_id_token_without_kid_is_refused_when_several_keys_could_have_signed_it() {
    // rp-id_token-kid-absent-multiple-jwks: portico refuses (Core §10.1
    // requires a kid when the JWK Set holds several keys).
    let op = DevOp::start(DevOpOptions::default()).await.unwrap();
    op.set_misbehavior(Misbehavior::OmitKidAmongSeveralKeys);
    let app = TestApp::builder().with_op(op).build().await;
    assert_sign_in_refused(
        &app,
        StatusCode::BAD_REQUEST,
        "Sign-in failed",
        "kid_absent_ambiguous",
    )
    .await;
}

#[tokio::test]
async fn an_id_token_without_sub_is_refused() {
    // rp-id_token-sub
    let app = TestApp::start().await;
    app.op.set_misbehavior(Misbehavior::OmitSub);
    assert_sign_in_refused(&app, StatusCode::BAD_REQUEST, "Sign-in failed", "malformed").await;
}

#[tokio::test]
async fn an_id_token_without_iat_is_refused() {
    // rp-id_token-iat
    let app = TestApp::start().await;
    app.op.set_misbehavior(Misbehavior::OmitIat);
    assert_sign_in_refused(&app, StatusCode::BAD_REQUEST, "Sign-in failed", "malformed").await;
}
