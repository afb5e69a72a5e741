//! Tokens only for what they are, and key rotation that a junk kid cannot
//! hold up (issue 17, items 2 and 7): a real sign-in's ID token, taken from
//! the sign-out redirect as an attacker would, and a back-channel logout
//! token never open an API; a provider that rotates its keys right after a
//! client sent a junk kid still signs people in at once.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use portico::devop::{LogoutTokenSpec, MintKey};
use reqwest::StatusCode;
use serde_json::{json, Map, Value};

use crate::support::{csrf_of, query_param, Browser, Page, TestApp, CLIENT_ID};

const API: &str = "path_prefix = \"/api\"\nupstream = \"{upstream}\"\napi = true";
const PAGES: &str = "path_prefix = \"/\"\nupstream = \"{upstream}\"";

async fn bearer(app: &TestApp, path: &str, token: &str) -> Page {
    Browser::new()
        .get_with(
            &app.url(path),
            &[("Authorization", &format!("Bearer {token}"))],
        )
        .await
}

/// Asserts a 401 whose challenge says the token is not an access token.
fn assert_not_an_access_token(page: &Page, case: &str) {
    assert_eq!(
        page.status,
        StatusCode::UNAUTHORIZED,
        "{case}: {}",
        page.body
    );
    let challenge = page.header("www-authenticate").unwrap_or_default();
    assert!(
        challenge.contains("invalid_token") && challenge.contains("not an access token"),
        "{case}: {challenge}"
    );
}

/// Signs `browser` out of this device only; returns the ID token the
/// sign-out redirect hands to the provider in `id_token_hint`.
async fn sign_out_and_capture_id_token(app: &TestApp, browser: &Browser) -> String {
    let csrf = csrf_of(&browser.get(&app.url("/oauth2/sign_out")).await.body);
    let answer = browser
        .post_form(
            &app.url("/oauth2/sign_out"),
            &[("csrf", &csrf)],
            &[("Origin", &app.base)],
        )
        .await;
    assert_eq!(answer.status, StatusCode::FOUND);
    query_param(&answer.location().unwrap(), "id_token_hint").unwrap()
}

fn claims_of(token: &str) -> Map<String, Value> {
    let part = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[tokio::test]
async fn the_id_token_of_a_real_sign_in_is_refused_as_a_bearer_token_before_and_after_sign_out() {
    let app = TestApp::builder().route(PAGES).route(API).build().await;
    let laptop = Browser::new();
    let phone = Browser::new();
    app.sign_in(&laptop, "/").await;
    app.sign_in(&phone, "/").await;
    // The phone signs out; its ID token leaks through the redirect URL.
    let id_token = sign_out_and_capture_id_token(&app, &phone).await;
    let claims = claims_of(&id_token);
    assert_eq!(claims["aud"], CLIENT_ID, "a genuine ID token for portico");
    assert!(claims["exp"].as_u64().unwrap() > now() + 60, "still valid");
    assert!(claims.contains_key("nonce"));
    // alice is still signed in on the laptop: the token is refused anyway.
    assert_eq!(
        laptop.get(&app.url("/api/items")).await.status,
        StatusCode::OK
    );
    assert_not_an_access_token(&bearer(&app, "/api/items", &id_token).await, "live user");
    assert_not_an_access_token(&bearer(&app, "/", &id_token).await, "page route");
    // Signed out everywhere: still refused (and the old cookie gets 401 too).
    let csrf = csrf_of(&laptop.get(&app.url("/oauth2/sign_out")).await.body);
    laptop
        .post_form(
            &app.url("/oauth2/sign_out?everywhere=1"),
            &[("csrf", &csrf)],
            &[("Origin", &app.base)],
        )
        .await;
    assert_not_an_access_token(&bearer(&app, "/api/items", &id_token).await, "signed out");
    assert_eq!(
        bearer(&app, "/oauth2/userinfo", &id_token).await.status,
        StatusCode::UNAUTHORIZED
    );
    // While the provider's access tokens still work.
    let access = bearer(&app, "/api/items", &app.op.access_token("alice")).await;
    assert_eq!(access.status, StatusCode::OK, "{}", access.body);
}

#[tokio::test]
async fn a_back_channel_logout_token_is_refused_as_a_bearer_token() {
    let app = TestApp::builder().route(PAGES).route(API).build().await;
    let token = app.op.logout_token(&LogoutTokenSpec {
        sub: Some("alice".into()),
        ..Default::default()
    });
    assert_not_an_access_token(&bearer(&app, "/api/items", &token).await, "logout token");
    // The same token is still good for what it is.
    assert_eq!(app.backchannel_logout(&token).await.status, StatusCode::OK);
}

#[tokio::test]
async fn tokens_typed_or_shaped_as_other_kinds_are_refused_and_access_token_types_pass() {
    let app = TestApp::builder().route(PAGES).route(API).build().await;
    let base = json!({
        "iss": app.op.issuer(), "sub": "alice", "aud": CLIENT_ID,
        "iat": now(), "exp": now() + 300,
    });
    let with = |name: &str, value: Value| {
        let mut claims = base.as_object().unwrap().clone();
        claims.insert(name.into(), value);
        app.op.mint_jwt(&claims, MintKey::Current)
    };
    for (claim, value) in [
        ("nonce", json!("n")),
        ("at_hash", json!("h")),
        ("c_hash", json!("h")),
        (
            "events",
            json!({"http://schemas.openid.net/event/backchannel-logout": {}}),
        ),
    ] {
        assert_not_an_access_token(&bearer(&app, "/api/x", &with(claim, value)).await, claim);
    }
    // The dev OP's own access tokens say `typ: at+jwt` (RFC 9068).
    let access = app.op.access_token("alice");
    let header: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(access.split('.').next().unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(header["typ"], "at+jwt");
    assert_eq!(bearer(&app, "/api/x", &access).await.status, StatusCode::OK);
    let metrics = Browser::new().get(&app.url("/metrics")).await.body;
    assert!(
        metrics.contains("outcome=\"not_access_token\""),
        "{metrics}"
    );
}

#[tokio::test]
async fn bearer_audiences_keep_tokens_for_portico_itself_out_of_the_api() {
    let app = TestApp::builder()
        .config("oidc", "bearer_audiences = [\"https://api.example.test\"]")
        .route(PAGES)
        .route(API)
        .build()
        .await;
    let token = |audience: Value| {
        app.op.mint_jwt(
            json!({
                "iss": app.op.issuer(), "sub": "alice", "aud": audience,
                "azp": CLIENT_ID, "iat": now(), "exp": now() + 300,
            })
            .as_object()
            .unwrap(),
            MintKey::Current,
        )
    };
    // An ID token without nonce or hashes (as some providers issue on
    // refresh) looks like any JWT: only its audience tells it apart.
    let for_portico = bearer(&app, "/api/x", &token(json!(CLIENT_ID))).await;
    assert_eq!(for_portico.status, StatusCode::UNAUTHORIZED);
    assert!(
        for_portico
            .header("www-authenticate")
            .unwrap()
            .contains("wrong audience"),
        "{:?}",
        for_portico.header("www-authenticate")
    );
    // The provider's access tokens for portico's client are refused too.
    assert_eq!(
        bearer(&app, "/api/x", &app.op.access_token("alice"))
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    let for_api = bearer(&app, "/api/x", &token(json!("https://api.example.test"))).await;
    assert_eq!(for_api.status, StatusCode::OK, "{}", for_api.body);
    assert_eq!(for_api.json()["headers"]["x-forwarded-user"], "alice");
    let both = bearer(
        &app,
        "/api/x",
        &token(json!([CLIENT_ID, "https://api.example.test"])),
    )
    .await;
    assert_eq!(both.status, StatusCode::OK);
    // Browser sign-in is unaffected: ID tokens are still for portico.
    let browser = Browser::new();
    assert_eq!(app.sign_in(&browser, "/").await.status, StatusCode::OK);
}

/// A token whose header names `kid` and that no key verifies.
fn junk_kid_token(issuer: &str, kid: &str) -> String {
    let header = URL_SAFE_NO_PAD.encode(json!({"alg": "RS256", "kid": kid}).to_string());
    let claims = URL_SAFE_NO_PAD.encode(
        json!({"iss": issuer, "sub": "mallory", "aud": CLIENT_ID, "exp": now() + 300}).to_string(),
    );
    format!("{header}.{claims}.AAAA")
}

#[tokio::test]
async fn a_provider_that_rotates_right_after_a_junk_kid_still_signs_people_in_at_once() {
    let app = TestApp::start().await;
    assert_eq!(
        app.sign_in(&Browser::new(), "/").await.status,
        StatusCode::OK
    );
    let before = app.op.stats().jwks_requests;
    // A client's junk kid makes portico look once (and remember the kid)...
    let junk = bearer(&app, "/x", &junk_kid_token(&app.op.issuer(), "junk-1")).await;
    assert_eq!(junk.status, StatusCode::UNAUTHORIZED);
    assert_eq!(app.op.stats().jwks_requests, before + 1);
    // ...then the provider rotates: the next sign-in's ID token has a kid
    // portico has never seen. No sleep: it must succeed now.
    app.op.rotate_keys();
    let page = app.sign_in(&Browser::new(), "/").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert_eq!(page.json()["headers"]["x-forwarded-user"], "alice");
    assert_eq!(app.op.stats().jwks_requests, before + 2);
    // The rotated key now serves bearer tokens too, with no further fetch.
    let access = bearer(&app, "/x", &app.op.access_token("bob")).await;
    assert_eq!(access.status, StatusCode::OK, "{}", access.body);
    assert_eq!(app.op.stats().jwks_requests, before + 2);
}

#[tokio::test]
async fn junk_kids_in_bearer_tokens_cannot_force_a_jwks_fetch_per_request() {
    let app = TestApp::start().await;
    let before = app.op.stats().jwks_requests;
    let started = std::time::Instant::now();
    // One junk kid, repeated; then a burst of ever-new ones.
    for _ in 0..5 {
        let page = bearer(&app, "/x", &junk_kid_token(&app.op.issuer(), "same")).await;
        assert_eq!(page.status, StatusCode::UNAUTHORIZED);
    }
    for index in 0..20 {
        let kid = format!("new-{index}");
        let page = bearer(&app, "/x", &junk_kid_token(&app.op.issuer(), &kid)).await;
        assert_eq!(page.status, StatusCode::UNAUTHORIZED);
    }
    // At most one client-triggered fetch per second, however many kids.
    let fetched = app.op.stats().jwks_requests - before;
    let bound = 1 + started.elapsed().as_secs();
    assert!(
        fetched >= 1 && fetched <= bound,
        "{fetched} fetches, bound {bound}"
    );
}
