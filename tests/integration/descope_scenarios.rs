//! The Descope scenarios this project started from, against the dev OP's
//! strict `descope` profile with a config naming only provider, project id,
//! base URL and the access key: roles on the first sign-in, an ES384-signed
//! sign-in, a refresh with `dsub`, a machine's access-key session JWT on an
//! API route, and the failures a Descope user meets (wrong client auth).

use std::time::Duration;

use portico::devop::{DescopeAccessKey, DevUser, MintKey, SigningAlg, TokenAuthMethods};
use reqwest::StatusCode;
use serde_json::json;

use crate::descope::{base_of, descope_builder, descope_op, ACCESS_KEY, PROJECT};
use crate::support::Browser;

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// erin has the project role `editor`; tara is `admin` in tenant T1.
fn users() -> Vec<DevUser> {
    let erin = DevUser::new("erin").with_roles(&["editor"]);
    let mut tara = DevUser::new("tara");
    tara.extra_claims = json!({"tenants": {"T1": {"roles": ["admin"], "permissions": []}}})
        .as_object()
        .unwrap()
        .clone();
    vec![erin, tara]
}

const ROLE_ROUTES: [&str; 3] = [
    "path_prefix = \"/\"\nupstream = \"{upstream}\"",
    "path_prefix = \"/edit\"\nupstream = \"{upstream}\"\nrequire_roles = [\"editor\"]",
    "path_prefix = \"/tenant\"\nupstream = \"{upstream}\"\nrequire_tenant_roles = { tenant = \"T1\", roles = [\"admin\"] }",
];

#[tokio::test]
async fn a_project_role_and_a_tenant_role_each_open_their_route_on_the_first_sign_in() {
    let op = descope_op(PROJECT, |options| options.users = users()).await;
    let app = descope_builder(op, &ROLE_ROUTES).build().await;

    app.op.set_auto_approve(Some("erin".into()));
    let erin = Browser::new();
    let page = app.sign_in(&erin, "/edit/doc").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert_eq!(page.json()["headers"]["x-forwarded-user"], "erin");
    assert_eq!(page.json()["headers"]["x-forwarded-groups"], "editor");
    assert_eq!(
        page.json()["headers"]["x-forwarded-email"],
        "erin@example.test"
    );
    assert_eq!(
        erin.get(&app.url("/tenant/x")).await.status,
        StatusCode::FORBIDDEN
    );

    app.op.set_auto_approve(Some("tara".into()));
    let tara = Browser::new();
    let page = app.sign_in(&tara, "/tenant/settings").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert_eq!(page.json()["path"], "/tenant/settings");
    assert_eq!(
        tara.get(&app.url("/edit/doc")).await.status,
        StatusCode::FORBIDDEN
    );
    // The strict profile sends no callback `iss`, and portico did not need it.
    let query = app.op.stats().last_authorize_query.unwrap();
    assert!(query.contains("descope.claims"), "{query}");
}

#[tokio::test]
async fn with_only_openid_profile_email_a_descope_user_has_no_roles_so_the_scopes_matter() {
    // What the preset used to ask for: the strict profile then sends no
    // roles, and a role route answers 403. Asking for descope.claims fixes it.
    let op = descope_op(PROJECT, |options| options.users = users()).await;
    let app = descope_builder(op, &ROLE_ROUTES)
        .config("oidc", "scopes = [\"openid\", \"profile\", \"email\"]")
        .build()
        .await;
    app.op.set_auto_approve(Some("erin".into()));
    let erin = Browser::new();
    let page = app.sign_in(&erin, "/edit/doc").await;
    assert_eq!(page.status, StatusCode::FORBIDDEN, "{}", page.body);
}

#[tokio::test]
async fn an_es384_signed_sign_in_succeeds_with_the_default_algorithms() {
    let op = descope_op(PROJECT, |options| {
        options.users = users();
        options.signing_alg = SigningAlg::Es384;
    })
    .await;
    let app = descope_builder(op, &ROLE_ROUTES).build().await;
    app.op.set_auto_approve(Some("erin".into()));
    let erin = Browser::new();
    let page = app.sign_in(&erin, "/edit/doc").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert_eq!(page.json()["headers"]["x-forwarded-user"], "erin");
    assert_eq!(app.op.stats().last_id_token_alg.as_deref(), Some("ES384"));
}

#[tokio::test]
async fn every_asymmetric_algorithm_signs_a_sign_in_portico_accepts() {
    // A generic provider publishing a key for each algorithm; each sign-in is
    // signed with the next one, and every one succeeds with the defaults.
    let app = crate::support::TestApp::builder()
        .op_options(|options| options.published_algs = SigningAlg::ALL.to_vec())
        .build()
        .await;
    for alg in SigningAlg::ALL {
        app.op.set_signing_alg(alg);
        let browser = Browser::new();
        let page = app.sign_in(&browser, "/alg").await;
        assert_eq!(page.status, StatusCode::OK, "{}: {}", alg.name(), page.body);
        assert_eq!(page.json()["headers"]["x-forwarded-user"], "alice");
        assert_eq!(
            app.op.stats().last_id_token_alg.as_deref(),
            Some(alg.name())
        );
    }
    assert_eq!(app.op.stats().logins, SigningAlg::ALL.len() as u64);
}

#[tokio::test]
async fn an_id_token_signed_with_an_algorithm_left_off_the_allow_list_is_refused() {
    let app = crate::support::TestApp::builder()
        .op_options(|options| options.signing_alg = SigningAlg::Es512)
        .config("oidc", "allowed_algs = [\"RS256\", \"ES384\"]")
        .build()
        .await;
    let page = Browser::new().open(&app.url("/")).await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST, "{}", page.body);
    assert_eq!(app.op.stats().last_id_token_alg.as_deref(), Some("ES512"));
}

/// A P-256 key as a PKCS#8 PEM file (for portico) and its public JWK (for the OP).
fn client_key(directory: &std::path::Path) -> (std::path::PathBuf, serde_json::Value) {
    use base64::Engine as _;
    use ring::signature::{EcdsaKeyPair, KeyPair as _, ECDSA_P256_SHA256_FIXED_SIGNING};
    let rng = ring::rand::SystemRandom::new();
    let document = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, document.as_ref(), &rng)
        .unwrap();
    let body = base64::engine::general_purpose::STANDARD.encode(document.as_ref());
    let pem = format!("-----BEGIN PRIVATE KEY-----\n{body}\n-----END PRIVATE KEY-----\n");
    std::fs::create_dir_all(directory).unwrap();
    let path = directory.join("client-key.pem");
    std::fs::write(&path, pem).unwrap();
    let point = pair.public_key().as_ref();
    let url = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let jwk = json!({"kty": "EC", "crv": "P-256", "kid": "client-1", "alg": "ES256",
                     "x": url(&point[1..33]), "y": url(&point[33..65])});
    (path, jwk)
}

#[tokio::test]
async fn private_key_jwt_signs_in_and_refreshes_with_client_assertions() {
    let directory = std::env::temp_dir().join(format!("portico-pkjwt-{}", std::process::id()));
    let (key_file, jwk) = client_key(&directory);
    let app = crate::support::TestApp::builder()
        .op_options(|options| {
            options.client_assertion_keys = vec![jwk];
            options.access_token_ttl = Duration::from_secs(120);
        })
        .config("oidc", "token_auth_method = \"private_key_jwt\"")
        .config(
            "oidc",
            &format!("client_assertion_key_file = \"{}\"", key_file.display()),
        )
        .config("oidc", "client_assertion_kid = \"client-1\"")
        .build()
        .await;
    let browser = Browser::new();
    let page = app.sign_in(&browser, "/").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    app.advance(Duration::from_secs(100));
    let page = browser.get(&app.url("/")).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert_eq!(app.op.stats().refreshes, 1);
    // The code exchange and the refresh each carried an assertion, no secret.
    assert_eq!(app.op.stats().client_assertions, 2);
    let _ = std::fs::remove_dir_all(&directory);
}

#[tokio::test]
async fn a_refresh_with_dsub_keeps_the_session_and_a_logout_by_dsub_ends_it() {
    // The JWT template overrides `sub` with the login id; `dsub` is the user
    // id, used at sign-in, at refresh and by back-channel logout alike.
    let op = descope_op(PROJECT, |options| {
        options.users = users();
        options.access_token_ttl = Duration::from_secs(120);
        if let Some(descope) = options.descope.as_mut() {
            descope.override_subject = true;
        }
    })
    .await;
    let app = descope_builder(op, &ROLE_ROUTES).build().await;
    app.op.set_auto_approve(Some("erin".into()));
    let erin = Browser::new();
    let page = app.sign_in(&erin, "/edit/doc").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert_eq!(page.json()["headers"]["x-forwarded-user"], "erin");

    app.advance(Duration::from_secs(100));
    let page = erin.get(&app.url("/edit/doc")).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert_eq!(app.op.stats().refreshes, 1, "the session was refreshed");
    assert_eq!(page.json()["headers"]["x-forwarded-user"], "erin");
    // And again, with the rotated refresh token.
    app.advance(Duration::from_secs(100));
    let page = erin.get(&app.url("/edit/doc")).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert_eq!(app.op.stats().refreshes, 2);

    // A back-channel logout naming the user (sub = login id, dsub = user id)
    // ends the session.
    let token = app.op.logout_token(&portico::devop::LogoutTokenSpec {
        sub: Some("erin".into()),
        ..Default::default()
    });
    assert_eq!(app.backchannel_logout(&token).await.status, StatusCode::OK);
    let page = erin.get(&app.url("/edit/doc")).await;
    assert_eq!(page.status, StatusCode::FOUND, "{}", page.body);
}

#[tokio::test]
async fn a_descope_id_token_without_a_nonce_is_accepted_and_a_wrong_one_is_not() {
    let op = descope_op(PROJECT, |options| {
        options.users = users();
        if let Some(descope) = options.descope.as_mut() {
            descope.echo_nonce = false;
        }
    })
    .await;
    let app = descope_builder(op, &ROLE_ROUTES).build().await;
    app.op.set_auto_approve(Some("erin".into()));
    let page = app.sign_in(&Browser::new(), "/edit/doc").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    app.op
        .set_misbehavior(portico::devop::Misbehavior::WrongNonce);
    let page = Browser::new().open(&app.url("/edit/doc")).await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST, "{}", page.body);
}

#[tokio::test]
async fn basic_auth_refused_by_the_token_endpoint_names_the_setting_to_check() {
    // A provider that takes only form-field credentials, with portico told
    // to use Basic: invalid_client, a sign-in failure page that says what to
    // check, and `client_secret_post` fixes it.
    let op = descope_op(PROJECT, |options| {
        options.token_auth_methods = TokenAuthMethods::PostOnly;
    })
    .await;
    let app = descope_builder(op, &["path_prefix = \"/\"\nupstream = \"{upstream}\""])
        .config("oidc", "token_auth_method = \"client_secret_basic\"")
        .build()
        .await;
    let browser = Browser::new();
    let page = browser.open(&app.url("/")).await;
    assert_eq!(
        page.status,
        StatusCode::INTERNAL_SERVER_ERROR,
        "{}",
        page.body
    );
    assert!(
        page.body.contains("oidc.token_auth_method"),
        "{}",
        page.body
    );
    assert!(page.body.contains("oidc.client_secret"), "{}", page.body);
    assert!(page.body.contains("Request id"), "{}", page.body);

    let op = descope_op(PROJECT, |options| {
        options.token_auth_methods = TokenAuthMethods::PostOnly;
    })
    .await;
    let app = descope_builder(op, &["path_prefix = \"/\"\nupstream = \"{upstream}\""])
        .config("oidc", "token_auth_method = \"client_secret_post\"")
        .build()
        .await;
    let page = app.sign_in(&Browser::new(), "/").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
}

/// Exchanges `key` at the OP as a machine does: `POST
/// /v1/auth/accesskey/exchange` with `Authorization: Bearer <project>:<key>`.
async fn exchange(base: &str, project: &str, key: &str) -> String {
    let response = reqwest::Client::new()
        .post(format!("{base}/v1/auth/accesskey/exchange"))
        .header("Authorization", format!("Bearer {project}:{key}"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: serde_json::Value = response.json().await.unwrap();
    assert!(body["keyId"].is_string(), "{body}");
    body["sessionJwt"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn a_machine_s_access_key_session_jwt_passes_a_role_rule_and_bad_ones_do_not() {
    let op = descope_op(PROJECT, |options| {
        if let Some(descope) = options.descope.as_mut() {
            descope.access_keys = vec![
                DescopeAccessKey::new("K-reporter", "reporter-key", &["reporter"]),
                DescopeAccessKey::new("K-plain", "plain-key", &[]),
            ];
        }
    })
    .await;
    let base = base_of(&op);
    let app = descope_builder(
        op,
        &[
            "path_prefix = \"/api\"\nupstream = \"{upstream}\"\napi = true\nrequire_roles = [\"reporter\"]",
            "path_prefix = \"/app\"\nupstream = \"{upstream}\"\ntoken_cookie = \"DS\"\nrequire_roles = [\"reporter\"]",
        ],
    )
    .build()
    .await;
    let call = |token: String| {
        let url = app.url("/api/reports");
        async move {
            Browser::new()
                .get_with(&url, &[("Authorization", &format!("Bearer {token}"))])
                .await
        }
    };

    // The role passes: the session JWT has no aud and iss {base}/v1/apps/{project}.
    let token = exchange(&base, PROJECT, "reporter-key").await;
    let page = call(token.clone()).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert_eq!(page.json()["headers"]["x-forwarded-user"], "K-reporter");
    assert_eq!(page.json()["headers"]["x-forwarded-groups"], "reporter");

    // The same session JWT in Descope's `DS` cookie, on a `token_cookie` route.
    let browser = Browser::new();
    browser.set_cookie("DS", &token);
    let page = browser.get(&app.url("/app/home")).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert_eq!(page.json()["headers"]["x-forwarded-user"], "K-reporter");

    // A key without the role: 403.
    let page = call(exchange(&base, PROJECT, "plain-key").await).await;
    assert_eq!(page.status, StatusCode::FORBIDDEN, "{}", page.body);

    // Another project's token (its own OP, its own keys): 401.
    let other = descope_op("P2OtherProject", |options| {
        if let Some(descope) = options.descope.as_mut() {
            descope.access_keys = vec![DescopeAccessKey::new("K-x", "x-key", &["reporter"])];
        }
    })
    .await;
    let other_base = other
        .issuer()
        .trim_end_matches("/P2OtherProject")
        .to_string();
    let page = call(exchange(&other_base, "P2OtherProject", "x-key").await).await;
    assert_eq!(page.status, StatusCode::UNAUTHORIZED, "{}", page.body);
    assert!(page.header("www-authenticate").is_some());

    // A token for another application (a foreign aud), signed by our project: 401.
    let now = now();
    let foreign = app.op.mint_jwt(
        json!({"iss": format!("{base}/v1/apps/{PROJECT}"), "sub": "K-reporter",
               "aud": "another-app", "iat": now, "exp": now + 600, "roles": ["reporter"]})
        .as_object()
        .unwrap(),
        MintKey::Current,
    );
    let page = call(foreign).await;
    assert_eq!(page.status, StatusCode::UNAUTHORIZED, "{}", page.body);
    assert!(
        page.header("www-authenticate")
            .is_some_and(|challenge| challenge.contains("invalid_token")),
        "{:?}",
        page.header("www-authenticate")
    );

    // An expired one: the same token once its 10 minutes are over.
    app.clock.advance(Duration::from_secs(11 * 60));
    let page = call(token).await;
    assert_eq!(page.status, StatusCode::UNAUTHORIZED, "{}", page.body);

    // A wrong access key gets nothing from the OP.
    let response = reqwest::Client::new()
        .post(format!("{base}/v1/auth/accesskey/exchange"))
        .header(
            "Authorization",
            format!("Bearer {PROJECT}:{ACCESS_KEY}-wrong"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}
