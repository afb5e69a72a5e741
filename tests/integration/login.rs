//! The login path: protected URL → provider → callback → session → back.

use portico::devop::{Misbehavior, TokenAuthMethods};
use reqwest::StatusCode;

use crate::support::{query_param, Browser, TestApp, CLIENT_ID};

#[tokio::test]
async fn protected_deep_link_signs_in_and_lands_on_the_same_url_with_identity() {
    let app = TestApp::start().await;
    let browser = Browser::new();
    let hops = browser
        .follow(&app.url("/reports/q3?year=2026&x=%2F"))
        .await;
    assert_eq!(hops[0].status, StatusCode::FOUND);
    let authorize = hops[0].location().unwrap();
    assert!(
        authorize.starts_with(&format!("{}/authorize?", app.op.issuer())),
        "{authorize}"
    );
    let callback = hops[1].location().unwrap();
    assert!(
        callback.starts_with(&app.url("/oauth2/callback?")),
        "{callback}"
    );
    assert_eq!(
        hops[2].location().unwrap(),
        app.url("/reports/q3?year=2026&x=%2F")
    );
    let last = hops.last().unwrap();
    assert_eq!(last.status, StatusCode::OK);
    let echo = last.json();
    assert_eq!(echo["path"], "/reports/q3");
    assert_eq!(echo["query"], "year=2026&x=%2F");
    assert_eq!(echo["headers"]["x-forwarded-user"], "alice");
    assert_eq!(echo["headers"]["x-forwarded-email"], "alice@example.test");
    assert_eq!(echo["headers"]["x-forwarded-groups"], "admin");
    assert_eq!(echo["headers"]["x-forwarded-preferred-username"], "alice");
    assert_eq!(app.op.stats().code_exchanges, 1);
}

#[tokio::test]
async fn authorization_request_uses_code_flow_with_pkce_state_nonce_and_exact_redirect_uri() {
    let app = TestApp::builder()
        .config(
            "oidc",
            "extra_auth_params = { prompt = \"login\", ui_locales = \"de\" }",
        )
        .config(
            "oidc",
            "scopes = [\"openid\", \"email\", \"offline_access\"]",
        )
        .build()
        .await;
    let page = Browser::new().get(&app.url("/")).await;
    let location = page.location().unwrap();
    assert_eq!(
        query_param(&location, "response_type").as_deref(),
        Some("code")
    );
    assert_eq!(
        query_param(&location, "client_id").as_deref(),
        Some(CLIENT_ID)
    );
    assert_eq!(
        query_param(&location, "redirect_uri"),
        Some(app.url("/oauth2/callback"))
    );
    assert_eq!(
        query_param(&location, "code_challenge_method").as_deref(),
        Some("S256")
    );
    assert_eq!(query_param(&location, "code_challenge").unwrap().len(), 43);
    assert!(query_param(&location, "state").unwrap().len() >= 16);
    assert!(query_param(&location, "nonce").unwrap().len() >= 16);
    assert_eq!(query_param(&location, "prompt").as_deref(), Some("login"));
    assert_eq!(query_param(&location, "ui_locales").as_deref(), Some("de"));
    let scopes = query_param(&location, "scope").unwrap();
    assert_eq!(scopes, "openid email offline_access");
}

#[tokio::test]
async fn a_person_signs_in_through_the_login_page_form() {
    let app = TestApp::builder().auto_approve(None).build().await;
    let browser = Browser::new();
    let hops = browser.follow(&app.url("/welcome")).await;
    let login_page = hops.last().unwrap();
    assert_eq!(login_page.status, StatusCode::OK);
    assert!(login_page.body.contains("<form"), "{}", login_page.body);
    // Submit the form as a browser would: every hidden field plus a username.
    let document = login_page.body.clone();
    let mut fields: Vec<(String, String)> = Vec::new();
    for input in document.split("<input").skip(1) {
        let attribute = |name: &str| {
            input
                .split(&format!("{name}=\""))
                .nth(1)
                .and_then(|rest| rest.split('"').next())
                .map(|value| {
                    value
                        .replace("&amp;", "&")
                        .replace("&#x2f;", "/")
                        .replace("&#47;", "/")
                })
        };
        if let (Some(name), Some(value)) = (attribute("name"), attribute("value")) {
            fields.push((name, value));
        }
    }
    fields.retain(|(name, _)| name != "username");
    fields.push(("username".into(), "bob".into()));
    let form: Vec<(&str, &str)> = fields
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let posted = browser
        .post_form(&format!("{}/authorize", app.op.issuer()), &form, &[])
        .await;
    assert_eq!(posted.status, StatusCode::FOUND, "{}", posted.body);
    let landing = browser.open(&posted.location().unwrap()).await;
    assert_eq!(landing.json()["headers"]["x-forwarded-user"], "bob");
    assert_eq!(landing.json()["path"], "/welcome");
}

#[tokio::test]
async fn callback_rejects_reused_state() {
    let app = TestApp::start().await;
    let browser = Browser::new();
    let start = browser.get(&app.url("/x")).await;
    let callback = browser
        .get(&start.location().unwrap())
        .await
        .location()
        .unwrap();
    // Keep a copy of the login cookie to replay it, as an attacker with the URL and cookie would.
    let login_cookie = browser
        .cookie_names()
        .into_iter()
        .find(|name| name.starts_with("portico_session_login_"))
        .unwrap();
    let login_value = browser.cookie(&login_cookie).unwrap();
    let first = browser.get(&callback).await;
    assert_eq!(first.status, StatusCode::FOUND);
    assert!(
        browser.cookie(&login_cookie).is_none(),
        "login cookie removed on use"
    );
    let replay = Browser::new();
    replay.set_cookie(&login_cookie, &login_value);
    let second = replay.get(&callback).await;
    assert_eq!(second.status, StatusCode::BAD_REQUEST, "{}", second.body);
    assert!(replay.cookie("portico_session").is_none());
    // The copied cookie still decrypts, but the code it goes with was already
    // redeemed: the provider refuses it and no session is made.
    assert!(second.body.contains("Sign-in failed"), "{}", second.body);
}

#[tokio::test]
async fn callback_from_another_browser_is_refused_with_a_page() {
    let app = TestApp::start().await;
    let victim = Browser::new();
    let start = victim.get(&app.url("/x")).await;
    let callback = victim
        .get(&start.location().unwrap())
        .await
        .location()
        .unwrap();
    let attacker = Browser::new();
    let page = attacker.get(&callback).await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    assert!(page.body.contains("Sign-in link expired"), "{}", page.body);
    assert!(page.body.contains(&page.header("x-request-id").unwrap()));
    assert!(attacker.cookie("portico_session").is_none());
    assert_eq!(app.op.stats().code_exchanges, 0);
}

#[tokio::test]
async fn callback_without_code_or_state_is_a_bad_request() {
    let app = TestApp::start().await;
    let page = Browser::new().get(&app.url("/oauth2/callback")).await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    let page = Browser::new()
        .get(&app.url("/oauth2/callback?state=abc"))
        .await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn provider_error_on_the_callback_gets_a_page_saying_so() {
    let app = TestApp::start().await;
    app.op.set_misbehavior(Misbehavior::AuthorizeError);
    let browser = Browser::new();
    let page = browser.open(&app.url("/wanted")).await;
    assert_eq!(page.status, StatusCode::UNAUTHORIZED);
    assert!(page.body.contains("access_denied"), "{}", page.body);
    assert!(page.body.contains("Try again"), "{}", page.body);
    assert!(browser.cookie("portico_session").is_none());
}

#[tokio::test]
async fn wrong_iss_parameter_on_the_callback_is_refused() {
    let app = TestApp::start().await;
    app.op.set_misbehavior(Misbehavior::WrongIssParam);
    let browser = Browser::new();
    let page = browser.open(&app.url("/")).await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST, "{}", page.body);
    assert!(browser.cookie("portico_session").is_none());
    assert_eq!(app.op.stats().code_exchanges, 0);
}

#[tokio::test]
async fn token_endpoint_error_creates_no_session() {
    let app = TestApp::start().await;
    app.op.set_misbehavior(Misbehavior::TokenEndpointError);
    let browser = Browser::new();
    let page = browser.open(&app.url("/")).await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST, "{}", page.body);
    assert!(page.body.contains("Sign-in failed"), "{}", page.body);
    assert!(browser.cookie("portico_session").is_none());
}

#[tokio::test]
async fn client_secret_post_is_used_when_the_provider_only_offers_it() {
    let app = TestApp::builder()
        .op_options(|options| options.token_auth_methods = TokenAuthMethods::PostOnly)
        .build()
        .await;
    let browser = Browser::new();
    let page = app.sign_in(&browser, "/").await;
    assert_eq!(page.status, StatusCode::OK);
}

#[tokio::test]
async fn client_secret_basic_is_used_by_default() {
    let app = TestApp::builder()
        .op_options(|options| options.token_auth_methods = TokenAuthMethods::BasicOnly)
        .build()
        .await;
    let page = app.sign_in(&Browser::new(), "/").await;
    assert_eq!(page.status, StatusCode::OK);
}

#[tokio::test]
async fn two_tabs_can_sign_in_at_once() {
    let app = TestApp::start().await;
    let browser = Browser::new();
    let first = browser.get(&app.url("/tab-one")).await;
    let second = browser.get(&app.url("/tab-two")).await;
    let first_callback = browser
        .get(&first.location().unwrap())
        .await
        .location()
        .unwrap();
    let second_callback = browser
        .get(&second.location().unwrap())
        .await
        .location()
        .unwrap();
    // Finish in the opposite order to the starts.
    let done_second = browser.get(&second_callback).await;
    assert_eq!(done_second.location().unwrap(), app.url("/tab-two"));
    let done_first = browser.get(&first_callback).await;
    assert_eq!(done_first.location().unwrap(), app.url("/tab-one"));
}

#[tokio::test]
async fn login_cookies_are_bounded_and_the_oldest_is_dropped() {
    let app = TestApp::start().await;
    let browser = Browser::new();
    for index in 0..7 {
        browser.get(&app.url(&format!("/tab{index}"))).await;
    }
    let login_cookies = browser
        .cookie_names()
        .into_iter()
        .filter(|name| name.starts_with("portico_session_login_"))
        .count();
    assert_eq!(login_cookies, portico::oidc::MAX_CONCURRENT_LOGINS);
}

#[tokio::test]
async fn a_subresource_gets_401_and_never_starts_a_sign_in() {
    let app = TestApp::start().await;
    let browser = Browser::new();
    // What Chromium sends for /favicon.ico after the session is gone.
    let favicon = browser
        .get_with(
            &app.url("/favicon.ico"),
            &[("sec-fetch-mode", "no-cors"), ("sec-fetch-dest", "image")],
        )
        .await;
    assert_eq!(favicon.status, StatusCode::UNAUTHORIZED);
    assert!(
        favicon.set_cookies().is_empty(),
        "{:?}",
        favicon.set_cookies()
    );
    assert_eq!(app.op.stats().authorize_requests, 0);
    let page = browser
        .get_with(&app.url("/page"), &[("sec-fetch-mode", "navigate")])
        .await;
    assert_eq!(page.status, StatusCode::FOUND);
    assert_eq!(page.set_cookies().len(), 1);
}

#[tokio::test]
async fn rd_on_start_is_honoured_on_the_own_origin() {
    let app = TestApp::start().await;
    let browser = Browser::new();
    let hops = browser
        .follow(&app.url("/oauth2/start?rd=%2Fafter%2Flogin%3Fa%3D1"))
        .await;
    let landing = hops.last().unwrap();
    assert_eq!(landing.json()["path"], "/after/login");
    assert_eq!(landing.json()["query"], "a=1");
}

#[tokio::test]
async fn every_open_redirect_payload_ends_on_the_own_origin() {
    const ALLOWED: &str = "www.whitelisteddomain.tld";
    let app = TestApp::builder()
        .config(
            "server",
            &format!("allowed_redirect_hosts = [\"{ALLOWED}\"]"),
        )
        .build()
        .await;
    let own = url::Url::parse(&app.base).unwrap();
    let own_host = format!("{}:{}", own.host_str().unwrap(), own.port().unwrap());
    let corpus = crate::support::redirect_corpus::payloads(&own_host, ALLOWED);
    assert!(corpus.len() >= 1000, "{} payloads", corpus.len());
    let browser = Browser::new();
    app.sign_in(&browser, "/").await;

    // Through the real sign-in: /oauth2/start?rd=…, the OP (auto-approve),
    // the callback; where does the callback send the browser?
    async fn land(app: &TestApp, browser: &Browser, own: &url::Url, rd: &str) -> url::Url {
        let start = browser
            .get(&app.url(&format!("/oauth2/start?rd={}", crate::support::encode(rd))))
            .await;
        let authorize = start.location().unwrap();
        let callback = browser.get(&authorize).await.location().unwrap();
        let done = browser.get(&callback).await;
        assert_eq!(done.status, StatusCode::FOUND, "{rd:?}: {}", done.body);
        own.join(&done.location().unwrap()).unwrap()
    }

    // The rule can tell the difference: a path and the allow-listed host
    // are kept, so "ends at home" below is not a rule that refuses everything.
    let kept = land(&app, &browser, &own, "/after/login?a=1").await;
    assert_eq!((kept.origin(), kept.path()), (own.origin(), "/after/login"));
    let listed = land(&app, &browser, &own, &format!("http://{ALLOWED}/x")).await;
    assert_eq!(listed.host_str(), Some(ALLOWED));

    // Four browsers at a time, each with its own cookie jar.
    let workers = 4;
    let outcomes = futures_util::future::join_all((0..workers).map(|worker| {
        let (app, own, corpus) = (&app, &own, &corpus);
        async move {
            let browser = Browser::new();
            let mut landed = Vec::new();
            for payload in corpus.iter().skip(worker).step_by(workers) {
                landed.push((payload, land(app, &browser, own, payload).await));
            }
            landed
        }
    }))
    .await;
    let mut checked = 0;
    let mut stayed_on_a_path = 0;
    for (payload, target) in outcomes.iter().flatten() {
        assert!(
            target.origin() == own.origin(),
            "payload {payload:?} sent the browser to {target}"
        );
        checked += 1;
        if target.path() != "/" {
            stayed_on_a_path += 1;
        }
    }
    assert_eq!(checked, corpus.len());
    // Some payloads are odd but harmless paths on our origin, kept as such.
    assert!(stayed_on_a_path > 0);
}

/// Calls of `command` in Redis's `INFO commandstats` answer.
fn calls(stats: &str, command: &str) -> u64 {
    stats
        .lines()
        .find_map(|line| line.strip_prefix(&format!("cmdstat_{command}:")))
        .and_then(|rest| {
            rest.split(',')
                .find_map(|field| field.strip_prefix("calls="))
        })
        .and_then(|calls| calls.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn a_sign_in_writes_its_session_in_three_redis_round_trips() {
    let redis = crate::support::RedisServer::spawn();
    let app = TestApp::builder().redis_url(&redis.url(0)).build().await;
    let browser = Browser::new();
    let start = browser.get(&app.url("/")).await;
    let callback = browser
        .get(&start.location().unwrap())
        .await
        .location()
        .unwrap();
    redis.reset_stats();
    let done = browser.get(&callback).await;
    assert_eq!(done.status, StatusCode::FOUND, "{}", done.body);
    assert_eq!(done.location().unwrap(), app.url("/"));
    // The record (SET NX EXAT), then the sub and sid indexes, each one
    // script (SADD, TTL, EXPIREAT run inside, which Redis counts as well):
    // three commands sent, where there were seven.
    let stats = redis.commands_by_name();
    assert_eq!(calls(&stats, "set"), 1, "{stats}");
    assert_eq!(calls(&stats, "eval"), 2, "{stats}");
    for inside in ["sadd", "ttl", "expireat"] {
        assert_eq!(calls(&stats, inside), 2, "{inside}: {stats}");
    }
    assert_eq!(redis.data_commands(), 1 + 2 * 4, "{stats}");
    // And the indexes are what logout needs: the session under its sub,
    // living as long as the longest session it names.
    let members = redis.command(&["SMEMBERS", "portico:sub:alice"]);
    assert!(members.starts_with("*1\r\n"), "one session: {members}");
    let ttl: i64 = redis
        .command(&["TTL", "portico:sub:alice"])
        .trim_start_matches(':')
        .trim()
        .parse()
        .unwrap();
    assert!(ttl > 0, "the index expires: {ttl}");
    assert_eq!(
        browser.get(&app.url("/page")).await.status,
        StatusCode::OK,
        "the new session works"
    );
}
