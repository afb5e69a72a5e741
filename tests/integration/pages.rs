//! The answers portico gives itself, without a browser: every status it answers on its own is
//! a page for browsers and JSON for programs, pages carry the configured app name and no
//! inline style or script, the sign-out page knows when nobody is signed in, a callback for a
//! sign-in nobody started never shows the provider's words, and "Sign in with another account"
//! ends the session and comes back to the refused page through the provider.

use reqwest::StatusCode;

use crate::support::browser::query_param;
use crate::support::{Browser, TestApp};

const PAGE: &str = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";
const JSON: &str = "application/json";

/// One request portico answers itself, and what it must answer.
struct Case {
    what: &'static str,
    method: reqwest::Method,
    path: String,
    headers: Vec<(&'static str, String)>,
    body: Option<String>,
    status: StatusCode,
    code: &'static str,
    title: &'static str,
}

fn case(what: &'static str, path: &str, status: StatusCode, code: &'static str) -> Case {
    Case {
        what,
        method: reqwest::Method::GET,
        path: path.to_string(),
        headers: Vec::new(),
        body: None,
        status,
        code,
        title: "",
    }
}

async fn send(app: &TestApp, case: &Case, accept: &str) -> reqwest::Response {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
        .unwrap();
    let mut request = client
        .request(case.method.clone(), app.url(&case.path))
        .header("accept", accept);
    for (name, value) in &case.headers {
        request = request.header(*name, value);
    }
    if let Some(body) = &case.body {
        request = request.body(body.clone());
    }
    request.send().await.unwrap()
}

#[tokio::test]
async fn every_status_portico_answers_itself_is_a_page_for_browsers_and_json_for_programs() {
    let app = TestApp::builder()
        .config("server", "max_body_bytes = \"1KiB\"")
        .config("server", "max_cookie_bytes = \"1KiB\"")
        .config("server", "max_query_bytes = \"1KiB\"")
        .build()
        .await;
    let mut cases = vec![
        Case {
            title: "Page not found",
            ..case(
                "setup page when off",
                "/oauth2/setup",
                StatusCode::NOT_FOUND,
                "not_found",
            )
        },
        Case {
            title: "Page not found",
            ..case(
                "unknown endpoint under /oauth2/",
                "/oauth2/nothing-here",
                StatusCode::NOT_FOUND,
                "not_found",
            )
        },
        Case {
            title: "Page not found",
            ..case(
                "the bare /oauth2/ prefix",
                "/oauth2/",
                StatusCode::NOT_FOUND,
                "not_found",
            )
        },
        Case {
            title: "Page not found",
            ..case(
                "unknown endpoint under /.well-known/portico/",
                "/.well-known/portico/other.json",
                StatusCode::NOT_FOUND,
                "not_found",
            )
        },
        Case {
            method: reqwest::Method::POST,
            title: "Method not allowed",
            ..case(
                "POST to a GET endpoint",
                "/oauth2/start",
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
            )
        },
        Case {
            method: reqwest::Method::DELETE,
            title: "Method not allowed",
            ..case(
                "DELETE to sign-out",
                "/oauth2/sign_out",
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
            )
        },
        Case {
            method: reqwest::Method::POST,
            body: Some("x".repeat(2048)),
            title: "Request too large",
            ..case(
                "a body over max_body_bytes",
                "/upload",
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
            )
        },
        Case {
            headers: vec![("cookie", format!("big={}", "c".repeat(2048)))],
            title: "Request too large",
            ..case(
                "cookies over max_cookie_bytes",
                "/page",
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "cookies_too_large",
            )
        },
        Case {
            title: "Request too large",
            ..case(
                "a query over max_query_bytes",
                &format!("/page?q={}", "q".repeat(2048)),
                StatusCode::URI_TOO_LONG,
                "query_too_long",
            )
        },
        Case {
            title: "Bad request",
            ..case(
                "a start query that cannot be read",
                "/oauth2/start?rd=/a&rd=/b",
                StatusCode::BAD_REQUEST,
                "bad_request",
            )
        },
    ];
    // A sign-out form portico cannot read (wrong content type) is a page too.
    cases.push(Case {
        method: reqwest::Method::POST,
        headers: vec![("content-type", "text/plain".to_string())],
        body: Some("csrf=x".to_string()),
        title: "Bad request",
        ..case(
            "a sign-out form that is not a form",
            "/oauth2/sign_out",
            StatusCode::BAD_REQUEST,
            "bad_request",
        )
    });
    for case in &cases {
        let page = send(&app, case, PAGE).await;
        assert_eq!(page.status(), case.status, "{} (page)", case.what);
        if case.status == StatusCode::METHOD_NOT_ALLOWED {
            let allow = page
                .headers()
                .get("allow")
                .map(|value| value.to_str().unwrap().to_string());
            assert!(
                allow.as_deref().is_some_and(|allow| allow.contains("GET")),
                "{}: Allow is {allow:?}",
                case.what
            );
        }
        let content_type = page.headers()["content-type"].to_str().unwrap().to_string();
        assert!(
            content_type.starts_with("text/html"),
            "{}: {content_type}",
            case.what
        );
        let body = page.text().await.unwrap();
        assert!(
            body.contains(&format!("<h1>{}</h1>", case.title)),
            "{}: {body}",
            case.what
        );
        assert!(body.contains("Request id: <code>"), "{}: {body}", case.what);

        let program = send(&app, case, JSON).await;
        assert_eq!(program.status(), case.status, "{} (JSON)", case.what);
        let json: serde_json::Value = program.json().await.unwrap();
        assert_eq!(
            json["status"],
            case.status.as_u16(),
            "{}: {json}",
            case.what
        );
        assert_eq!(json["error"], case.code, "{}: {json}", case.what);
        assert!(json["request_id"].as_str().is_some_and(|id| id.len() > 4));
    }
}

#[tokio::test]
async fn a_callback_for_a_sign_in_nobody_started_never_shows_the_provider_s_words() {
    let app = TestApp::start().await;
    let browser = Browser::new();
    let words = "Your+account+is+locked.+Call+0800-555-0100+now";
    for state in ["forged-state", ""] {
        let page = browser
            .get_with(
                &app.url(&format!(
                    "/oauth2/callback?error=access_denied&error_description={words}&state={state}"
                )),
                &[("accept", PAGE)],
            )
            .await;
        assert_eq!(page.status, StatusCode::BAD_REQUEST, "{}", page.body);
        assert!(page.body.contains("Sign-in link expired"), "{}", page.body);
        assert!(!page.body.contains("0800"), "{}", page.body);
        assert!(!page.body.contains("locked"), "{}", page.body);
        assert!(!page.body.contains("access_denied"), "{}", page.body);
    }
}

#[tokio::test]
async fn the_provider_s_refusal_is_still_explained_for_a_sign_in_this_browser_started() {
    let app = TestApp::start().await;
    app.op
        .set_misbehavior(portico::devop::Misbehavior::AuthorizeError);
    let browser = Browser::new();
    let page = browser.open(&app.url("/documents/7")).await;
    assert_eq!(page.status, StatusCode::UNAUTHORIZED, "{}", page.body);
    assert!(
        page.body.contains("Sign-in was not completed"),
        "{}",
        page.body
    );
    assert!(
        page.body
            .contains("the dev OP was told to refuse this sign-in"),
        "{}",
        page.body
    );
}

#[tokio::test]
async fn the_sign_out_page_without_a_session_says_so_and_offers_to_sign_in() {
    let app = TestApp::start().await;
    let browser = Browser::new();
    let page = browser
        .get(&app.url("/oauth2/sign_out?rd=%2Freports%3Fyear%3D2026"))
        .await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("You are not signed in"), "{}", page.body);
    assert!(!page.body.contains("Sign out?"), "{}", page.body);
    let link = page
        .body
        .split("id=\"sign-in\" href=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap()
        .replace("&#38;", "&");
    let start = format!("{}{link}", app.base);
    assert_eq!(
        query_param(&start, "rd").as_deref(),
        Some(app.url("/reports?year=2026").as_str()),
        "{link}"
    );
    // The link signs in and comes back to where the person was going.
    let landing = browser.follow(&start).await;
    assert_eq!(
        landing.last().unwrap().url,
        app.url("/reports?year=2026"),
        "{:?}",
        landing.iter().map(|hop| &hop.url).collect::<Vec<_>>()
    );

    // A cookie whose session is gone is no session either.
    let stale = Browser::new();
    stale.set_cookie(
        "portico_session",
        &browser.cookie("portico_session").unwrap(),
    );
    let confirm = stale.get(&app.url("/oauth2/sign_out")).await;
    assert!(confirm.body.contains("Sign out?"), "{}", confirm.body);
    app.state
        .sessions
        .end_all_of_subject("alice")
        .await
        .unwrap();
    let gone = stale.get(&app.url("/oauth2/sign_out")).await;
    assert!(gone.body.contains("You are not signed in"), "{}", gone.body);
}

#[tokio::test]
async fn app_name_and_logo_name_the_app_on_portico_s_pages() {
    let app = TestApp::builder()
        .config("server", "app_name = \"Acme Reports\"")
        .config("server", "logo_url = \"/static/acme.svg\"")
        .build()
        .await;
    let browser = Browser::new();
    for path in ["/oauth2/nothing", "/oauth2/sign_out", "/oauth2/signed_out"] {
        let page = browser.get_with(&app.url(path), &[("accept", PAGE)]).await;
        let title = page
            .body
            .split("<title>")
            .nth(1)
            .and_then(|rest| rest.split("</title>").next())
            .unwrap();
        assert!(title.ends_with(" · Acme Reports"), "{path}: {title}");
        assert!(
            page.body.contains(
                "<p class=\"brand\"><img class=\"logo\" src=\"/static/acme.svg\" alt=\"\">Acme Reports</p>"
            ),
            "{path}: {}",
            page.body
        );
    }
    // Without the keys, pages say "portico".
    let plain = TestApp::start().await;
    let page = Browser::new().get(&plain.url("/oauth2/signed_out")).await;
    assert!(
        page.body
            .contains("<p class=\"brand\"><span class=\"mark\"></span>portico</p>"),
        "{}",
        page.body
    );
}

#[tokio::test]
async fn pages_use_the_served_stylesheet_and_no_inline_style_or_script() {
    let app = TestApp::builder()
        .config("server", "setup_page = true")
        .build()
        .await;
    let browser = Browser::new();
    let stylesheet = browser.get(&app.url("/oauth2/assets/portico.css")).await;
    assert_eq!(stylesheet.status, StatusCode::OK);
    assert_eq!(
        stylesheet.header("content-type").as_deref(),
        Some("text/css; charset=utf-8")
    );
    assert!(stylesheet.body.contains(".request-id"));
    assert!(
        !stylesheet.body.contains("break-all"),
        "no rule may split words anywhere"
    );
    for path in [
        "/oauth2/setup",
        "/oauth2/sign_out",
        "/oauth2/signed_out",
        "/oauth2/x",
    ] {
        let page = browser.get(&app.url(path)).await;
        assert!(
            page.body
                .contains("<link rel=\"stylesheet\" href=\"/oauth2/assets/portico.css\">"),
            "{path}: {}",
            page.body
        );
        for inline in ["<style", "style=", "<script"] {
            assert!(
                !page.body.contains(inline),
                "{path} has {inline}: {}",
                page.body
            );
        }
    }
}

#[tokio::test]
async fn sign_in_with_another_account_ends_the_session_and_returns_to_the_refused_page() {
    let app = TestApp::builder()
        .auto_approve(Some("bob"))
        .route("path_prefix = \"/\"\nupstream = \"{upstream}\"")
        .route("path_prefix = \"/admin\"\nupstream = \"{upstream}\"\nrequire_roles = [\"admin\"]")
        .build()
        .await;
    let browser = Browser::new();
    let refused = app.sign_in(&browser, "/admin/users?page=2").await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.body);
    let bob_session = browser.cookie("portico_session").unwrap();
    let field = |name: &str| {
        refused
            .body
            .split(&format!("name=\"{name}\" value=\""))
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .unwrap_or_else(|| panic!("no {name} field: {}", refused.body))
            .replace("&#38;", "&")
    };
    assert_eq!(field("rd"), app.url("/admin/users?page=2"));
    assert_eq!(field("switch_account"), "1");

    app.op.set_auto_approve(Some("alice".to_string()));
    let switched = browser
        .post_form(
            &app.url("/oauth2/sign_out"),
            &[
                ("csrf", &field("csrf")),
                ("switch_account", "1"),
                ("rd", &field("rd")),
            ],
            &[("sec-fetch-site", "same-origin")],
        )
        .await;
    // Straight to the provider, asking it to let the person choose an account (the dev OP
    // lists `select_account` in prompt_values_supported), with the old session gone.
    assert_eq!(switched.status, StatusCode::FOUND, "{}", switched.body);
    let location = switched.location().unwrap();
    assert!(
        location.starts_with(&format!("{}/authorize?", app.op.issuer())),
        "{location}"
    );
    assert_eq!(
        query_param(&location, "prompt").as_deref(),
        Some("select_account")
    );
    assert!(
        switched
            .set_cookies()
            .iter()
            .any(|line| line.starts_with("portico_session=") && line.contains("Max-Age=0")),
        "{:?}",
        switched.set_cookies()
    );
    assert_eq!(app.op.stats().end_session_requests, 0);

    let hops = browser.follow(&location).await;
    let landing = hops.last().unwrap();
    assert_eq!(landing.url, app.url("/admin/users?page=2"));
    assert_eq!(landing.status, StatusCode::OK, "{}", landing.body);
    assert_eq!(landing.json()["headers"]["x-forwarded-user"], "alice");

    // Bob's session is over: its cookie no longer signs anyone in.
    let old = Browser::new();
    old.set_cookie("portico_session", &bob_session);
    let again = old
        .get_with(&app.url("/admin/users"), &[("accept", JSON)])
        .await;
    assert_eq!(again.status, StatusCode::UNAUTHORIZED);
}
