//! Forward-auth for proxies that pass any non-2xx answer to the browser as
//! it is (Caddy `forward_auth`, Traefik ForwardAuth): `?mode=redirect` sends
//! page navigations to the sign-in and everything else gets 401.

use reqwest::StatusCode;

use crate::support::caddy::Caddy;
use crate::support::{query_param, Browser, TestApp};

/// What Chromium sends on a top-level navigation (Fetch Metadata and Accept).
const NAVIGATION: [(&str, &str); 3] = [
    ("sec-fetch-mode", "navigate"),
    ("sec-fetch-dest", "document"),
    (
        "accept",
        "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
    ),
];

/// What Chromium sends for `fetch()` from a page.
const FETCH: [(&str, &str); 3] = [
    ("sec-fetch-mode", "cors"),
    ("sec-fetch-dest", "empty"),
    ("accept", "*/*"),
];

async fn trusted_app() -> TestApp {
    TestApp::builder()
        .config("server", "trusted_proxies = [\"127.0.0.1/32\"]")
        .route("path_prefix = \"/\"\nupstream = \"{upstream}\"")
        .route("path_prefix = \"/admin\"\nupstream = \"{upstream}\"\nrequire_roles = [\"admin\"]")
        .build()
        .await
}

#[tokio::test]
async fn redirect_mode_sends_navigations_to_the_sign_in_with_the_original_url() {
    let app = trusted_app().await;
    let public = url::Url::parse(&app.base).unwrap();
    let authority = public.authority().to_string();
    let original = [
        ("x-forwarded-proto", "http"),
        ("x-forwarded-host", authority.as_str()),
        ("x-forwarded-uri", "/reports/q3?year=2026&x=%2F"),
    ];
    let navigation: Vec<_> = original.iter().chain(NAVIGATION.iter()).copied().collect();
    let anonymous = Browser::new();
    let page = anonymous
        .get_with(&app.url("/oauth2/auth?mode=redirect"), &navigation)
        .await;
    assert_eq!(page.status, StatusCode::FOUND, "{}", page.body);
    let location = page.location().unwrap();
    assert!(
        location.starts_with(&app.url("/oauth2/start?rd=")),
        "{location}"
    );
    // The return URL is the original one, on portico's own origin here.
    assert_eq!(
        query_param(&location, "rd"),
        Some(app.url("/reports/q3?year=2026&x=%2F"))
    );
    // No login cookie is set by forward-auth: /oauth2/start sets it on
    // portico's origin.
    assert!(page.set_cookies().is_empty());
    // Another host is not an allowed return target: the sign-in still
    // starts, returning to the default target instead.
    let elsewhere: Vec<_> = navigation
        .iter()
        .map(|(name, value)| {
            if *name == "x-forwarded-host" {
                (*name, "evil.example")
            } else {
                (*name, *value)
            }
        })
        .collect();
    let page = anonymous
        .get_with(&app.url("/oauth2/auth?mode=redirect"), &elsewhere)
        .await;
    assert_eq!(page.status, StatusCode::FOUND);
    assert_eq!(page.location().unwrap(), app.url("/oauth2/start"));

    // Not a navigation: 401, in both modes; plain mode never redirects.
    let fetch: Vec<_> = original.iter().chain(FETCH.iter()).copied().collect();
    let page = anonymous
        .get_with(&app.url("/oauth2/auth?mode=redirect"), &fetch)
        .await;
    assert_eq!(page.status, StatusCode::UNAUTHORIZED);
    assert!(page.header("www-authenticate").is_some());
    let page = anonymous
        .get_with(&app.url("/oauth2/auth"), &navigation)
        .await;
    assert_eq!(page.status, StatusCode::UNAUTHORIZED);
    let page = anonymous
        .get_with(&app.url("/oauth2/auth?mode=sideways"), &navigation)
        .await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn redirect_mode_allows_with_200_and_identity_and_refuses_rules_with_403() {
    let app = trusted_app().await;
    app.op.set_auto_approve(Some("bob".into()));
    let bob = Browser::new();
    app.sign_in(&bob, "/").await;
    let ask = |uri: &'static str| {
        let headers: Vec<(&str, &str)> = NAVIGATION
            .iter()
            .copied()
            .chain([("x-forwarded-uri", uri)])
            .collect();
        let url = app.url("/oauth2/auth?mode=redirect");
        let bob = &bob;
        async move { bob.get_with(&url, &headers).await }
    };
    let allowed = ask("/reports").await;
    assert_eq!(allowed.status, StatusCode::OK);
    assert_eq!(
        allowed.header("x-auth-request-user").as_deref(),
        Some("bob")
    );
    assert_eq!(
        allowed.header("x-auth-request-email").as_deref(),
        Some("bob@example.test")
    );
    let refused = ask("/admin/panel").await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    // A navigation is shown a page, not JSON.
    assert!(
        refused
            .header("content-type")
            .is_some_and(|value| value.starts_with("text/html")),
        "{:?}",
        refused.header("content-type")
    );
}

#[tokio::test]
async fn caddy_forward_auth_takes_a_deep_link_through_the_sign_in_and_back() {
    // Caddy listens first so portico can know its public URL.
    let caddy_port = crate::support::redis::free_port();
    let public = format!("http://127.0.0.1:{caddy_port}");
    let app = TestApp::builder()
        .public_url(&public)
        // Caddy (loopback) is the trusted proxy.
        .config("server", "trusted_proxies = [\"127.0.0.1/32\"]")
        .route("path_prefix = \"/\"\nupstream = \"{upstream}\"")
        .route("path_prefix = \"/admin\"\nupstream = \"{upstream}\"\nrequire_roles = [\"admin\"]")
        .build()
        .await;
    let portico = app.base.trim_start_matches("http://").to_string();
    let upstream = app.upstream.url().trim_start_matches("http://").to_string();
    // The Caddyfile of issue 21, with `?mode=redirect` (and the groups).
    let site = format!(
        "\thandle /oauth2/* {{\n\t\treverse_proxy {portico}\n\t}}\n\
         \thandle {{\n\
         \t\tforward_auth {portico} {{\n\
         \t\t\turi /oauth2/auth?mode=redirect\n\
         \t\t\tcopy_headers X-Auth-Request-User X-Auth-Request-Email X-Auth-Request-Groups\n\
         \t\t}}\n\
         \t\treverse_proxy {upstream}\n\
         \t}}"
    );
    let Some(caddy) = Caddy::start_on(caddy_port, &site) else {
        return;
    };
    let deep_link = caddy.url("/reports/q3?year=2026&view=table");

    // A fetch without a session gets 401 through Caddy, and no sign-in.
    let script = Browser::new();
    let fetched = script.get_with(&deep_link, &FETCH).await;
    assert_eq!(fetched.status, StatusCode::UNAUTHORIZED, "{}", caddy.log());
    assert!(fetched.header("www-authenticate").is_some());
    assert!(fetched.location().is_none());
    assert_eq!(app.op.stats().code_exchanges, 0);

    // A browser's navigation: deep link → sign-in at the OP → back on the
    // deep link, with the identity Caddy copied to the upstream.
    let browser = Browser::new();
    let hops = browser.follow_with(&deep_link, &NAVIGATION).await;
    assert_eq!(hops[0].status, StatusCode::FOUND, "{}", hops[0].body);
    let start = hops[0].location().unwrap();
    assert!(
        start.starts_with(&caddy.url("/oauth2/start?rd=")),
        "{start}"
    );
    assert_eq!(
        query_param(&start, "rd").as_deref(),
        Some(deep_link.as_str())
    );
    assert!(
        hops.iter().any(|hop| hop.url.starts_with(&app.op.issuer())),
        "the sign-in went through the OP"
    );
    let landing = hops.last().unwrap();
    assert_eq!(landing.url, deep_link);
    assert_eq!(landing.status, StatusCode::OK, "{}", landing.body);
    // The echo upstream shows a browser an HTML page of what it received…
    assert!(
        landing.body.contains("x-auth-request-user"),
        "{}",
        landing.body
    );
    assert!(
        landing.body.contains("alice@example.test"),
        "{}",
        landing.body
    );
    // …and a program the same as JSON: the session now passes Caddy for both.
    let echo = browser.get_with(&deep_link, &FETCH).await.json();
    assert_eq!(echo["path"], "/reports/q3");
    assert_eq!(echo["query"], "year=2026&view=table");
    assert_eq!(echo["headers"]["x-auth-request-user"], "alice");
    assert_eq!(
        echo["headers"]["x-auth-request-email"],
        "alice@example.test"
    );
    assert_eq!(app.op.stats().code_exchanges, 1);

    // Signed in, a forged identity header is replaced by Caddy's copy.
    let forged: Vec<_> = FETCH
        .iter()
        .copied()
        .chain([("x-auth-request-user", "mallory")])
        .collect();
    let page = browser.get_with(&caddy.url("/home"), &forged).await;
    assert_eq!(page.json()["headers"]["x-auth-request-user"], "alice");

    // The admin route's rules apply through Caddy too.
    app.op.set_auto_approve(Some("bob".into()));
    let bob = Browser::new();
    let landing = bob
        .follow_with(&caddy.url("/home"), &NAVIGATION)
        .await
        .pop()
        .unwrap();
    assert_eq!(landing.status, StatusCode::OK);
    // bob has no roles, so portico sends no X-Auth-Request-Groups: his own
    // copy must not reach the application either.
    let forged: Vec<_> = FETCH
        .iter()
        .copied()
        .chain([("x-auth-request-groups", "admin")])
        .collect();
    let echo = bob.get_with(&caddy.url("/home"), &forged).await.json();
    assert_eq!(echo["headers"]["x-auth-request-user"], "bob");
    // portico answers an empty X-Auth-Request-Groups, which Caddy copies
    // over the client's (without it Caddy 2.6 sends its placeholder text).
    let groups = echo["headers"].get("x-auth-request-groups");
    assert!(
        groups.is_none_or(|groups| groups == ""),
        "{}",
        echo["headers"]
    );
    let refused = bob.get_with(&caddy.url("/admin/panel"), &NAVIGATION).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
}
