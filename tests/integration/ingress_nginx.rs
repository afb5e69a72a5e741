//! The ingress-nginx example (deploy/kubernetes/ingress-nginx/ingress.yaml)
//! against the real gateway. ingress-nginx is not on our machines, so its
//! part is played by requests shaped as its `nginx.tmpl` builds them for an
//! Ingress with `auth-url` (kubernetes/ingress-nginx, rootfs/etc/nginx/
//! template/nginx.tmpl, the external-auth location): the client's headers
//! with its cookie, then `X-Original-URL`, `X-Original-Method`,
//! `X-Sent-From`, `X-Real-IP`, `X-Forwarded-For`, `X-Auth-Request-Redirect`,
//! an empty `X-Forwarded-Proto` (so none is sent), and last the headers of
//! the `auth-proxy-set-headers` ConfigMap with their nginx variables
//! expanded. A 401 sends the browser to `auth-signin` with
//! `$escaped_request_uri` (`set_escape_uri`, every reserved character
//! escaped).

use reqwest::StatusCode;
use serde_json::Value;

use crate::support::deploy::{repository_path, yaml_documents};
use crate::support::{encode, Browser, Page, TestApp};

/// The example's objects.
fn example() -> Vec<Value> {
    yaml_documents(&repository_path(
        "deploy/kubernetes/ingress-nginx/ingress.yaml",
    ))
}

fn annotation(objects: &[Value], name: &str) -> String {
    let ingress = objects
        .iter()
        .find(|object| object["kind"] == "Ingress" && object["metadata"]["name"] == "app")
        .unwrap();
    ingress["metadata"]["annotations"][format!("nginx.ingress.kubernetes.io/{name}")]
        .as_str()
        .unwrap_or_else(|| panic!("no {name} annotation"))
        .to_string()
}

/// The auth subrequest ingress-nginx sends to portico for a client's
/// `GET {request_uri}` on `host`.
async fn auth_subrequest(
    app: &TestApp,
    browser: &Browser,
    objects: &[Value],
    host: &str,
    request_uri: &str,
) -> Page {
    let original_url = format!("http://{host}{request_uri}");
    let mut headers: Vec<(String, String)> = vec![
        ("X-Original-URL".into(), original_url),
        ("X-Original-Method".into(), "GET".into()),
        ("X-Sent-From".into(), "nginx-ingress-controller".into()),
        ("X-Real-IP".into(), "203.0.113.7".into()),
        ("X-Forwarded-For".into(), "203.0.113.7".into()),
        ("X-Auth-Request-Redirect".into(), request_uri.into()),
    ];
    let set_headers = annotation(objects, "auth-proxy-set-headers");
    let (_, map_name) = set_headers.split_once('/').unwrap();
    let map = objects
        .iter()
        .find(|object| object["kind"] == "ConfigMap" && object["metadata"]["name"] == map_name)
        .unwrap();
    for (name, value) in map["data"].as_object().unwrap() {
        let value = value
            .as_str()
            .unwrap()
            .replace("$request_uri", request_uri)
            .replace("$host", host)
            .replace("$scheme", "http");
        assert!(!value.contains('$'), "an nginx variable left in {value}");
        headers.push((name.clone(), value));
    }
    let headers: Vec<(&str, &str)> = headers
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .collect();
    browser.get_with(&app.url("/oauth2/auth"), &headers).await
}

#[tokio::test]
async fn ingress_nginx_example_signs_in_through_auth_signin_and_applies_path_rules() {
    let objects = example();
    let app = TestApp::builder()
        .config("server", "trusted_proxies = [\"127.0.0.1/32\"]")
        .route("path_prefix = \"/\"\nupstream = \"{upstream}\"")
        .route("path_prefix = \"/admin\"\nupstream = \"{upstream}\"\nrequire_roles = [\"admin\"]")
        .build()
        .await;
    let host = "127.0.0.1";
    let deep_link = "/docs/page?x=1&y=a%20b";
    // bob: signed in, but not an admin.
    app.op.set_auto_approve(Some("bob".into()));
    let browser = Browser::new();

    // No session: 401, and ingress-nginx sends the browser to auth-signin.
    let anonymous = auth_subrequest(&app, &browser, &objects, host, deep_link).await;
    assert_eq!(
        anonymous.status,
        StatusCode::UNAUTHORIZED,
        "{}",
        anonymous.body
    );
    let signin = annotation(&objects, "auth-signin");
    let public_url = "https://app.example.com";
    assert!(signin.starts_with(public_url), "{signin}");
    let signin = signin
        .replace(public_url, &app.base)
        .replace("$escaped_request_uri", &encode(deep_link));
    let landed = browser.open(&signin).await;
    assert!(
        browser.cookie("portico_session").is_some(),
        "{}",
        landed.body
    );
    assert_eq!(landed.url, app.url(deep_link));
    assert_eq!(landed.status, StatusCode::OK, "{}", landed.body);

    // Signed in: allowed, with the identity headers the Ingress copies.
    let allowed = auth_subrequest(&app, &browser, &objects, host, deep_link).await;
    assert!(allowed.status.is_success(), "{}", allowed.status);
    let copied = annotation(&objects, "auth-response-headers");
    let copied: Vec<&str> = copied.split(',').collect();
    assert!(copied.contains(&"X-Auth-Request-User"), "{copied:?}");
    for name in &copied {
        if allowed.header(name).is_none() {
            // Only the optional ones may be absent (bob has no roles).
            assert_eq!(*name, "X-Auth-Request-Groups", "{name} not answered");
        }
    }
    assert_eq!(
        allowed.header("x-auth-request-user").as_deref(),
        Some("bob")
    );

    // The original path reaches portico (X-Forwarded-Uri from the
    // ConfigMap): the /admin route's rule applies to it.
    let refused = auth_subrequest(&app, &browser, &objects, host, "/admin/panel").await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.body);
}
