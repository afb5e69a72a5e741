//! The proxy: routes, rules, headers, bodies, upstream failures, and who
//! gets a redirect versus a 401.

use reqwest::{Method, StatusCode};

use crate::support::{Browser, TestApp};

#[tokio::test]
async fn client_sent_identity_headers_are_removed_in_every_spelling() {
    let app = TestApp::start().await;
    let browser = Browser::new();
    app.sign_in(&browser, "/").await;
    let page = browser
        .get_with(
            &app.url("/headers"),
            &[
                ("X-Forwarded-User", "mallory"),
                ("x_forwarded_user", "mallory2"),
                ("X_Forwarded_Email", "m@evil.test"),
                ("x-forwarded-groups", "root"),
                ("X-Forwarded-Preferred-Username", "root"),
                ("x-forwarded-access-token", "forged"),
                ("X-Portico-Identity", "forged"),
                ("X-Custom", "kept"),
            ],
        )
        .await;
    let headers = &page.json()["headers"];
    assert_eq!(headers["x-forwarded-user"], "alice");
    assert_eq!(headers["x-forwarded-email"], "alice@example.test");
    assert_eq!(headers["x-forwarded-groups"], "admin");
    assert_eq!(headers["x-forwarded-preferred-username"], "alice");
    assert!(headers.get("x_forwarded_user").is_none(), "{headers}");
    assert!(headers.get("x_forwarded_email").is_none(), "{headers}");
    assert!(
        headers.get("x-forwarded-access-token").is_none(),
        "{headers}"
    );
    assert!(headers.get("x-portico-identity").is_none(), "{headers}");
    assert_eq!(headers["x-custom"], "kept");
}

#[tokio::test]
async fn public_routes_need_no_login_and_still_strip_identity_headers() {
    let app = TestApp::builder()
        .route("path_prefix = \"/\"\nupstream = \"{upstream}\"")
        .route("path_prefix = \"/public\"\nupstream = \"{upstream}\"\npublic = true")
        .build()
        .await;
    let page = Browser::new()
        .get_with(&app.url("/public/info"), &[("X-Forwarded-User", "mallory")])
        .await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.json()["headers"].get("x-forwarded-user").is_none());
    // A sibling path that merely starts with the same letters is not public.
    let sibling = Browser::new().get(&app.url("/publication")).await;
    assert_eq!(sibling.status, StatusCode::FOUND);
}

#[tokio::test]
async fn portico_cookies_never_reach_the_upstream_but_others_do() {
    let app = TestApp::start().await;
    let browser = Browser::new();
    app.sign_in(&browser, "/").await;
    browser
        .get(&app.url("/start-another-login-in-another-tab"))
        .await;
    browser.set_cookie("app_pref", "dark");
    // The second visit is signed in, so it proxies; the login cookie from the
    // other tab is still in the jar.
    let page = browser.get(&app.url("/cookies")).await;
    let cookie = page.json()["headers"]["cookie"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(cookie, "app_pref=dark");
}

#[tokio::test]
async fn api_routes_xhr_and_json_clients_get_401_json_not_a_redirect() {
    let app = TestApp::builder()
        .route("path_prefix = \"/\"\nupstream = \"{upstream}\"")
        .route("path_prefix = \"/api\"\nupstream = \"{upstream}\"\napi = true")
        .build()
        .await;
    let browser = Browser::new();
    for (path, headers) in [
        ("/api/things", vec![]),
        ("/page", vec![("X-Requested-With", "XMLHttpRequest")]),
        ("/page", vec![("Accept", "application/json")]),
    ] {
        let page = browser.get_with(&app.url(path), &headers).await;
        assert_eq!(page.status, StatusCode::UNAUTHORIZED, "{path} {headers:?}");
        assert!(page
            .header("www-authenticate")
            .unwrap()
            .starts_with("Bearer"));
        assert_eq!(page.json()["status"], 401);
        assert_eq!(page.json()["error"], "unauthorized");
        assert!(page.json()["request_id"].is_string());
    }
    let navigation = browser.get(&app.url("/page")).await;
    assert_eq!(navigation.status, StatusCode::FOUND);
}

#[tokio::test]
async fn required_roles_admit_holders_and_show_others_a_403_page() {
    let app = TestApp::builder()
        .route("path_prefix = \"/\"\nupstream = \"{upstream}\"")
        .route("path_prefix = \"/admin\"\nupstream = \"{upstream}\"\nrequire_roles = [\"admin\", \"ops\"]")
        .build()
        .await;
    let alice = Browser::new();
    app.sign_in(&alice, "/").await;
    assert_eq!(
        alice.get(&app.url("/admin/panel")).await.status,
        StatusCode::OK
    );

    app.op.set_auto_approve(Some("bob".into()));
    let bob = Browser::new();
    app.sign_in(&bob, "/").await;
    let page = bob.get(&app.url("/admin/panel")).await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    assert!(page.body.contains("Access denied"), "{}", page.body);
    assert!(page.body.contains(&page.header("x-request-id").unwrap()));
    let json = bob
        .get_with(&app.url("/admin/panel"), &[("Accept", "application/json")])
        .await;
    assert_eq!(json.status, StatusCode::FORBIDDEN);
    assert_eq!(json.json()["error"], "forbidden");
}

#[tokio::test]
async fn longest_prefix_route_wins_and_unknown_paths_get_404() {
    let app = TestApp::builder()
        .route("path_prefix = \"/app\"\nupstream = \"{upstream}\"\npublic = true")
        .route("path_prefix = \"/app/admin\"\nupstream = \"{upstream}\"")
        .build()
        .await;
    let browser = Browser::new();
    assert_eq!(
        browser.get(&app.url("/app/home")).await.status,
        StatusCode::OK
    );
    assert_eq!(
        browser.get(&app.url("/app/admin/x")).await.status,
        StatusCode::FOUND
    );
    let missing = browser.get(&app.url("/elsewhere")).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert!(missing.body.contains("Page not found"));
}

#[tokio::test]
async fn dot_segments_cannot_walk_out_of_a_public_route() {
    let app = TestApp::builder()
        .route("path_prefix = \"/\"\nupstream = \"{upstream}\"")
        .route("path_prefix = \"/public\"\nupstream = \"{upstream}\"\npublic = true")
        .build()
        .await;
    // HTTP clients normalise dot segments, so write the request by hand.
    for path in [
        "/public/../admin",
        "/public/%2e%2e/admin",
        "/public/.%2E/admin",
    ] {
        let answer = raw_request(
            &app.base,
            &format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
        )
        .await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{path}: {answer}");
    }
}

#[tokio::test]
async fn request_and_response_bodies_stream_through() {
    let app = TestApp::start().await;
    let browser = Browser::new();
    app.sign_in(&browser, "/").await;
    let body = "x".repeat(3 * 1024 * 1024);
    let page = browser
        .request(
            Method::POST,
            &app.url("/echo-body"),
            &[],
            Some(("application/octet-stream", body.clone())),
        )
        .await;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(page.body.len(), body.len());
    let streamed = browser.get(&app.url("/stream?chunks=50")).await;
    assert_eq!(streamed.status, StatusCode::OK);
    assert_eq!(streamed.body.len(), 50 * 1024);
}

#[tokio::test]
async fn forwarded_headers_are_set_and_upstream_redirects_pass_through() {
    let app = TestApp::start().await;
    let browser = Browser::new();
    app.sign_in(&browser, "/").await;
    let page = browser
        .get_with(&app.url("/fwd"), &[("X-Forwarded-For", "6.6.6.6")])
        .await;
    let headers = &page.json()["headers"];
    assert_eq!(headers["x-forwarded-for"], "127.0.0.1");
    assert_eq!(headers["x-forwarded-proto"], "http");
    assert_eq!(
        headers["x-forwarded-host"],
        app.base.trim_start_matches("http://")
    );
    assert_eq!(
        headers["x-request-id"],
        page.header("x-request-id").unwrap().as_str()
    );
    let redirect = browser.get(&app.url("/status/302")).await;
    assert_eq!(redirect.status, StatusCode::FOUND);
}

#[tokio::test]
async fn upstream_refusing_connections_gets_a_502_page() {
    let port = crate::support::redis::free_port();
    let app = TestApp::builder()
        .route(&format!(
            "path_prefix = \"/\"\nupstream = \"http://127.0.0.1:{port}\""
        ))
        .build()
        .await;
    let browser = Browser::new();
    app.sign_in(&browser, "/").await;
    let page = browser.get(&app.url("/down")).await;
    assert_eq!(page.status, StatusCode::BAD_GATEWAY);
    assert!(page.body.contains("could not be reached"), "{}", page.body);
}

#[tokio::test]
async fn slow_upstream_gets_a_504_page() {
    let app = TestApp::builder()
        .config("server", "upstream_timeout = \"200ms\"")
        .build()
        .await;
    let browser = Browser::new();
    app.sign_in(&browser, "/").await;
    let page = browser.get(&app.url("/slow?ms=3000")).await;
    assert_eq!(page.status, StatusCode::GATEWAY_TIMEOUT);
    assert!(
        page.body.contains("did not answer in time"),
        "{}",
        page.body
    );
}

#[tokio::test]
async fn one_pooled_upstream_connection_serves_sequential_requests() {
    let app = TestApp::start().await;
    let browser = Browser::new();
    app.sign_in(&browser, "/").await;
    let before = app.upstream.connections_accepted();
    for _ in 0..20 {
        assert_eq!(
            browser.get(&app.url("/pooled")).await.status,
            StatusCode::OK
        );
    }
    assert_eq!(
        app.upstream.connections_accepted() - before,
        0,
        "the sign-in's connection is reused"
    );
}

#[tokio::test]
async fn an_empty_post_reaches_the_upstream_with_its_zero_length() {
    let app = TestApp::start().await;
    let browser = Browser::new();
    app.sign_in(&browser, "/").await;
    let page = browser
        .request(
            reqwest::Method::POST,
            &app.url("/headers"),
            &[("Content-Length", "0")],
            Some(("text/plain", String::new())),
        )
        .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert_eq!(page.json()["headers"]["content-length"], "0");
}

#[tokio::test]
async fn streamed_and_empty_answers_hand_their_connection_back_too() {
    let app = TestApp::start().await;
    let browser = Browser::new();
    app.sign_in(&browser, "/").await;
    // Warm: the pool holds a connection from here on.
    assert_eq!(
        browser.get(&app.url("/stream")).await.status,
        StatusCode::OK
    );
    let before = app.upstream.connections_accepted();
    for _ in 0..10 {
        let streamed = browser.get(&app.url("/stream")).await;
        assert_eq!(streamed.status, StatusCode::OK);
        assert!(!streamed.body.is_empty());
        assert_eq!(
            browser.get(&app.url("/status/204")).await.status,
            StatusCode::NO_CONTENT
        );
    }
    assert_eq!(
        app.upstream.connections_accepted() - before,
        0,
        "every answer, streamed or empty, left its connection reusable"
    );
}

/// Sends `request` as raw bytes and returns the raw answer.
pub async fn raw_request(base: &str, request: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let address = base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        stream.read_to_end(&mut answer),
    )
    .await;
    String::from_utf8_lossy(&answer).into_owned()
}
