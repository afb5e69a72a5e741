//! Descope first: the preset against the dev OP's strict `descope` profile
//! (Descope's paths, claims only for the scopes asked, no `aud` on session
//! JWTs, no callback `iss`), with a config that names only what a Descope
//! user has: provider, project id, base URL and an access key. Also the
//! setup page and https served by portico.

use portico::devop::{DescopeShape, DevOp, DevOpOptions, DevUser, MintKey};
use reqwest::StatusCode;
use serde_json::json;

use crate::support::{Browser, TestApp, TestAppBuilder, CLIENT_ID};

pub const PROJECT: &str = "P2TestProject";
/// The access key portico uses as its client secret (the harness's secret).
pub const ACCESS_KEY: &str = crate::support::app::CLIENT_SECRET;

/// A dev OP in the strict Descope profile, `change`d as a test needs.
pub async fn descope_op(project: &str, change: impl FnOnce(&mut DevOpOptions)) -> DevOp {
    let mut options = DevOpOptions {
        descope: Some(DescopeShape::new(project)),
        client_id: project.into(),
        client_secret: ACCESS_KEY.into(),
        access_token_ttl: std::time::Duration::from_secs(600),
        ..Default::default()
    };
    change(&mut options);
    DevOp::start(options).await.unwrap()
}

/// The OP's origin: what a Descope user writes as `base_url` (their custom
/// domain, or the API host).
pub fn base_of(op: &DevOp) -> String {
    op.issuer()
        .trim_end_matches(&format!("/{PROJECT}"))
        .to_string()
}

/// portico configured with only the Descope preset keys: provider, project
/// id, base_url, and the access key as client secret (from the harness).
pub fn descope_builder(op: DevOp, routes: &[&str]) -> TestAppBuilder {
    let mut builder = TestApp::builder();
    for route in routes {
        builder = builder.route(route);
    }
    let origin = base_of(&op);
    builder
        .config("oidc", "provider = \"descope\"")
        .config("oidc", &format!("project_id = \"{PROJECT}\""))
        .config("oidc", &format!("base_url = \"{origin}\""))
        .with_op(op)
}

async fn descope_app(routes: &[&str]) -> TestApp {
    let op = descope_op(PROJECT, |_| {}).await;
    descope_builder(op, routes)
        .config("oidc", "flow = \"sign-up-or-in\"")
        .build()
        .await
}

fn dana() -> DevUser {
    let mut dana = DevUser::new("dana").with_roles(&["viewer"]);
    dana.extra_claims = json!({
        "tenants": {"T7": {"roles": ["billing-admin"], "permissions": ["invoices.pay"]}},
        "amr": ["webauthn"],
        "dct": "T7",
    })
    .as_object()
    .unwrap()
    .clone();
    dana
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[tokio::test]
async fn descope_preset_signs_in_with_tenant_role_and_passkey_rules() {
    let app = descope_app(&[
        "path_prefix = \"/\"\nupstream = \"{upstream}\"",
        "path_prefix = \"/billing\"\nupstream = \"{upstream}\"\nrequire_tenant_roles = { tenant = \"T7\", roles = [\"billing-admin\"] }\nrequire_amr = [\"webauthn\"]",
    ])
    .await;
    assert!(app.op.issuer().ends_with(&format!("/{PROJECT}")));
    app.op.set_user(dana());
    app.op.set_auto_approve(Some("dana".into()));
    let browser = Browser::new();
    let start = browser.get(&app.url("/billing/invoices")).await;
    let authorize = start.location().unwrap();
    // Descope's authorization endpoint, not under the issuer.
    assert!(
        authorize.starts_with(&format!("{}/oauth2/v1/authorize?", base_of(&app.op))),
        "{authorize}"
    );
    assert!(authorize.contains("flow=sign-up-or-in"), "{authorize}");
    // The preset asks for the scopes that bring roles, tenants and custom claims.
    assert!(
        authorize.contains(
            "scope=openid+profile+email+descope.claims+descope.custom_claims+offline_access"
        ),
        "{authorize}"
    );
    let landing = browser.open(&authorize).await;
    assert_eq!(landing.status, StatusCode::OK, "{}", landing.body);
    assert_eq!(landing.json()["path"], "/billing/invoices");
    assert_eq!(landing.json()["headers"]["x-forwarded-user"], "dana");
    // alice has no tenant role there.
    app.op.set_auto_approve(Some("alice".into()));
    let alice = Browser::new();
    app.sign_in(&alice, "/").await;
    assert_eq!(
        alice.get(&app.url("/billing/invoices")).await.status,
        StatusCode::FORBIDDEN
    );
}

#[tokio::test]
async fn descope_session_tokens_verify_with_the_project_session_keys() {
    let app = descope_app(&["path_prefix = \"/\"\nupstream = \"{upstream}\"\napi = true"]).await;
    let now = now();
    let base = base_of(&app.op);
    // Every issuer form Descope uses, with and without an `aud` naming us.
    for issuer in [
        app.op.issuer(),
        PROJECT.to_string(),
        format!("{base}/v1/apps/{PROJECT}"),
        format!("{base}/{PROJECT}/federated-app"),
    ] {
        for aud in [None, Some(PROJECT)] {
            let mut claims = json!({
                "iss": issuer, "sub": "machine-1", "iat": now, "exp": now + 600,
                "roles": ["reporter"], "drn": "DS",
            });
            if let Some(aud) = aud {
                claims["aud"] = json!(aud);
            }
            let token = app
                .op
                .mint_jwt(claims.as_object().unwrap(), MintKey::Current);
            let page = Browser::new()
                .get_with(
                    &app.url("/reports"),
                    &[("Authorization", &format!("Bearer {token}"))],
                )
                .await;
            assert_eq!(
                page.status,
                StatusCode::OK,
                "iss {issuer} aud {aud:?}: {}",
                page.body
            );
            assert_eq!(page.json()["headers"]["x-forwarded-user"], "machine-1");
        }
    }
    // Another host's URL ending in the project id is not the project's.
    let token = app.op.mint_jwt(
        json!({"iss": format!("http://127.0.0.1:1/{PROJECT}"), "sub": "m", "iat": now, "exp": now + 600})
            .as_object()
            .unwrap(),
        MintKey::Current,
    );
    let page = Browser::new()
        .get_with(
            &app.url("/reports"),
            &[("Authorization", &format!("Bearer {token}"))],
        )
        .await;
    assert_eq!(page.status, StatusCode::UNAUTHORIZED, "{}", page.body);
}

#[tokio::test]
async fn setup_page_lists_the_urls_to_register_only_when_enabled() {
    let app = TestApp::builder()
        .config("server", "setup_page = true")
        .build()
        .await;
    let page = Browser::new().get(&app.url("/oauth2/setup")).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.body.contains(&app.url("/oauth2/callback")),
        "{}",
        page.body
    );
    assert!(
        page.body.contains(&app.url("/oauth2/backchannel_logout")),
        "{}",
        page.body
    );
    let off = TestApp::start().await;
    let hidden = Browser::new().get(&off.url("/oauth2/setup")).await;
    assert_eq!(hidden.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn portico_serves_https_itself_with_secure_cookies() {
    let directory = std::env::temp_dir().join(format!("portico-tls-{}", std::process::id()));
    let (cert, key) = crate::support::self_signed_certificate(&directory);

    let op = portico::devop::DevOp::start(Default::default())
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let redis = crate::support::redis::shared();
    let config = portico::config::parse(
        &format!(
            r#"
[server]
listen = "{address}"
public_url = "https://{address}"
tls_cert = "{cert}"
tls_key = "{key}"
[oidc]
issuer = "{issuer}"
client_id = "{CLIENT_ID}"
client_secret = "devop-secret"
[session]
redis_url = "{redis_url}"
cookie_secret = "{secret}"
[[routes]]
upstream = "http://127.0.0.1:9"
"#,
            cert = cert.display(),
            key = key.display(),
            issuer = op.issuer(),
            redis_url = redis.url(redis.fresh_database()),
            secret = crate::support::app::COOKIE_SECRET,
        ),
        &Default::default(),
    )
    .unwrap();
    let server = tokio::spawn(portico::serve_on(listener, config));
    let client = reqwest::Client::builder()
        .add_root_certificate(
            reqwest::Certificate::from_pem(&std::fs::read(&cert).unwrap()).unwrap(),
        )
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
        .unwrap();
    let mut health = Err(String::new());
    for _ in 0..100 {
        match client
            .get(format!("https://{address}/healthz"))
            .send()
            .await
        {
            Ok(response) => {
                health = Ok(response.status());
                break;
            }
            Err(error) => health = Err(crate::support::error_text(&error)),
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(health, Ok(StatusCode::OK));
    let mut login = None;
    for _ in 0..100 {
        let response = client
            .get(format!("https://{address}/private"))
            .send()
            .await
            .unwrap();
        if response.status() == StatusCode::FOUND {
            login = Some(response);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let login = login.expect("a login redirect once the provider is discovered");
    let cookie = login.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(cookie.contains("Secure"), "{cookie}");
    // Plain http on the TLS port is refused, not served.
    assert!(reqwest::get(format!("http://{address}/healthz"))
        .await
        .is_err());
    server.abort();
    let _ = std::fs::remove_dir_all(&directory);
}
