//! Issue 17's suspicions, each settled against the running gateway:
//! issuer-scoped identity for extra bearer issuers, roles holding commas in
//! the groups header, and `__Host-` cookies behind an https public URL.
//! (The local-cache race and HKDF domain separation are settled by the unit
//! tests in src/session/local_cache.rs and src/session/crypto.rs, which can
//! order the interleaving and reach the keys directly.)

use portico::devop::{DevOp, DevUser, MintKey};
use reqwest::StatusCode;
use serde_json::json;

use crate::support::{csrf_of, Browser, Page, TestApp};

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

async fn bearer(app: &TestApp, path: &str, token: &str) -> Page {
    Browser::new()
        .get_with(
            &app.url(path),
            &[("Authorization", &format!("Bearer {token}"))],
        )
        .await
}

#[tokio::test]
async fn an_extra_issuers_alice_is_not_the_providers_alice() {
    let provider = DevOp::start(Default::default()).await.unwrap();
    let other = DevOp::start(Default::default()).await.unwrap();
    let app = TestApp::builder()
        .config(
            "oidc",
            &format!(
                "[[oidc.extra_jwt_issuers]]\nissuer = \"{issuer}\"\njwks_url = \"{issuer}/jwks\"\naudiences = [\"machine-api\"]",
                issuer = other.issuer()
            ),
        )
        .route("path_prefix = \"/\"\nupstream = \"{upstream}\"")
        .route(&format!(
            "path_prefix = \"/staff\"\nupstream = \"{{upstream}}\"\nrequire_claims = {{ iss = [\"{}\"] }}",
            provider.issuer()
        ))
        .with_op(provider)
        .build()
        .await;
    let from_other = other.mint_jwt(
        json!({
            "iss": other.issuer(), "sub": "alice", "aud": "machine-api",
            "iat": now(), "exp": now() + 300, "roles": ["admin"],
        })
        .as_object()
        .unwrap(),
        MintKey::Current,
    );
    let from_provider = app.op.access_token("alice");
    // Headers tell them apart: the provider's user is plain `alice`, the
    // other issuer's is scoped by its issuer.
    let page = bearer(&app, "/x", &from_provider).await;
    assert_eq!(page.json()["headers"]["x-forwarded-user"], "alice");
    let page = bearer(&app, "/x", &from_other).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert_eq!(
        page.json()["headers"]["x-forwarded-user"],
        format!("{}#alice", other.issuer())
    );
    // Rules tell them apart: a route for the provider's users only.
    assert_eq!(
        bearer(&app, "/staff/x", &from_provider).await.status,
        StatusCode::OK
    );
    assert_eq!(
        bearer(&app, "/staff/x", &from_other).await.status,
        StatusCode::FORBIDDEN
    );
    let info = bearer(&app, "/oauth2/userinfo", &from_other).await.json();
    assert_eq!(info["sub"], format!("{}#alice", other.issuer()));
}

#[tokio::test]
async fn a_role_holding_a_comma_never_becomes_two_groups() {
    let app = TestApp::builder()
        .route("path_prefix = \"/\"\nupstream = \"{upstream}\"")
        .route("path_prefix = \"/admin\"\nupstream = \"{upstream}\"\nrequire_roles = [\"admin\"]")
        .config("server", "trusted_proxies = [\"127.0.0.1/32\"]")
        .auto_approve(Some("mallory"))
        .build()
        .await;
    app.op
        .set_user(DevUser::new("mallory").with_roles(&["viewer,admin", " admin", "ops"]));
    let browser = Browser::new();
    let page = app.sign_in(&browser, "/").await;
    let groups = page.json()["headers"]["x-forwarded-groups"].clone();
    assert_eq!(groups, "viewer%2Cadmin,%20admin,ops");
    let pieces: Vec<&str> = groups.as_str().unwrap().split(',').map(str::trim).collect();
    assert!(!pieces.contains(&"admin"), "{pieces:?}");
    // Rules compare whole role names: neither item is `admin`.
    assert_eq!(
        browser.get(&app.url("/admin/x")).await.status,
        StatusCode::FORBIDDEN
    );
    // Forward-auth answers with the same encoding.
    let check = browser
        .get_with(&app.url("/oauth2/auth"), &[("X-Forwarded-Uri", "/x")])
        .await;
    assert!(check.status.is_success(), "{}", check.status);
    assert_eq!(
        check.header("x-auth-request-groups").as_deref(),
        Some("viewer%2Cadmin,%20admin,ops")
    );
    // Bearer tokens get the same header.
    let token = app.op.access_token("mallory");
    let page = bearer(&app, "/x", &token).await;
    assert_eq!(
        page.json()["headers"]["x-forwarded-groups"],
        "viewer%2Cadmin,%20admin,ops"
    );
}

/// Follows redirects from `path`, sending what is addressed to the https
/// public URL to the plain listener behind it (as a TLS-terminating proxy
/// would). Returns every hop.
async fn follow_through_proxy(
    app: &TestApp,
    public: &str,
    browser: &Browser,
    path: &str,
) -> Vec<Page> {
    let mut url = app.url(path);
    let mut hops = Vec::new();
    for _ in 0..10 {
        let page = browser.get(&url).await;
        let next = page.location();
        hops.push(page);
        let Some(next) = next else { break };
        url = if let Some(rest) = next.strip_prefix(public) {
            app.url(rest)
        } else if next.starts_with('/') {
            app.url(&next)
        } else {
            next
        };
    }
    hops
}

#[tokio::test]
async fn cookies_carry_the_host_prefix_behind_an_https_public_url() {
    let port = crate::support::redis::free_port();
    let public = format!("https://127.0.0.1:{port}");
    let app = TestApp::builder()
        .public_url(&public)
        .config("server", "trusted_proxies = [\"127.0.0.1/32\"]")
        .build()
        .await;
    let browser = Browser::new();
    let hops = follow_through_proxy(&app, &public, &browser, "/private").await;
    // The login cookie, set on the way out, is prefixed...
    let login = hops[0]
        .set_cookies()
        .into_iter()
        .find(|line| line.contains("_login_"))
        .expect("a login cookie");
    assert!(
        login.starts_with("__Host-portico_session_login_"),
        "{login}"
    );
    assert!(
        login.contains("Secure") && login.contains("Path=/"),
        "{login}"
    );
    assert!(!login.contains("Domain"), "{login}");
    // ...and so is the session cookie.
    let last = hops.last().unwrap();
    assert_eq!(last.status, StatusCode::OK, "{}", last.body);
    assert_eq!(last.json()["headers"]["x-forwarded-user"], "alice");
    assert!(browser.cookie("__Host-portico_session").is_some());
    assert!(browser.cookie("portico_session").is_none());
    // The upstream sees none of portico's cookies.
    assert!(
        last.json()["headers"].get("cookie").is_none(),
        "{}",
        last.body
    );
    // A session value planted under the bare name (any sibling subdomain
    // can set that one) signs nobody in.
    let attacker_session = browser.cookie("__Host-portico_session").unwrap();
    let victim = Browser::new();
    victim.set_cookie("portico_session", &attacker_session);
    let page = victim.get(&app.url("/private")).await;
    assert_eq!(page.status, StatusCode::FOUND, "{}", page.body);
    // Forward-auth reads the prefixed cookie.
    let check = browser
        .get_with(&app.url("/oauth2/auth"), &[("X-Forwarded-Uri", "/private")])
        .await;
    assert!(check.status.is_success(), "{}", check.status);
    // Sign-out clears the prefixed cookie.
    let csrf = csrf_of(&browser.get(&app.url("/oauth2/sign_out")).await.body);
    let answer = browser
        .post_form(
            &app.url("/oauth2/sign_out"),
            &[("csrf", &csrf)],
            &[("Origin", &public)],
        )
        .await;
    assert_eq!(answer.status, StatusCode::FOUND);
    let cleared = answer
        .set_cookies()
        .into_iter()
        .find(|line| line.starts_with("__Host-portico_session="))
        .expect("the session cookie is cleared");
    assert!(cleared.contains("Max-Age=0"), "{cleared}");
    assert!(browser.cookie("__Host-portico_session").is_none());
}

#[tokio::test]
async fn cookies_keep_their_plain_names_when_shared_with_a_cookie_domain() {
    let port = crate::support::redis::free_port();
    let public = format!("https://app.localtest.example:{port}");
    let app = TestApp::builder()
        .public_url(&public)
        .config("session", "cookie_domain = \"localtest.example\"")
        .build()
        .await;
    let start = Browser::new().get(&app.url("/private")).await;
    let login = start
        .set_cookies()
        .into_iter()
        .find(|line| line.contains("_login_"))
        .expect("a login cookie");
    assert!(login.starts_with("portico_session_login_"), "{login}");
    assert!(login.contains("Domain=localtest.example"), "{login}");
}
