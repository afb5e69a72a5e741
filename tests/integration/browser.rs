//! The sign-in journey in a real browser: headless Chromium, portico on 127.0.0.1 and the dev
//! OP on `localhost`, so the provider is another site, as in production. Each test starts its
//! own Chromium (see `support::chromium`) and saves screenshots to `target/screenshots/`.
//!
//! Without Chromium these tests print a skip notice and pass, unless `CI=true`: then they fail.

use std::time::Duration;

use portico::devop::Misbehavior;

use crate::support::{Chromium, PageState, Tab, TestApp};

/// A gateway whose OP shows its sign-in page (no auto-approval) on `localhost`.
async fn app() -> TestApp {
    TestApp::builder()
        .auto_approve(None)
        .op_on_localhost()
        .build()
        .await
}

fn on_login_page(app: &TestApp, state: &PageState) -> bool {
    state
        .url
        .starts_with(&format!("{}/authorize", app.op.issuer()))
        && state.shows("Sign in to portico-test")
}

/// Opens `url`, expects the OP's sign-in page, signs in as `user` with the username form, and
/// returns the page the browser lands on.
async fn sign_in_with_the_form(app: &TestApp, tab: &Tab, url: &str, user: &str) -> PageState {
    let login = tab.open(url).await;
    assert!(
        on_login_page(app, &login),
        "not the sign-in page: {login:?}"
    );
    tab.fill("#username", user).await;
    tab.submit("#sign-in").await
}

#[tokio::test]
async fn a_deep_link_leads_through_the_op_sign_in_and_back_to_itself() {
    let test = "a_deep_link_leads_through_the_op_sign_in_and_back_to_itself";
    let Some(chromium) = Chromium::launch(test).await else {
        return;
    };
    let app = app().await;
    let tab = chromium.new_tab().await;
    let deep_link = app.url("/reports/2026/q3?view=table&sort=desc");

    let login = tab.open(&deep_link).await;
    assert!(on_login_page(&app, &login), "{login:?}");
    assert!(login.shows("Sign in with a passkey"), "{}", login.text);
    tab.screenshot("login").await;
    tab.set_viewport(390, 780, true).await;
    tab.screenshot("login-phone").await;
    tab.set_viewport(900, 760, false).await;

    tab.fill("#username", "alice").await;
    let landing = tab.submit("#sign-in").await;
    assert_eq!(landing.url, deep_link, "{}", landing.text);
    assert!(
        landing.shows("Signed in as alice (alice@example.test)"),
        "{}",
        landing.text
    );
    assert!(landing.shows("GET /reports/2026/q3?view=table&sort=desc"));
    assert_eq!(app.op.stats().last_amr, ["pwd"]);
    tab.screenshot("landing").await;
    chromium.close().await;
}

#[tokio::test]
async fn a_passkey_registered_at_the_op_signs_in_and_returns_to_the_deep_link() {
    let test = "a_passkey_registered_at_the_op_signs_in_and_returns_to_the_deep_link";
    let Some(chromium) = Chromium::launch(test).await else {
        return;
    };
    let app = app().await;
    let tab = chromium.new_tab().await;
    let authenticator = tab.add_virtual_authenticator().await;
    let deep_link = app.url("/projects/apollo?tab=files");

    let login = tab.open(&deep_link).await;
    assert!(on_login_page(&app, &login), "{login:?}");
    tab.fill("#username", "carol").await;
    let saved = tab.submit("#passkey-register").await;
    assert!(
        saved.shows("Passkey saved for carol. Sign in with it now."),
        "{}",
        saved.text
    );
    assert_eq!(app.op.stats().passkeys_registered, 1);
    assert_eq!(tab.authenticator_credentials(&authenticator).await.len(), 1);
    tab.screenshot("passkey-saved").await;

    let landing = tab.submit("#passkey-sign-in").await;
    // Back on the very URL first asked for: portico kept the return URL in its login cookie.
    assert_eq!(landing.url, deep_link, "{}", landing.text);
    assert!(
        landing.shows("Signed in as carol (carol@example.test)"),
        "{}",
        landing.text
    );
    assert_eq!(app.op.stats().last_amr, ["webauthn"]);
    let credentials = tab.authenticator_credentials(&authenticator).await;
    assert!(credentials[0]["signCount"].as_u64().unwrap() >= 1);

    // The same ceremony without portico's login cookie (state, nonce, PKCE verifier, return
    // URL) must not sign anyone in.
    assert!(tab.delete_cookies(&app.base, "portico_session").await >= 1);
    let login = tab.open(&app.url("/projects/zeus")).await;
    assert!(on_login_page(&app, &login), "{login:?}");
    assert_eq!(
        tab.delete_cookies(&app.base, "portico_session_login_")
            .await,
        1
    );
    let refused = tab.submit("#passkey-sign-in").await;
    assert!(
        refused.url.starts_with(&app.url("/oauth2/callback?")),
        "{}",
        refused.url
    );
    assert!(refused.shows("Sign-in link expired"), "{}", refused.text);
    assert!(refused.shows("Request id:"), "{}", refused.text);
    assert!(tab
        .cookies(&app.base)
        .await
        .iter()
        .all(|cookie| cookie["name"] != "portico_session"));
    tab.screenshot("error-login-cookie-missing").await;
    chromium.close().await;
}

#[tokio::test]
async fn chromium_stores_the_session_cookie_http_only_lax_for_the_whole_site_and_not_secure_on_http(
) {
    let test = "chromium_stores_the_session_cookie_http_only_lax_for_the_whole_site_and_not_secure_on_http";
    let Some(chromium) = Chromium::launch(test).await else {
        return;
    };
    let app = app().await;
    let tab = chromium.new_tab().await;
    let landing = sign_in_with_the_form(&app, &tab, &app.url("/settings"), "alice").await;
    assert_eq!(landing.url, app.url("/settings"));

    let cookies = tab.cookies(&app.base).await;
    let session = cookies
        .iter()
        .find(|cookie| cookie["name"] == "portico_session")
        .unwrap_or_else(|| panic!("no session cookie in {cookies:#?}"));
    assert_eq!(session["httpOnly"], true, "{session}");
    assert_eq!(session["sameSite"], "Lax", "{session}");
    assert_eq!(session["path"], "/", "{session}");
    assert_eq!(session["secure"], false, "{session}");
    assert_eq!(session["domain"], "127.0.0.1", "{session}");
    assert_eq!(session["session"], false, "a persistent cookie: {session}");
    assert!(
        cookies.iter().all(|cookie| !cookie["name"]
            .as_str()
            .unwrap()
            .starts_with("portico_session_login_")),
        "the login cookie is removed after the callback: {cookies:#?}"
    );
    let visible = tab.eval("document.cookie").await;
    assert!(
        !visible.as_str().unwrap().contains("portico_session"),
        "HttpOnly: scripts must not see it ({visible})"
    );
    chromium.close().await;
}

#[tokio::test]
async fn sign_out_asks_first_then_ends_the_session_and_leads_back_to_sign_in() {
    let test = "sign_out_asks_first_then_ends_the_session_and_leads_back_to_sign_in";
    let Some(chromium) = Chromium::launch(test).await else {
        return;
    };
    let app = app().await;
    let tab = chromium.new_tab().await;
    let landing = sign_in_with_the_form(&app, &tab, &app.url("/home"), "alice").await;
    assert!(landing.shows("Signed in as alice"), "{}", landing.text);

    let confirm = tab.open(&app.url("/oauth2/sign_out")).await;
    assert!(confirm.shows("Sign out?"), "{}", confirm.text);
    assert!(confirm.shows("alice"), "{}", confirm.text);
    tab.screenshot("sign-out-confirmation").await;
    assert!(
        tab.cookies(&app.base)
            .await
            .iter()
            .any(|cookie| cookie["name"] == "portico_session"),
        "a GET never signs out"
    );

    let signed_out = tab.submit("#sign-out").await;
    assert!(
        signed_out.url.starts_with(&app.url("/oauth2/signed_out")),
        "{}",
        signed_out.url
    );
    assert!(
        signed_out.shows("You are signed out"),
        "{}",
        signed_out.text
    );
    assert_eq!(app.op.stats().end_session_requests, 1);
    assert!(tab
        .cookies(&app.base)
        .await
        .iter()
        .all(|cookie| cookie["name"] != "portico_session"));
    tab.screenshot("signed-out").await;

    let login = tab.submit("#sign-in-again").await;
    assert!(on_login_page(&app, &login), "{login:?}");
    chromium.close().await;
}

#[tokio::test]
async fn an_expired_session_signs_in_again_and_returns_to_the_same_url() {
    let test = "an_expired_session_signs_in_again_and_returns_to_the_same_url";
    let Some(chromium) = Chromium::launch(test).await else {
        return;
    };
    let app = app().await;
    let tab = chromium.new_tab().await;
    let page = app.url("/inbox?folder=archive");
    let landing = sign_in_with_the_form(&app, &tab, &page, "alice").await;
    assert_eq!(landing.url, page);

    // Past the idle timeout (1h) for portico and the OP alike.
    app.advance(Duration::from_secs(2 * 3600));
    let landing = sign_in_with_the_form(&app, &tab, &page, "alice").await;
    assert_eq!(landing.url, page, "{}", landing.text);
    assert!(landing.shows("Signed in as alice"), "{}", landing.text);
    assert_eq!(app.op.stats().logins, 2);
    chromium.close().await;
}

#[tokio::test]
async fn two_tabs_signing_in_at_once_each_return_to_their_own_page() {
    let test = "two_tabs_signing_in_at_once_each_return_to_their_own_page";
    let Some(chromium) = Chromium::launch(test).await else {
        return;
    };
    let app = app().await;
    let first = chromium.new_tab().await;
    let second = chromium.new_tab().await;
    let first_page = app.url("/orders/17");
    let second_page = app.url("/customers/42?edit=1");

    let (first_login, second_login) =
        tokio::join!(first.open(&first_page), second.open(&second_page));
    assert!(on_login_page(&app, &first_login), "{first_login:?}");
    assert!(on_login_page(&app, &second_login), "{second_login:?}");
    let login_cookies = first
        .cookies(&app.base)
        .await
        .iter()
        .filter(|cookie| {
            cookie["name"]
                .as_str()
                .unwrap()
                .starts_with("portico_session_login_")
        })
        .count();
    assert_eq!(login_cookies, 2, "one login cookie per sign-in in progress");

    first.fill("#username", "alice").await;
    second.fill("#username", "alice").await;
    let (first_landing, second_landing) =
        tokio::join!(first.submit("#sign-in"), second.submit("#sign-in"));
    assert_eq!(first_landing.url, first_page, "{}", first_landing.text);
    assert_eq!(second_landing.url, second_page, "{}", second_landing.text);
    assert!(first_landing.shows("Signed in as alice"));
    assert!(second_landing.shows("Signed in as alice"));
    assert_eq!(app.op.stats().logins, 2);
    chromium.close().await;
}

#[tokio::test]
async fn a_user_without_the_role_gets_the_forbidden_page_with_what_to_do() {
    let test = "a_user_without_the_role_gets_the_forbidden_page_with_what_to_do";
    let Some(chromium) = Chromium::launch(test).await else {
        return;
    };
    let app = TestApp::builder()
        .auto_approve(None)
        .op_on_localhost()
        .route("path_prefix = \"/\"\nupstream = \"{upstream}\"")
        .route("path_prefix = \"/admin\"\nupstream = \"{upstream}\"\nrequire_roles = [\"admin\"]")
        .build()
        .await;
    let tab = chromium.new_tab().await;
    let login = tab.open(&app.url("/admin/users")).await;
    assert!(on_login_page(&app, &login), "{login:?}");
    let denied = tab.submit("button[name=chosen_user][value=bob]").await;
    assert_eq!(denied.url, app.url("/admin/users"));
    assert!(denied.shows("Access denied"), "{}", denied.text);
    assert!(denied.shows("You are signed in as bob"), "{}", denied.text);
    assert!(denied.shows("Request id:"), "{}", denied.text);
    tab.screenshot("forbidden").await;
    chromium.close().await;
}

#[tokio::test]
async fn a_refusal_at_the_provider_is_explained_on_portico_s_error_page() {
    let test = "a_refusal_at_the_provider_is_explained_on_portico_s_error_page";
    let Some(chromium) = Chromium::launch(test).await else {
        return;
    };
    let app = app().await;
    app.op.set_misbehavior(Misbehavior::AuthorizeError);
    let tab = chromium.new_tab().await;
    let error = tab.open(&app.url("/documents/7")).await;
    assert!(
        error.url.starts_with(&app.url("/oauth2/callback?")),
        "{}",
        error.url
    );
    assert!(error.shows("Sign-in was not completed"), "{}", error.text);
    assert!(
        error.shows("access_denied") && error.shows("the dev OP was told to refuse this sign-in"),
        "{}",
        error.text
    );
    assert!(error.shows("Request id:"), "{}", error.text);
    tab.screenshot("error").await;

    // "Try again" goes back to the page first asked for (and so to the provider).
    app.op.set_misbehavior(Misbehavior::None);
    let login = tab.submit("#try-again").await;
    assert!(on_login_page(&app, &login), "{login:?}");
    tab.fill("#username", "alice").await;
    let landing = tab.submit("#sign-in").await;
    assert_eq!(landing.url, app.url("/documents/7"));
    chromium.close().await;
}

/// The real `portico demo` binary (or the one at `PORTICO_DEMO_URL`), walked from a refusal
/// through sign-out to a passkey sign-in. Its screenshots go to `target/screenshots/demo-*.png`;
/// the README's come from `cargo test --test integration screenshots` (see `screenshots.rs`).
#[tokio::test]
async fn the_real_demo_walks_from_a_refusal_to_a_passkey_sign_in() {
    let Some(chromium) =
        Chromium::launch("the_real_demo_walks_from_a_refusal_to_a_passkey_sign_in").await
    else {
        return;
    };
    // The real `portico demo`, unless one is already running at PORTICO_DEMO_URL.
    let (demo, _running) = match std::env::var("PORTICO_DEMO_URL") {
        Ok(url) => (url, None),
        Err(_) => {
            let port = crate::cli::demo_port();
            let child = crate::cli::spawn_demo(port, &[]);
            crate::cli::wait_for_port(port).await;
            (format!("http://127.0.0.1:{port}"), Some(child))
        }
    };
    let tab = chromium.new_tab().await;
    let authenticator = tab.add_virtual_authenticator().await;

    let login = tab.open(&format!("{demo}/admin/reports?year=2026")).await;
    assert!(login.shows("Sign in to portico-demo"), "{login:?}");
    tab.screenshot("demo-1-login").await;
    tab.set_viewport(390, 780, true).await;
    tab.screenshot("demo-1-login-phone").await;
    tab.set_viewport(900, 760, false).await;

    let denied = tab.submit("button[name=chosen_user][value=bob]").await;
    assert!(denied.shows("Access denied"), "{denied:?}");
    tab.screenshot("demo-2-forbidden").await;

    let confirm = tab.open(&format!("{demo}/oauth2/sign_out")).await;
    assert!(confirm.shows("Sign out?"), "{confirm:?}");
    tab.screenshot("demo-3-sign-out").await;
    let signed_out = tab.submit("#sign-out").await;
    assert!(signed_out.shows("You are signed out"), "{signed_out:?}");
    tab.screenshot("demo-4-signed-out").await;

    let login = tab.open(&format!("{demo}/admin/reports?year=2026")).await;
    assert!(login.shows("Sign in to portico-demo"), "{login:?}");
    tab.fill("#username", "alice").await;
    let saved = tab.submit("#passkey-register").await;
    assert!(saved.shows("Passkey saved for alice"), "{saved:?}");
    tab.screenshot("demo-5-passkey-saved").await;
    let landing = tab.submit("#passkey-sign-in").await;
    assert!(landing.shows("Signed in as alice"), "{landing:?}");
    // The demo's routes send X-Portico-Identity, so the echo app shows the passkey's amr.
    assert!(landing.shows("amr: webauthn"), "{landing:?}");
    assert_eq!(tab.authenticator_credentials(&authenticator).await.len(), 1);
    tab.screenshot("demo-6-landing").await;

    let error = tab
        .open(&format!("{demo}/oauth2/callback?code=stale&state=stale"))
        .await;
    assert!(error.shows("Sign-in link expired"), "{error:?}");
    tab.screenshot("demo-7-error").await;
    chromium.close().await;
}
