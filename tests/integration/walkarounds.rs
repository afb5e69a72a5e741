//! Issue 17, tried as an attacker would: a signed-in user without the
//! `admin` role, `/admin` guarded by `require_roles = ["admin"]`, `/`
//! open to anyone signed in, and an upstream that reads paths leniently
//! (decodes, merges slashes, drops `;` parameters, takes `\` for `/`).
//! No spelling of `/admin` may get the `/` route's answer, through the proxy
//! or through forward-auth; routing headers from untrusted clients stop at
//! portico; protected answers are private; portico's pages cannot be framed.

use reqwest::StatusCode;
use serde_json::Value;

use crate::proxy::raw_request;
use crate::support::lenient_upstream::LenientUpstream;
use crate::support::{Browser, TestApp};

/// The paths of issue 17 that reached the upstream under `/`'s rules.
const WALK_AROUNDS: [&str; 11] = [
    "/%61dmin/x",
    "/adm%69n/x",
    "//admin/x",
    "///admin/x",
    "/admin%2fx",
    "/admin%2Fx",
    "/%2fadmin/x",
    "/admin;x",
    "/admin;jsessionid=1/x",
    "/admin%5cx",
    "/admin%00/x",
];

/// The answer to a hand-written request (HTTP clients would tidy the path).
struct Answer {
    status: u16,
    head: String,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.trim()
                .eq_ignore_ascii_case(name)
                .then(|| value.trim().to_string())
        })
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
}

async fn send(app: &TestApp, target: &str, headers: &[(&str, &str)]) -> Answer {
    let mut request = format!("GET {target} HTTP/1.1\r\nHost: gateway.test\r\nAccept: application/json\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    let text = raw_request(&app.base, &request).await;
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no answer to {target}: {text:?}"));
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    Answer {
        status,
        head: head.to_string(),
        body: if chunked {
            dechunk(body)
        } else {
            body.to_string()
        },
    }
}

/// A chunked body's data (RFC 9112 §7.1), for these small answers.
fn dechunk(mut body: &str) -> String {
    let mut data = String::new();
    while let Some((size_line, rest)) = body.split_once("\r\n") {
        let size = usize::from_str_radix(size_line.split(';').next().unwrap().trim(), 16).unwrap();
        if size == 0 {
            break;
        }
        data.push_str(&rest[..size]);
        body = &rest[size + 2..];
    }
    data
}

async fn guarded_app(upstream: &LenientUpstream, extra: &str) -> TestApp {
    TestApp::builder()
        .config("server", "trusted_proxies = [\"127.0.0.1/32\"]")
        .route(&format!(
            "path_prefix = \"/\"\nupstream = \"{}\"\n{extra}",
            upstream.url()
        ))
        .route(&format!(
            "path_prefix = \"/admin\"\nupstream = \"{}\"\nrequire_roles = [\"admin\"]\n{extra}",
            upstream.url()
        ))
        .auto_approve(Some("bob"))
        .build()
        .await
}

async fn session_cookie(app: &TestApp, user: &str) -> String {
    app.op.set_auto_approve(Some(user.to_string()));
    let browser = Browser::new();
    app.sign_in(&browser, "/").await;
    format!(
        "portico_session={}",
        browser.cookie("portico_session").unwrap()
    )
}

#[tokio::test]
async fn no_spelling_of_admin_gets_the_root_routes_answer_through_the_proxy_or_forward_auth() {
    let upstream = LenientUpstream::start().await;
    let app = guarded_app(&upstream, "").await;
    let bob = session_cookie(&app, "bob").await;
    let served_before = upstream.served().len();
    for path in WALK_AROUNDS {
        let proxied = send(&app, path, &[("Cookie", &bob)]).await;
        assert!(
            matches!(proxied.status, 400 | 403),
            "{path}: {} {}",
            proxied.status,
            proxied.body
        );
        let judged = send(
            &app,
            "/oauth2/auth",
            &[("Cookie", &bob), ("X-Forwarded-Uri", path)],
        )
        .await;
        assert_eq!(
            judged.status, proxied.status,
            "{path}: forward-auth and the proxy must agree ({})",
            judged.body
        );
    }
    // Nothing reached the upstream: least of all a path it serves as /admin.
    assert_eq!(
        upstream.served().len(),
        served_before,
        "{:?}",
        upstream.served()
    );
    // The plain spelling is refused by the admin rule, as before.
    assert_eq!(
        send(&app, "/admin/x", &[("Cookie", &bob)]).await.status,
        403
    );
    // bob still reaches the rest, also by an unusual spelling.
    let merged = send(&app, "//reports//2026?q=%2F%61", &[("Cookie", &bob)]).await;
    assert_eq!(merged.status, 200, "{}", merged.body);
    assert_eq!(merged.json()["raw_path"], "/reports/2026");
    assert_eq!(
        merged.json()["raw_query"],
        "q=%2F%61",
        "the query goes as it came"
    );
}

#[tokio::test]
async fn what_the_admin_rule_judged_is_exactly_what_the_upstream_receives() {
    let upstream = LenientUpstream::start().await;
    let app = guarded_app(&upstream, "").await;
    let alice = session_cookie(&app, "alice").await;
    for path in ["/%61dmin/x", "/adm%69n/x", "//admin/x", "///admin/x"] {
        let answer = send(&app, path, &[("Cookie", &alice)]).await;
        assert_eq!(answer.status, 200, "{path}: {}", answer.body);
        assert_eq!(answer.json()["raw_path"], "/admin/x", "{path}");
        assert_eq!(answer.json()["served"], "/admin/x", "{path}");
        assert_eq!(answer.json()["user"], "alice");
        let judged = send(
            &app,
            "/oauth2/auth",
            &[("Cookie", &alice), ("X-Forwarded-Uri", path)],
        )
        .await;
        assert_eq!(judged.status, 200, "{path}");
    }
    // The forms that need an opt-in are refused even for the admin.
    for path in ["/admin%2Fx", "/admin;x", "/admin%5cx", "/admin%00/x"] {
        assert_eq!(
            send(&app, path, &[("Cookie", &alice)]).await.status,
            400,
            "{path}"
        );
    }
}

#[tokio::test]
async fn opted_in_encoded_slashes_and_parameters_stay_within_their_route() {
    let upstream = LenientUpstream::start().await;
    let app = guarded_app(
        &upstream,
        "allow_encoded_slashes = true\nallow_path_parameters = true",
    )
    .await;
    let bob = session_cookie(&app, "bob").await;
    for path in WALK_AROUNDS {
        let status = send(&app, path, &[("Cookie", &bob)]).await.status;
        assert!(matches!(status, 400 | 403), "{path}: {status}");
    }
    let files = send(&app, "/files/a%2fb;v=2", &[("Cookie", &bob)]).await;
    assert_eq!(files.status, 200, "{}", files.body);
    assert_eq!(files.json()["raw_path"], "/files/a%2Fb;v=2");
    assert!(upstream
        .served()
        .iter()
        .all(|served| !served.starts_with("/admin")));
}

#[tokio::test]
async fn a_case_insensitive_route_catches_every_letter_case() {
    let upstream = LenientUpstream::start().await;
    let app = TestApp::builder()
        .route(&format!("path_prefix = \"/\"\nupstream = \"{}\"", upstream.url()))
        .route(&format!(
            "path_prefix = \"/admin\"\nupstream = \"{}\"\nrequire_roles = [\"admin\"]\ncase_insensitive = true",
            upstream.url()
        ))
        .build()
        .await;
    let bob = session_cookie(&app, "bob").await;
    for path in ["/ADMIN/x", "/Admin", "/%41dmin/x"] {
        assert_eq!(
            send(&app, path, &[("Cookie", &bob)]).await.status,
            403,
            "{path}"
        );
    }
}

#[tokio::test]
async fn forward_auth_refuses_what_it_cannot_judge() {
    let (capture, _guard) = crate::logs::capture(portico::config::LogFormat::Text);
    // The default: no trusted proxies.
    let app = TestApp::builder()
        .route("path_prefix = \"/app\"\nupstream = \"{upstream}\"")
        .route("path_prefix = \"/admin\"\nupstream = \"{upstream}\"\nrequire_roles = [\"admin\"]")
        .auto_approve(Some("bob"))
        .build()
        .await;
    let browser = Browser::new();
    app.sign_in(&browser, "/app/").await;
    let bob = format!(
        "portico_session={}",
        browser.cookie("portico_session").unwrap()
    );
    for header in ["X-Forwarded-Uri", "X-Original-URI", "X-Forwarded-Host"] {
        let answer = send(
            &app,
            "/oauth2/auth",
            &[("Cookie", &bob), (header, "/admin/x")],
        )
        .await;
        assert_eq!(answer.status, 400, "{header}: {}", answer.body);
        assert_eq!(answer.json()["error"], "untrusted_forward_auth");
        assert!(
            answer.json()["message"]
                .as_str()
                .unwrap()
                .contains("trusted_proxies"),
            "{}",
            answer.body
        );
    }
    let logs = capture.text();
    assert!(
        logs.lines()
            .any(|line| line.contains("forward-auth refused") && line.contains("trusted_proxies")),
        "{logs}"
    );
    // A browser gets a page saying the same.
    let page = raw_request(
        &app.base,
        &format!("GET /oauth2/auth HTTP/1.1\r\nHost: x\r\nAccept: text/html\r\nCookie: {bob}\r\nX-Forwarded-Uri: /admin/x\r\nConnection: close\r\n\r\n"),
    )
    .await;
    assert!(page.starts_with("HTTP/1.1 400"), "{page}");
    assert!(page.contains("trusted_proxies"), "{page}");

    // Trusted, but no route covers the URI: denied, not allowed.
    let trusted = TestApp::builder()
        .config("server", "trusted_proxies = [\"127.0.0.1/32\"]")
        .route("path_prefix = \"/app\"\nupstream = \"{upstream}\"")
        .auto_approve(Some("bob"))
        .build()
        .await;
    let browser = Browser::new();
    trusted.sign_in(&browser, "/app/").await;
    let bob = format!(
        "portico_session={}",
        browser.cookie("portico_session").unwrap()
    );
    let nowhere = send(
        &trusted,
        "/oauth2/auth",
        &[("Cookie", &bob), ("X-Forwarded-Uri", "/elsewhere/x")],
    )
    .await;
    assert_eq!(nowhere.status, 403, "{}", nowhere.body);
    assert_eq!(nowhere.json()["error"], "no_route");
    let covered = send(
        &trusted,
        "/oauth2/auth",
        &[("Cookie", &bob), ("X-Forwarded-Uri", "/app/x")],
    )
    .await;
    assert_eq!(covered.status, 200);
    let junk = send(
        &trusted,
        "/oauth2/auth",
        &[
            ("Cookie", &bob),
            ("X-Forwarded-Uri", "http://evil.example/app"),
        ],
    )
    .await;
    assert_eq!(junk.status, 400);
}

#[tokio::test]
async fn routing_headers_from_untrusted_clients_do_not_reach_the_upstream() {
    let app = TestApp::start().await;
    let browser = Browser::new();
    app.sign_in(&browser, "/").await;
    let sent = [
        ("Forwarded", "for=6.6.6.6;host=evil"),
        ("X-Real-IP", "6.6.6.6"),
        ("X-Forwarded-Port", "8443"),
        ("X-Forwarded-Prefix", "/admin"),
        ("X-Forwarded-Server", "evil"),
        ("X-Original-URL", "/admin/x"),
        ("X-Rewrite-URL", "/admin/x"),
        ("True-Client-IP", "6.6.6.6"),
    ];
    let page = browser.get_with(&app.url("/page"), &sent).await;
    assert_eq!(page.status, StatusCode::OK);
    let headers = &page.json()["headers"];
    for (name, _) in sent {
        assert!(
            headers.get(name.to_ascii_lowercase()).is_none(),
            "{name} reached the upstream: {headers}"
        );
    }
    assert_eq!(headers["x-forwarded-for"], "127.0.0.1");

    // From a trusted proxy they pass, and Forwarded gains this hop.
    let behind = TestApp::builder()
        .config("server", "trusted_proxies = [\"127.0.0.1/32\"]")
        .build()
        .await;
    let browser = Browser::new();
    behind.sign_in(&browser, "/").await;
    let page = browser.get_with(&behind.url("/page"), &sent).await;
    let headers = &page.json()["headers"];
    assert_eq!(headers["forwarded"], "for=6.6.6.6;host=evil, for=127.0.0.1");
    assert_eq!(headers["x-real-ip"], "6.6.6.6");
    assert_eq!(headers["x-original-url"], "/admin/x");
}

#[tokio::test]
async fn protected_answers_are_private_and_vary_on_the_cookie() {
    let upstream = LenientUpstream::start().await;
    let app = TestApp::builder()
        .route(&format!(
            "path_prefix = \"/\"\nupstream = \"{}\"",
            upstream.url()
        ))
        .route(&format!(
            "path_prefix = \"/shared\"\nupstream = \"{}\"\ncache_control_private = false",
            upstream.url()
        ))
        .route(&format!(
            "path_prefix = \"/open\"\nupstream = \"{}\"\npublic = true",
            upstream.url()
        ))
        .build()
        .await;
    let alice = session_cookie(&app, "alice").await;
    let cases = [
        ("/page", "private"),
        (
            "/page?cache_control=public,%20max-age=600",
            "private, max-age=600",
        ),
        ("/page?cache_control=no-store", "no-store"),
        (
            "/page?cache_control=private,%20max-age=5",
            "private, max-age=5",
        ),
        (
            "/shared/x?cache_control=public,%20max-age=600",
            "public, max-age=600",
        ),
        (
            "/open/x?cache_control=public,%20max-age=600",
            "public, max-age=600",
        ),
    ];
    for (target, expected) in cases {
        let answer = send(&app, target, &[("Cookie", &alice)]).await;
        assert_eq!(answer.status, 200, "{target}");
        assert_eq!(
            answer.header("cache-control").as_deref(),
            Some(expected),
            "{target}"
        );
        let protected = !target.starts_with("/shared") && !target.starts_with("/open");
        assert_eq!(
            answer
                .header("vary")
                .is_some_and(|vary| vary.contains("Cookie")),
            protected,
            "{target}: {:?}",
            answer.header("vary")
        );
    }
    // A bearer token decided: Vary names Authorization.
    let token = app.op.access_token("alice");
    let answer = send(
        &app,
        "/page",
        &[("Authorization", &format!("Bearer {token}"))],
    )
    .await;
    assert_eq!(answer.header("cache-control").as_deref(), Some("private"));
    assert_eq!(answer.header("vary").as_deref(), Some("Authorization"));
}

fn assert_cannot_be_framed(what: &str, answer: &Answer) {
    let policy = answer
        .header("content-security-policy")
        .unwrap_or_else(|| panic!("{what}: no CSP in {}", answer.head));
    assert!(
        policy.contains("frame-ancestors 'none'"),
        "{what}: {policy}"
    );
    assert!(!policy.contains("unsafe-inline"), "{what}: {policy}");
    assert_eq!(
        answer.header("x-frame-options").as_deref(),
        Some("DENY"),
        "{what}"
    );
    assert_eq!(
        answer.header("x-content-type-options").as_deref(),
        Some("nosniff"),
        "{what}"
    );
    assert_eq!(
        answer.header("referrer-policy").as_deref(),
        Some("no-referrer"),
        "{what}"
    );
}

#[tokio::test]
async fn every_page_portico_and_the_dev_op_render_cannot_be_framed_or_sniffed() {
    let app = TestApp::builder()
        .route("path_prefix = \"/\"\nupstream = \"{upstream}\"")
        .route("path_prefix = \"/admin\"\nupstream = \"{upstream}\"\nrequire_roles = [\"admin\"]")
        .config("server", "setup_page = true")
        // A host name, so the sign-in page offers passkeys (and its script).
        .op_on_localhost()
        .auto_approve(None)
        .build()
        .await;
    // Anonymous: the redirect to sign in, and the provider's sign-in page.
    let start = send(&app, "/oauth2/start?rd=/x", &[]).await;
    assert_eq!(start.status, 302);
    assert_cannot_be_framed("sign-in redirect", &start);
    let login = Browser::new()
        .get_with(
            &start.header("location").unwrap(),
            &[("Accept", "text/html")],
        )
        .await;
    assert_eq!(login.status, StatusCode::OK, "{}", login.body);
    assert!(login.body.contains("<script>"), "the dev OP's sign-in page");
    let login_policy = login.header("content-security-policy").unwrap();
    assert!(login_policy.contains("frame-ancestors 'none'"));
    assert!(login_policy.contains("script-src 'sha256-"));
    assert_eq!(login.header("x-frame-options").as_deref(), Some("DENY"));

    app.op.set_auto_approve(Some("bob".into()));
    let bob = session_cookie(&app, "bob").await;
    let html = ("Accept", "text/html");
    let pages = [
        ("sign-out page", "/oauth2/sign_out", Some(&bob)),
        ("signed-out page", "/oauth2/signed_out", None),
        ("setup page", "/oauth2/setup", None),
        ("403 page", "/admin/x", Some(&bob)),
        ("400 page", "//x%00", Some(&bob)),
        ("401 JSON", "/oauth2/userinfo", None),
        ("userinfo", "/oauth2/userinfo", Some(&bob)),
        ("forward-auth 401", "/oauth2/auth", None),
    ];
    for (what, target, cookie) in pages {
        let mut headers = vec![html];
        if let Some(cookie) = cookie {
            headers.push(("Cookie", cookie.as_str()));
        }
        let answer = send(&app, target, &headers).await;
        assert_cannot_be_framed(what, &answer);
        assert!(
            answer.header("strict-transport-security").is_none(),
            "{what}: http"
        );
    }
    // An upstream's own pages are the app's business: no portico policy.
    let upstream_page = send(&app, "/x", &[("Cookie", &bob)]).await;
    assert_eq!(upstream_page.status, 200);
    assert!(upstream_page.header("content-security-policy").is_none());
    assert!(upstream_page.header("x-frame-options").is_none());
}

#[tokio::test]
async fn pages_carry_hsts_when_the_public_url_is_https() {
    let app = TestApp::builder()
        .public_url("https://gateway.test")
        .build()
        .await;
    for target in ["/oauth2/signed_out", "/x"] {
        let answer = send(&app, target, &[("Accept", "text/html")]).await;
        assert_eq!(
            answer.header("strict-transport-security").as_deref(),
            Some("max-age=31536000"),
            "{target}: {}",
            answer.head
        );
    }
    // Not on upstream answers: a public route's page is the app's.
    let open = TestApp::builder()
        .public_url("https://gateway.test")
        .route("path_prefix = \"/\"\nupstream = \"{upstream}\"\npublic = true")
        .build()
        .await;
    let answer = send(&open, "/x", &[]).await;
    assert_eq!(answer.status, 200);
    assert!(answer.header("strict-transport-security").is_none());
}

#[tokio::test]
async fn in_chromium_portico_pages_keep_their_styles_and_refuse_to_be_framed() {
    let test = "in_chromium_portico_pages_keep_their_styles_and_refuse_to_be_framed";
    let Some(chromium) = crate::support::Chromium::launch(test).await else {
        return;
    };
    let app = TestApp::builder()
        .op_on_localhost()
        .route("path_prefix = \"/\"\nupstream = \"{upstream}\"")
        .route("path_prefix = \"/admin\"\nupstream = \"{upstream}\"\nrequire_roles = [\"admin\"]")
        .auto_approve(Some("bob"))
        .build()
        .await;
    let tab = chromium.new_tab().await;
    let denied = tab.open(&app.url("/admin/users")).await;
    assert!(denied.shows("Access denied"), "{}", denied.text);
    // The inline <style> ran under the policy (its hash is allowed).
    let radius = tab
        .eval("getComputedStyle(document.querySelector('main')).borderTopLeftRadius")
        .await;
    assert_eq!(radius, "14px");
    // From an app page on the same origin, portico's sign-out page cannot be
    // framed, while an app page can (the check can tell them apart).
    tab.open(&app.url("/app-page")).await;
    let framed = |path: &str| {
        format!(
            "new Promise((resolve) => {{
                const frame = document.createElement('iframe');
                frame.src = '{path}';
                frame.onload = () => {{
                    try {{ resolve(frame.contentDocument ? frame.contentDocument.body.innerText : 'blocked'); }}
                    catch (error) {{ resolve('blocked'); }}
                }};
                document.body.appendChild(frame);
                setTimeout(() => resolve('timeout'), 5000);
            }})"
        )
    };
    let app_frame = tab.eval(&framed("/another-app-page")).await;
    assert!(
        app_frame.as_str().unwrap().contains("another-app-page"),
        "{app_frame}"
    );
    let sign_out_frame = tab.eval(&framed("/oauth2/sign_out")).await;
    assert!(
        !sign_out_frame.as_str().unwrap().contains("Sign out"),
        "the sign-out page was framed: {sign_out_frame}"
    );
    chromium.close().await;
}
