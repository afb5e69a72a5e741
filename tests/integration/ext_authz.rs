//! Envoy's external authorization, both protocols. Envoy is not on our
//! machines: the HTTP checks are shaped as Envoy's `ext_authz` HTTP filter
//! sends them with `http_service.path_prefix: /oauth2/ext_authz` (original
//! method, prefix + original path and query, original Host, empty body, the
//! headers `allowed_headers` admits), and the gRPC checks come from a tonic
//! client built from the same vendored protos as the server.

use std::collections::HashMap;

use portico::edge::proto::envoy::service::auth::v3::attribute_context::{
    HttpRequest, Request as AttributeRequest,
};
use portico::edge::proto::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use portico::edge::proto::envoy::service::auth::v3::check_response::HttpResponse;
use portico::edge::proto::envoy::service::auth::v3::{
    AttributeContext, CheckRequest, CheckResponse, DeniedHttpResponse, OkHttpResponse,
};
use reqwest::{Method, StatusCode};

use crate::support::{query_param, Browser, TestApp};

async fn envoy_app(trusted: bool) -> TestApp {
    let mut builder = TestApp::builder()
        .config("server", "allowed_redirect_hosts = [\"app.example\"]")
        .route("path_prefix = \"/\"\nupstream = \"{upstream}\"")
        .route("path_prefix = \"/admin\"\nupstream = \"{upstream}\"\nrequire_roles = [\"admin\"]");
    if trusted {
        builder = builder.config("server", "trusted_proxies = [\"127.0.0.1/32\"]");
    }
    builder.build().await
}

/// An authorization request as Envoy's HTTP filter sends it for the client
/// request `method original` on `host`, with `headers` (those admitted by
/// `allowed_headers`; the browser's cookie jar adds its cookie).
async fn envoy_http_check(
    app: &TestApp,
    browser: &Browser,
    method: Method,
    original: &str,
    host: &str,
    headers: &[(&str, &str)],
) -> crate::support::Page {
    let mut sent = vec![
        ("host", host),
        ("content-length", "0"),
        ("x-envoy-expected-rq-timeout-ms", "250"),
        ("x-forwarded-proto", "https"),
    ];
    sent.extend_from_slice(headers);
    browser
        .request(
            method,
            &app.url(&format!("/oauth2/ext_authz{original}")),
            &sent,
            None,
        )
        .await
}

#[tokio::test]
async fn envoy_http_ext_authz_allows_with_identity_and_strips_client_identity_headers() {
    let app = envoy_app(true).await;
    let alice = Browser::new();
    app.sign_in(&alice, "/").await;
    let allowed = envoy_http_check(
        &app,
        &alice,
        Method::POST,
        "/reports/q3?year=2026",
        "app.example",
        &[
            ("x-forwarded-user", "mallory"),
            ("x_forwarded_groups", "root"),
        ],
    )
    .await;
    assert_eq!(allowed.status, StatusCode::OK, "{}", allowed.body);
    assert_eq!(allowed.header("x-forwarded-user").as_deref(), Some("alice"));
    assert_eq!(
        allowed.header("x-forwarded-email").as_deref(),
        Some("alice@example.test")
    );
    assert_eq!(
        allowed.header("x-forwarded-groups").as_deref(),
        Some("admin")
    );
    let remove = allowed.header("x-envoy-auth-headers-to-remove").unwrap();
    let remove: Vec<&str> = remove.split(',').map(str::trim).collect();
    assert!(remove.contains(&"x_forwarded_groups"), "{remove:?}");
    assert!(remove.contains(&"x-forwarded-access-token"), "{remove:?}");
    assert!(remove.contains(&"x-portico-identity"), "{remove:?}");
    assert!(!remove.contains(&"x-forwarded-user"), "{remove:?}");

    // The root of the site is `/oauth2/ext_authz/`.
    let root = envoy_http_check(&app, &alice, Method::GET, "/", "app.example", &[]).await;
    assert_eq!(root.status, StatusCode::OK);
}

#[tokio::test]
async fn envoy_http_ext_authz_denies_401_403_and_redirects_navigations() {
    let app = envoy_app(true).await;
    let anonymous = Browser::new();
    let fetch = envoy_http_check(
        &app,
        &anonymous,
        Method::GET,
        "/reports",
        "app.example",
        &[("sec-fetch-mode", "cors")],
    )
    .await;
    assert_eq!(fetch.status, StatusCode::UNAUTHORIZED);
    assert!(fetch.header("www-authenticate").is_some());

    let navigation = envoy_http_check(
        &app,
        &anonymous,
        Method::GET,
        "/reports/q3?year=2026",
        "app.example",
        &[("sec-fetch-mode", "navigate"), ("accept", "text/html")],
    )
    .await;
    assert_eq!(navigation.status, StatusCode::FOUND, "{}", navigation.body);
    let location = navigation.location().unwrap();
    assert!(
        location.starts_with(&app.url("/oauth2/start?rd=")),
        "{location}"
    );
    assert_eq!(
        query_param(&location, "rd").as_deref(),
        Some("https://app.example/reports/q3?year=2026")
    );

    app.op.set_auto_approve(Some("bob".into()));
    let bob = Browser::new();
    app.sign_in(&bob, "/").await;
    let refused =
        envoy_http_check(&app, &bob, Method::DELETE, "/admin/x", "app.example", &[]).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    // A bearer token (Authorization is always sent by Envoy) is judged too.
    let token = format!("Bearer {}", app.op.access_token("carol"));
    let bearer = envoy_http_check(
        &app,
        &anonymous,
        Method::GET,
        "/api/items",
        "app.example",
        &[("authorization", token.as_str())],
    )
    .await;
    assert_eq!(bearer.status, StatusCode::OK, "{}", bearer.body);
    assert_eq!(bearer.header("x-forwarded-user").as_deref(), Some("carol"));
}

#[tokio::test]
async fn envoy_http_ext_authz_refuses_callers_that_are_not_trusted_proxies() {
    let app = envoy_app(false).await;
    let alice = Browser::new();
    app.sign_in(&alice, "/").await;
    let page = envoy_http_check(&app, &alice, Method::GET, "/reports", "app.example", &[]).await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    assert!(page.header("x-forwarded-user").is_none());
}

/// Starts the gRPC service on a loopback port for `app`.
async fn grpc_client(app: &TestApp) -> AuthorizationClient<tonic::transport::Channel> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(portico::edge::ext_authz_grpc::serve(
        app.state.clone(),
        listener,
        std::future::pending(),
    ));
    AuthorizationClient::connect(format!("http://{address}"))
        .await
        .unwrap()
}

/// A CheckRequest as Envoy fills it for an HTTP request.
fn check_request(method: &str, path: &str, headers: &[(&str, &str)]) -> CheckRequest {
    let headers: HashMap<String, String> = headers
        .iter()
        .map(|(name, value)| (name.to_string(), value.to_string()))
        .chain([
            (":authority".to_string(), "app.example".to_string()),
            (":method".to_string(), method.to_string()),
            (":path".to_string(), path.to_string()),
            (":scheme".to_string(), "https".to_string()),
        ])
        .collect();
    CheckRequest {
        attributes: Some(AttributeContext {
            request: Some(AttributeRequest {
                http: Some(HttpRequest {
                    id: "envoy-request-1".into(),
                    method: method.into(),
                    headers,
                    path: path.into(),
                    host: "app.example".into(),
                    scheme: "https".into(),
                    protocol: "HTTP/2".into(),
                    size: 0,
                    ..Default::default()
                }),
            }),
            ..Default::default()
        }),
    }
}

fn ok_response(response: &CheckResponse) -> &OkHttpResponse {
    assert_eq!(response.status.as_ref().unwrap().code, 0, "{response:?}");
    match &response.http_response {
        Some(HttpResponse::OkResponse(ok)) => ok,
        other => panic!("not an OkHttpResponse: {other:?}"),
    }
}

fn denied_response(response: &CheckResponse) -> &DeniedHttpResponse {
    match &response.http_response {
        Some(HttpResponse::DeniedResponse(denied)) => denied,
        other => panic!("not a DeniedHttpResponse: {other:?}"),
    }
}

fn header<'a>(
    headers: &'a [portico::edge::proto::envoy::config::core::v3::HeaderValueOption],
    name: &str,
) -> Option<&'a str> {
    headers
        .iter()
        .filter_map(|option| option.header.as_ref())
        .find(|header| header.key.eq_ignore_ascii_case(name))
        .map(|header| header.value.as_str())
}

#[tokio::test]
async fn envoy_grpc_check_allows_denies_and_redirects() {
    let app = envoy_app(true).await;
    let mut client = grpc_client(&app).await;
    let alice = Browser::new();
    app.sign_in(&alice, "/").await;
    let cookie = format!(
        "portico_session={}",
        alice.cookie("portico_session").unwrap()
    );

    // Allowed: identity to add upstream, client-sent copies removed.
    let response = client
        .check(check_request(
            "GET",
            "/reports/q3?year=2026",
            &[
                ("cookie", cookie.as_str()),
                ("x-forwarded-user", "mallory"),
                ("x_forwarded_email", "mallory@evil.example"),
            ],
        ))
        .await
        .unwrap()
        .into_inner();
    let ok = ok_response(&response);
    assert_eq!(header(&ok.headers, "x-forwarded-user"), Some("alice"));
    assert_eq!(
        header(&ok.headers, "x-forwarded-email"),
        Some("alice@example.test")
    );
    assert_eq!(header(&ok.headers, "x-forwarded-groups"), Some("admin"));
    // Set over whatever the client sent (OVERWRITE_IF_EXISTS_OR_ADD).
    assert!(ok.headers.iter().all(|option| option.append_action == 2));
    assert!(ok
        .headers_to_remove
        .contains(&"x_forwarded_email".to_string()));
    assert!(ok
        .headers_to_remove
        .contains(&"x-forwarded-access-token".to_string()));
    assert!(!ok
        .headers_to_remove
        .contains(&"x-forwarded-user".to_string()));

    // No session, a fetch: 401 with a challenge, gRPC UNAUTHENTICATED.
    let response = client
        .check(check_request(
            "GET",
            "/reports",
            &[("sec-fetch-mode", "cors")],
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(response.status.as_ref().unwrap().code, 16);
    let denied = denied_response(&response);
    assert_eq!(denied.status.as_ref().unwrap().code, 401);
    assert!(header(&denied.headers, "www-authenticate").is_some());
    assert!(denied.body.contains("\"unauthorized\""), "{}", denied.body);
    // Envoy's request id is the one the answer names.
    assert!(denied.body.contains("envoy-request-1"), "{}", denied.body);

    // No session, a navigation: 302 to the sign-in, back to the original.
    let response = client
        .check(check_request(
            "GET",
            "/reports/q3?year=2026",
            &[("sec-fetch-mode", "navigate"), ("accept", "text/html")],
        ))
        .await
        .unwrap()
        .into_inner();
    let denied = denied_response(&response);
    assert_eq!(denied.status.as_ref().unwrap().code, 302);
    let location = header(&denied.headers, "location").unwrap();
    assert!(
        location.starts_with(&app.url("/oauth2/start?rd=")),
        "{location}"
    );
    assert_eq!(
        query_param(location, "rd").as_deref(),
        Some("https://app.example/reports/q3?year=2026")
    );

    // Signed in without the role: 403, PERMISSION_DENIED.
    app.op.set_auto_approve(Some("bob".into()));
    let bob = Browser::new();
    app.sign_in(&bob, "/").await;
    let cookie = format!("portico_session={}", bob.cookie("portico_session").unwrap());
    let response = client
        .check(check_request(
            "POST",
            "/admin/x",
            &[("cookie", cookie.as_str())],
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(response.status.as_ref().unwrap().code, 7);
    assert_eq!(
        denied_response(&response).status.as_ref().unwrap().code,
        403
    );
}

#[tokio::test]
async fn envoy_grpc_check_refuses_callers_that_are_not_trusted_proxies() {
    let app = envoy_app(false).await;
    let mut client = grpc_client(&app).await;
    let status = client
        .check(check_request("GET", "/", &[]))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::PermissionDenied);
}

#[tokio::test]
async fn the_served_binary_answers_grpc_checks_on_ext_authz_grpc_listen() {
    let grpc_port = crate::support::redis::free_port();
    let portico = crate::support::process::PorticoProcess::start(
        "[[routes]]\npath_prefix = \"/\"\nupstream = \"{upstream}\"\n",
        &format!(
            "trusted_proxies = [\"127.0.0.1/32\"]\next_authz_grpc_listen = \"127.0.0.1:{grpc_port}\""
        ),
    )
    .await;
    let mut client = AuthorizationClient::connect(format!("http://127.0.0.1:{grpc_port}"))
        .await
        .unwrap_or_else(|error| panic!("{error}: {}", portico.logs()));
    let response = client
        .check(check_request(
            "GET",
            "/reports",
            &[("sec-fetch-mode", "cors")],
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(response.status.as_ref().unwrap().code, 16);
    assert_eq!(
        denied_response(&response).status.as_ref().unwrap().code,
        401
    );
}
