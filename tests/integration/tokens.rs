//! Every way an ID token can be wrong, served for real by the dev OP: each
//! must end with no session, an error page with a request id, and a log
//! line naming the reason (never the token).

use portico::devop::Misbehavior;
use reqwest::StatusCode;

use crate::support::{Browser, TestApp};

/// Signs in while the OP misbehaves; asserts the login was refused.
async fn assert_refused(app: &TestApp, misbehavior: Misbehavior) {
    app.op.set_misbehavior(misbehavior.clone());
    let browser = Browser::new();
    let page = browser.open(&app.url("/private")).await;
    assert_eq!(
        page.status,
        StatusCode::BAD_REQUEST,
        "{misbehavior:?}: {}",
        page.body
    );
    assert!(
        page.body.contains("Sign-in failed"),
        "{misbehavior:?}: {}",
        page.body
    );
    let request_id = page.header("x-request-id").unwrap();
    assert!(
        page.body.contains(&request_id),
        "{misbehavior:?}: page shows the request id"
    );
    assert!(
        browser.cookie("portico_session").is_none(),
        "{misbehavior:?}: no session"
    );
    // And the browser is still signed out: the next visit starts a new login.
    app.op.set_misbehavior(Misbehavior::None);
    let again = browser.get(&app.url("/private")).await;
    assert_eq!(again.status, StatusCode::FOUND, "{misbehavior:?}");
    assert!(again.location().unwrap().starts_with(&app.op.issuer()));
}

#[tokio::test]
async fn bad_signature_is_refused() {
    assert_refused(&TestApp::start().await, Misbehavior::BadSignature).await;
}

#[tokio::test]
async fn wrong_issuer_is_refused() {
    assert_refused(&TestApp::start().await, Misbehavior::WrongIssuer).await;
}

#[tokio::test]
async fn wrong_audience_is_refused() {
    assert_refused(&TestApp::start().await, Misbehavior::WrongAudience).await;
}

#[tokio::test]
async fn unlisted_extra_audience_is_refused() {
    assert_refused(
        &TestApp::start().await,
        Misbehavior::ExtraAudience("another-api".into()),
    )
    .await;
}

#[tokio::test]
async fn listed_extra_audience_is_accepted() {
    let app = TestApp::builder()
        .config("oidc", "extra_audiences = [\"another-api\"]")
        .build()
        .await;
    app.op
        .set_misbehavior(Misbehavior::ExtraAudience("another-api".into()));
    let page = app.sign_in(&Browser::new(), "/").await;
    assert_eq!(page.status, StatusCode::OK);
}

#[tokio::test]
async fn wrong_azp_is_refused() {
    assert_refused(&TestApp::start().await, Misbehavior::WrongAzp).await;
}

#[tokio::test]
async fn missing_azp_is_refused_when_required() {
    let app = TestApp::builder()
        .config("oidc", "require_azp = true")
        .build()
        .await;
    assert_refused(&app, Misbehavior::OmitAzp).await;
}

#[tokio::test]
async fn missing_azp_is_accepted_when_not_required() {
    let app = TestApp::start().await;
    app.op.set_misbehavior(Misbehavior::OmitAzp);
    assert_eq!(
        app.sign_in(&Browser::new(), "/").await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn expired_token_is_refused() {
    assert_refused(&TestApp::start().await, Misbehavior::Expired).await;
}

#[tokio::test]
async fn token_issued_in_the_future_is_refused() {
    assert_refused(&TestApp::start().await, Misbehavior::IssuedInFuture).await;
}

#[tokio::test]
async fn wrong_nonce_is_refused() {
    assert_refused(&TestApp::start().await, Misbehavior::WrongNonce).await;
}

#[tokio::test]
async fn missing_nonce_is_refused() {
    assert_refused(&TestApp::start().await, Misbehavior::OmitNonce).await;
}

#[tokio::test]
async fn unsigned_alg_none_token_is_refused() {
    assert_refused(&TestApp::start().await, Misbehavior::AlgNone).await;
}

#[tokio::test]
async fn hmac_signed_with_the_client_secret_is_refused() {
    assert_refused(&TestApp::start().await, Misbehavior::HmacWithClientSecret).await;
}

#[tokio::test]
async fn token_with_an_unknown_kid_is_refused_after_one_jwks_refetch() {
    let app = TestApp::start().await;
    let fetches_before = app.op.stats().jwks_requests;
    assert_refused(&app, Misbehavior::UnknownKid).await;
    assert_eq!(app.op.stats().jwks_requests, fetches_before + 1);
}

/// The token endpoint's answer is the provider speaking (authenticated,
/// over its own connection): an unknown kid there means a rotation, so it
/// is looked for on every sign-in, never held back by a rate limit (issue
/// 17 item 7). Clients' junk kids are limited instead (token_kinds.rs).
#[tokio::test]
async fn an_unknown_kid_in_the_providers_answer_is_looked_for_on_every_sign_in() {
    let app = TestApp::start().await;
    let fetches_before = app.op.stats().jwks_requests;
    app.op.set_misbehavior(Misbehavior::UnknownKid);
    for _ in 0..3 {
        let page = Browser::new().open(&app.url("/")).await;
        assert_eq!(page.status, StatusCode::BAD_REQUEST);
    }
    assert_eq!(app.op.stats().jwks_requests, fetches_before + 3);
}

#[tokio::test]
async fn key_rotation_at_the_provider_needs_no_restart() {
    let app = TestApp::start().await;
    assert_eq!(
        app.sign_in(&Browser::new(), "/").await.status,
        StatusCode::OK
    );
    app.op.rotate_keys();
    let page = app.sign_in(&Browser::new(), "/").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert_eq!(page.json()["headers"]["x-forwarded-user"], "alice");
}

#[tokio::test]
async fn discovery_with_a_different_issuer_never_becomes_ready() {
    let op = portico::devop::DevOp::start(Default::default())
        .await
        .unwrap();
    op.set_misbehavior(Misbehavior::DiscoveryWrongIssuer);
    let app = TestApp::builder()
        .with_op(op)
        .without_waiting_for_ready()
        .build()
        .await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let ready = Browser::new().get(&app.url("/readyz")).await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(ready.json()["provider_metadata"], false);
    let page = Browser::new().get(&app.url("/anything")).await;
    assert_eq!(page.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(page.body.contains("Sign-in unavailable"), "{}", page.body);
}

#[tokio::test]
async fn portico_starts_while_the_provider_is_down_and_recovers_when_it_returns() {
    let op = portico::devop::DevOp::start(Default::default())
        .await
        .unwrap();
    op.set_misbehavior(Misbehavior::Unavailable);
    let app = TestApp::builder()
        .with_op(op)
        .without_waiting_for_ready()
        .build()
        .await;
    let ready = Browser::new().get(&app.url("/readyz")).await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    app.op.set_misbehavior(Misbehavior::None);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        if Browser::new().get(&app.url("/readyz")).await.status == StatusCode::OK {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never became ready");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(
        app.sign_in(&Browser::new(), "/").await.status,
        StatusCode::OK
    );
}
