//! Route rules, bearer JWTs from machine clients, forward-auth through a
//! real nginx, and userinfo.

use std::time::Duration;

use portico::devop::{DevOp, DevUser, MintKey};
use reqwest::StatusCode;
use serde_json::{json, Map, Value};

use crate::support::nginx::Nginx;
use crate::support::{Browser, TestApp, CLIENT_ID};

/// carol: Descope-shaped claims for the rules.
fn carol() -> DevUser {
    let mut carol = DevUser::new("carol").with_roles(&["editor", "viewer"]);
    carol.email = "carol@corp.example".into();
    let extra = json!({
        "permissions": ["docs.read", "docs.write"],
        "tenants": {"T1": {"roles": ["tenant-admin"]}, "T2": {"roles": ["member"]}},
        "org": {"team": "blue"},
    });
    carol.extra_claims = extra.as_object().unwrap().clone();
    carol
}

async fn app_with_rule(rule: &str) -> TestApp {
    let app = TestApp::builder()
        .route("path_prefix = \"/\"\nupstream = \"{upstream}\"")
        .route(&format!(
            "path_prefix = \"/guarded\"\nupstream = \"{{upstream}}\"\n{rule}"
        ))
        .auto_approve(Some("carol"))
        .build()
        .await;
    app.op.set_user(carol());
    app
}

async fn status_for_carol(rule: &str) -> StatusCode {
    let app = app_with_rule(rule).await;
    let browser = Browser::new();
    app.sign_in(&browser, "/").await;
    browser.get(&app.url("/guarded/page")).await.status
}

#[tokio::test]
async fn each_rule_kind_admits_and_refuses() {
    let cases: &[(&str, StatusCode)] = &[
        ("require_roles = [\"admin\", \"editor\"]", StatusCode::OK),
        ("require_roles = [\"admin\"]", StatusCode::FORBIDDEN),
        (
            "require_all_roles = [\"editor\", \"viewer\"]",
            StatusCode::OK,
        ),
        (
            "require_all_roles = [\"editor\", \"admin\"]",
            StatusCode::FORBIDDEN,
        ),
        ("require_permissions = [\"docs.read\"]", StatusCode::OK),
        (
            "require_permissions = [\"docs.read\", \"docs.delete\"]",
            StatusCode::FORBIDDEN,
        ),
        (
            "require_tenant_roles = { tenant = \"T1\", roles = [\"tenant-admin\"] }",
            StatusCode::OK,
        ),
        (
            "require_tenant_roles = { tenant = \"T2\", roles = [\"tenant-admin\"] }",
            StatusCode::FORBIDDEN,
        ),
        ("allowed_emails = [\"carol@corp.example\"]", StatusCode::OK),
        (
            "allowed_emails = [\"dave@corp.example\"]",
            StatusCode::FORBIDDEN,
        ),
        ("allowed_email_domains = [\"corp.example\"]", StatusCode::OK),
        (
            "allowed_email_domains = [\"rp.example\"]",
            StatusCode::FORBIDDEN,
        ),
        (
            "require_claims = { \"org.team\" = [\"blue\", \"red\"] }",
            StatusCode::OK,
        ),
        (
            "require_claims = { \"org.team\" = [\"red\"] }",
            StatusCode::FORBIDDEN,
        ),
    ];
    for (rule, expected) in cases {
        assert_eq!(status_for_carol(rule).await, *expected, "{rule}");
    }
}

#[tokio::test]
async fn a_rule_that_can_never_pass_is_a_config_error() {
    let text = |rule: &str| {
        format!(
            "[server]\npublic_url = \"http://127.0.0.1:1\"\n[oidc]\nissuer = \"http://127.0.0.1:2\"\nclient_id = \"c\"\n\
             [session]\ncookie_secret = \"{}\"\n[[routes]]\nupstream = \"http://127.0.0.1:3\"\n{rule}\n",
            crate::support::app::COOKIE_SECRET
        )
    };
    for (rule, key) in [
        ("require_permissions = []", "routes[0].require_permissions"),
        (
            "require_tenant_roles = { tenant = \"\", roles = [\"a\"] }",
            "routes[0].require_tenant_roles.tenant",
        ),
        (
            "allowed_email_domains = [\"@corp.example\"]",
            "routes[0].allowed_email_domains[0]",
        ),
        ("require_claims = {}", "routes[0].require_claims"),
        ("require_amr = []", "routes[0].require_amr"),
        ("require_permision = [\"x\"]", "routes[0].require_permision"),
    ] {
        let errors = portico::config::parse(&text(rule), &Default::default()).unwrap_err();
        assert!(errors.to_string().contains(key), "{rule}: {errors}");
    }
}

#[tokio::test]
async fn missing_amr_sends_an_older_session_to_sign_in_again_with_prompt_login() {
    let app = TestApp::builder()
        .route("path_prefix = \"/\"\nupstream = \"{upstream}\"")
        .route("path_prefix = \"/vault\"\nupstream = \"{upstream}\"\nrequire_amr = [\"webauthn\"]\nlogin_params = { flow = \"passkey-only\" }")
        .build()
        .await;
    let browser = Browser::new();
    app.sign_in(&browser, "/").await;
    // A brand-new session without a passkey is refused (no login loop).
    assert_eq!(
        browser.get(&app.url("/vault/x")).await.status,
        StatusCode::FORBIDDEN
    );
    // Later, the same user is asked to sign in again, with the route's flow.
    app.advance(Duration::from_secs(120));
    let step_up = browser.get(&app.url("/vault/x")).await;
    assert_eq!(step_up.status, StatusCode::FOUND);
    let location = step_up.location().unwrap();
    assert!(location.contains("prompt=login"), "{location}");
    assert!(location.contains("flow=passkey-only"), "{location}");
    // This time the user signs in with a passkey.
    let mut alice = DevUser::new("alice").with_roles(&["admin"]);
    alice.extra_claims.insert("amr".into(), json!(["webauthn"]));
    app.op.set_user(alice);
    let landing = browser.open(&location).await;
    assert_eq!(landing.status, StatusCode::OK);
    assert_eq!(landing.json()["path"], "/vault/x");
}

fn claims(value: Value) -> Map<String, Value> {
    value.as_object().unwrap().clone()
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

async fn bearer(app: &TestApp, path: &str, token: &str) -> crate::support::Page {
    Browser::new()
        .get_with(
            &app.url(path),
            &[("Authorization", &format!("Bearer {token}"))],
        )
        .await
}

#[tokio::test]
async fn a_valid_bearer_token_reaches_the_upstream_with_its_identity() {
    let app = TestApp::builder()
        .route("path_prefix = \"/\"\nupstream = \"{upstream}\"")
        .route("path_prefix = \"/api\"\nupstream = \"{upstream}\"\napi = true\nrequire_roles = [\"admin\"]")
        .build()
        .await;
    let token = app.op.access_token("alice");
    let page = bearer(&app, "/api/items", &token).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert_eq!(page.json()["headers"]["x-forwarded-user"], "alice");
    assert_eq!(page.json()["headers"]["x-forwarded-groups"], "admin");
    // Same rules as for sessions: bob has no admin role.
    let bob = app.op.access_token("bob");
    assert_eq!(
        bearer(&app, "/api/items", &bob).await.status,
        StatusCode::FORBIDDEN
    );
}

#[tokio::test]
async fn every_bad_bearer_token_is_a_401_with_an_invalid_token_challenge() {
    let app = TestApp::start().await;
    let issuer = app.op.issuer();
    let good = |change: &dyn Fn(&mut Map<String, Value>)| {
        let mut claims = claims(json!({
            "iss": issuer, "sub": "alice", "aud": CLIENT_ID,
            "iat": now(), "exp": now() + 300,
        }));
        change(&mut claims);
        claims
    };
    let cases: Vec<(&str, String)> = vec![
        (
            "expired",
            app.op.mint_jwt(
                &good(&|c| {
                    c.insert("exp".into(), json!(now() - 600));
                }),
                MintKey::Current,
            ),
        ),
        (
            "not yet valid",
            app.op.mint_jwt(
                &good(&|c| {
                    c.insert("nbf".into(), json!(now() + 600));
                }),
                MintKey::Current,
            ),
        ),
        (
            "wrong iss",
            app.op.mint_jwt(
                &good(&|c| {
                    c.insert("iss".into(), json!("https://evil.example"));
                }),
                MintKey::Current,
            ),
        ),
        (
            "wrong aud",
            app.op.mint_jwt(
                &good(&|c| {
                    c.insert("aud".into(), json!("other-api"));
                }),
                MintKey::Current,
            ),
        ),
        (
            "bad signature",
            app.op.mint_jwt(&good(&|_| {}), MintKey::CorruptedSignature),
        ),
        (
            "alg none",
            app.op.mint_jwt(&good(&|_| {}), MintKey::Unsigned),
        ),
        (
            "hmac with the client secret",
            app.op.mint_jwt(&good(&|_| {}), MintKey::ClientSecretHmac),
        ),
        (
            "unknown kid",
            app.op.mint_jwt(&good(&|_| {}), MintKey::UnknownKid),
        ),
        ("garbage", "not-a-jwt".to_string()),
    ];
    for (case, token) in cases {
        // A browser-looking request: a bad token must still not become a redirect.
        let page = Browser::new()
            .get_with(
                &app.url("/page"),
                &[
                    ("Authorization", &format!("Bearer {token}")),
                    ("Accept", "text/html"),
                ],
            )
            .await;
        assert_eq!(
            page.status,
            StatusCode::UNAUTHORIZED,
            "{case}: {}",
            page.body
        );
        let challenge = page.header("www-authenticate").unwrap();
        assert!(challenge.starts_with("Bearer "), "{case}: {challenge}");
        assert!(
            challenge.contains("error=\"invalid_token\""),
            "{case}: {challenge}"
        );
        assert!(
            challenge.contains("error_description=\""),
            "{case}: {challenge}"
        );
    }
    let valid = app.op.mint_jwt(&good(&|_| {}), MintKey::Current);
    assert_eq!(bearer(&app, "/page", &valid).await.status, StatusCode::OK);
    // Each outcome is counted by its reason.
    let metrics = Browser::new().get(&app.url("/metrics")).await.body;
    for outcome in [
        "accepted",
        "expired",
        "wrong_iss",
        "wrong_aud",
        "bad_signature",
        "alg_not_allowed",
        "unknown_kid",
    ] {
        assert!(
            metrics
                .lines()
                .any(|line| line.contains("bearer_validations")
                    && line.contains(&format!("outcome=\"{outcome}\""))),
            "{outcome} missing from:\n{metrics}"
        );
    }
}

#[tokio::test]
async fn tokens_of_an_extra_issuer_are_verified_with_its_own_keys_and_audiences() {
    let other = DevOp::start(Default::default()).await.unwrap();
    let app = TestApp::builder()
        .config(
            "oidc",
            &format!(
                "[[oidc.extra_jwt_issuers]]\nissuer = \"{issuer}\"\njwks_url = \"{issuer}/jwks\"\naudiences = [\"machine-api\"]",
                issuer = other.issuer()
            ),
        )
        .build()
        .await;
    let token = |audience: &str| {
        other.mint_jwt(
            &claims(json!({
                "iss": other.issuer(), "sub": "batch-job", "aud": audience,
                "iat": now(), "exp": now() + 300,
            })),
            MintKey::Current,
        )
    };
    let page = bearer(&app, "/jobs", &token("machine-api")).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    // Scoped by its issuer: never confused with a provider user "batch-job".
    assert_eq!(
        page.json()["headers"]["x-forwarded-user"],
        format!("{}#batch-job", other.issuer())
    );
    assert_eq!(
        bearer(&app, "/jobs", &token(CLIENT_ID)).await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn a_token_cookie_is_read_when_there_is_no_authorization_header() {
    let app = TestApp::builder()
        .route("path_prefix = \"/\"\nupstream = \"{upstream}\"\ntoken_cookie = \"DS\"")
        .build()
        .await;
    let browser = Browser::new();
    browser.set_cookie("DS", &app.op.access_token("alice"));
    let page = browser.get(&app.url("/with-cookie")).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert_eq!(page.json()["headers"]["x-forwarded-user"], "alice");
}

#[tokio::test]
async fn pass_access_token_sends_the_session_token_upstream() {
    let app = TestApp::builder()
        .route("path_prefix = \"/\"\nupstream = \"{upstream}\"\npass_access_token = true")
        .build()
        .await;
    let browser = Browser::new();
    let page = app.sign_in(&browser, "/").await;
    let token = page.json()["headers"]["x-forwarded-access-token"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(token.starts_with("eyJ"), "{token}");
    // The token is the provider's access token: it works as a bearer token.
    assert_eq!(bearer(&app, "/x", &token).await.status, StatusCode::OK);
}

#[tokio::test]
async fn userinfo_shows_the_session_or_bearer_user_or_401() {
    let app = TestApp::start().await;
    let browser = Browser::new();
    assert_eq!(
        browser.get(&app.url("/oauth2/userinfo")).await.status,
        StatusCode::UNAUTHORIZED
    );
    app.sign_in(&browser, "/").await;
    let info = browser.get(&app.url("/oauth2/userinfo")).await.json();
    assert_eq!(info["sub"], "alice");
    assert_eq!(info["email"], "alice@example.test");
    assert_eq!(info["roles"], json!(["admin"]));
    assert_eq!(info["via"], "session");
    let via_bearer = bearer(&app, "/oauth2/userinfo", &app.op.access_token("bob"))
        .await
        .json();
    assert_eq!(via_bearer["sub"], "bob");
    assert_eq!(via_bearer["via"], "bearer");
}

#[tokio::test]
async fn forward_auth_answers_200_401_403_for_the_original_url() {
    let app = TestApp::builder()
        .config("server", "trusted_proxies = [\"127.0.0.1/32\"]")
        .route("path_prefix = \"/\"\nupstream = \"{upstream}\"")
        .route("path_prefix = \"/admin\"\nupstream = \"{upstream}\"\nrequire_roles = [\"admin\"]")
        .build()
        .await;
    async fn check(app: &TestApp, browser: &Browser, uri: &str) -> crate::support::Page {
        browser
            .get_with(&app.url("/oauth2/auth"), &[("X-Original-URI", uri)])
            .await
    }
    let anonymous = Browser::new();
    assert_eq!(
        check(&app, &anonymous, "/x").await.status,
        StatusCode::UNAUTHORIZED
    );
    app.op.set_auto_approve(Some("bob".into()));
    let bob = Browser::new();
    app.sign_in(&bob, "/").await;
    let allowed = check(&app, &bob, "/x").await;
    assert_eq!(allowed.status, StatusCode::OK);
    assert_eq!(
        allowed.header("x-auth-request-user").as_deref(),
        Some("bob")
    );
    assert_eq!(
        allowed.header("x-auth-request-email").as_deref(),
        Some("bob@example.test")
    );
    assert_eq!(
        check(&app, &bob, "/admin/panel").await.status,
        StatusCode::FORBIDDEN
    );
}

#[tokio::test]
async fn nginx_auth_request_in_front_of_an_upstream_through_portico() {
    // nginx listens first so portico can know its public URL.
    let nginx_port = crate::support::redis::free_port();
    let public = format!("http://127.0.0.1:{nginx_port}");
    let app = TestApp::builder()
        .public_url(&public)
        .config("server", "trusted_proxies = [\"127.0.0.1/32\"]")
        .route("path_prefix = \"/\"\nupstream = \"{upstream}\"")
        .route("path_prefix = \"/admin\"\nupstream = \"{upstream}\"\nrequire_roles = [\"admin\"]")
        .build()
        .await;
    let portico = app.base.trim_start_matches("http://").to_string();
    let upstream = app.upstream.url().trim_start_matches("http://").to_string();
    let server = format!(
        r#"
        location = /oauth2/auth {{
            internal;
            proxy_pass http://{portico}/oauth2/auth;
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_set_header X-Original-URI $request_uri;
            proxy_set_header X-Forwarded-Host $http_host;
        }}
        location /oauth2/ {{
            proxy_pass http://{portico};
            proxy_set_header Host $http_host;
        }}
        location / {{
            auth_request /oauth2/auth;
            auth_request_set $auth_user $upstream_http_x_auth_request_user;
            auth_request_set $auth_email $upstream_http_x_auth_request_email;
            proxy_set_header X-Forwarded-User $auth_user;
            proxy_set_header X-Forwarded-Email $auth_email;
            error_page 401 = @sign_in;
            proxy_pass http://{upstream};
        }}
        location @sign_in {{
            return 302 /oauth2/start?rd=$request_uri;
        }}
        "#
    );
    let Some(nginx) = Nginx::start_on(nginx_port, &server) else {
        return;
    };
    let browser = Browser::new();
    let first = browser.get(&nginx.url("/reports?year=2026")).await;
    assert_eq!(first.status, StatusCode::FOUND);
    assert!(
        first
            .location()
            .unwrap()
            .contains("/oauth2/start?rd=/reports"),
        "{:?}",
        first.location()
    );
    let landing = browser.open(&nginx.url("/reports?year=2026")).await;
    assert_eq!(landing.status, StatusCode::OK, "{}", landing.body);
    assert_eq!(landing.json()["path"], "/reports");
    assert_eq!(landing.json()["headers"]["x-forwarded-user"], "alice");
    assert_eq!(
        landing.json()["headers"]["x-forwarded-email"],
        "alice@example.test"
    );
    // The admin route's rules apply through nginx too.
    app.op.set_auto_approve(Some("bob".into()));
    let bob = Browser::new();
    let bob_landing = bob.open(&nginx.url("/home")).await;
    assert_eq!(bob_landing.json()["headers"]["x-forwarded-user"], "bob");
    assert_eq!(
        bob.get(&nginx.url("/admin/panel")).await.status,
        StatusCode::FORBIDDEN
    );
}

#[tokio::test]
async fn identity_jwt_is_signed_by_portico_and_verifies_with_the_published_jwks() {
    let redis = crate::support::RedisServer::spawn();
    let app = TestApp::builder()
        .redis_url(&redis.url(0))
        .route("path_prefix = \"/\"\nupstream = \"{upstream}\"\nidentity_jwt = true")
        .build()
        .await;
    let browser = Browser::new();
    let page = app.sign_in(&browser, "/").await;
    let token = page.json()["headers"]["x-portico-identity"]
        .as_str()
        .expect("identity header")
        .to_string();
    let jwks_page = Browser::new()
        .get(&app.url("/.well-known/portico/jwks.json"))
        .await;
    assert_eq!(jwks_page.status, StatusCode::OK);
    let jwks: openidconnect::core::CoreJsonWebKeySet =
        serde_json::from_str(&jwks_page.body).unwrap();
    let verified = portico::oidc::verify_jws(
        &token,
        &portico::oidc::KeySet::new(jwks),
        &[openidconnect::core::CoreJwsSigningAlgorithm::EcdsaP256Sha256],
    )
    .expect("the identity token verifies with the published key");
    assert_eq!(verified.claims["iss"], app.base.as_str());
    assert_eq!(verified.claims["aud"], app.upstream.url().as_str());
    assert_eq!(verified.claims["sub"], "alice");
    assert_eq!(verified.claims["roles"], json!(["admin"]));
    let lifetime =
        verified.claims["exp"].as_i64().unwrap() - verified.claims["iat"].as_i64().unwrap();
    assert_eq!(lifetime, 60);
    // The token is cached for the session, not re-signed per request.
    let again = browser.get(&app.url("/again")).await;
    assert_eq!(
        again.json()["headers"]["x-portico-identity"],
        token.as_str()
    );
    // A second replica on the same Redis publishes the same key.
    let replica = app.replica().await;
    let replica_jwks = Browser::new()
        .get(&replica.url("/.well-known/portico/jwks.json"))
        .await;
    assert_eq!(replica_jwks.json(), jwks_page.json());
    // The key is stored sealed: Redis holds no usable key material in the clear.
    let reply = redis.command(&["GET", "portico:identity-key-v2"]);
    let stored = reply.lines().nth(1).expect("the key is stored").to_string();
    assert!(
        portico::identity::IdentitySigner::from_base64(&stored, "https://x").is_err(),
        "the stored key must not be usable as it is"
    );
}
