//! Every page a person meets, in real Chromium, at a laptop's 1280×800 and a phone's 390×844:
//! saved to `docs/screenshots/{page}-{width}x{height}.png` with `PORTICO_UPDATE_SCREENSHOTS=1` (the README shows them; otherwise to `target/screenshots/`), and checked
//! on the way. A page fails when its content is wider than the viewport (something would
//! scroll sideways or be cut off) or when any element splits words anywhere
//! (`word-break: break-all`). `cargo test --test integration screenshots` remakes them all.
//!
//! The walk: the dev OP's sign-in page (empty, focused username), a passkey saved, the echo
//! app after a passkey sign-in (showing `amr`), the sign-out question, signed out, the
//! sign-out page with nobody signed in, the 403 page and its "Sign in with another account"
//! (which must come back to the refused page), a sign-in link that expired, a refusal at the
//! provider, portico's 404, the setup page, and the dev OP's own error page.

use std::path::PathBuf;

use portico::devop::Misbehavior;
use serde_json::Value;

use crate::support::browser::query_param;
use crate::support::{Chromium, PageState, Tab, TestApp};

/// (width, height, phone?)
const SIZES: [(u32, u32, bool); 2] = [(1280, 800, false), (390, 844, true)];

/// `docs/screenshots/` when asked (`PORTICO_UPDATE_SCREENSHOTS=1`), else
/// `target/screenshots/`: an ordinary `cargo test` leaves the tree clean.
fn screenshot_dir() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    if std::env::var_os("PORTICO_UPDATE_SCREENSHOTS").is_some_and(|value| value == "1") {
        root.join("docs/screenshots")
    } else {
        root.join("target/screenshots")
    }
}

/// What is wrong with the page's layout at `width`, if anything.
async fn layout_problems(tab: &Tab, width: u32) -> Vec<String> {
    let expression = format!(
        "(() => {{
            const problems = [];
            const wide = Math.max(document.documentElement.scrollWidth,
                                  document.body ? document.body.scrollWidth : 0);
            if (wide > {width}) {{
                const culprits = [...document.querySelectorAll('body *')]
                    .filter((element) => element.getBoundingClientRect().right > {width} + 0.5)
                    .slice(0, 3)
                    .map((element) => element.tagName.toLowerCase()
                        + (element.id ? '#' + element.id : '')
                        + (element.className ? '.' + String(element.className).split(' ').join('.') : ''));
                problems.push('content is ' + wide + ' px wide in a ' + {width}
                    + ' px viewport (widest: ' + culprits.join(', ') + ')');
            }}
            const split = [...document.querySelectorAll('body *')]
                .filter((element) => getComputedStyle(element).wordBreak === 'break-all');
            if (split.length > 0) {{
                problems.push('word-break: break-all on ' + split[0].tagName.toLowerCase()
                    + (split[0].className ? '.' + split[0].className : ''));
            }}
            return problems;
        }})()"
    );
    tab.eval(&expression)
        .await
        .as_array()
        .unwrap()
        .iter()
        .map(|problem| problem.as_str().unwrap().to_string())
        .collect()
}

/// Shoots the page the tab shows at both sizes (then back to the laptop size), recording
/// layout problems in `problems`.
async fn shoot(tab: &Tab, name: &str, problems: &mut Vec<String>) {
    let directory = screenshot_dir();
    std::fs::create_dir_all(&directory).unwrap();
    for (width, height, phone) in SIZES {
        tab.set_viewport(width, height, phone).await;
        // Let layout settle at the new size before measuring.
        tab.eval("new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done)))")
            .await;
        for problem in layout_problems(tab, width).await {
            problems.push(format!("{name} at {width}x{height}: {problem}"));
        }
        let shot = tab
            .call(
                "Page.captureScreenshot",
                serde_json::json!({"format": "png"}),
            )
            .await;
        let bytes = base64::Engine::decode(
            &base64::engine::general_purpose::STANDARD,
            shot["data"].as_str().unwrap(),
        )
        .unwrap();
        std::fs::write(
            directory.join(format!("{name}-{width}x{height}.png")),
            bytes,
        )
        .unwrap();
    }
    tab.set_viewport(SIZES[0].0, SIZES[0].1, false).await;
}

fn on_login_page(app: &TestApp, state: &PageState) -> bool {
    state
        .url
        .starts_with(&format!("{}/authorize", app.op.issuer()))
        && state.shows("Sign in to portico-test")
}

#[tokio::test]
async fn screenshots() {
    let Some(chromium) = Chromium::launch("screenshots").await else {
        return;
    };
    let app = TestApp::builder()
        .auto_approve(None)
        .op_on_localhost()
        .config("server", "setup_page = true")
        .route("path_prefix = \"/\"\nupstream = \"{upstream}\"\nidentity_jwt = true")
        .route(
            "path_prefix = \"/admin\"\nupstream = \"{upstream}\"\nidentity_jwt = true\n\
             require_roles = [\"admin\"]",
        )
        .build()
        .await;
    let tab = chromium.new_tab().await;
    let authenticator = tab.add_virtual_authenticator().await;
    let mut problems = Vec::new();

    // The dev OP's sign-in page: the username field is empty and has the focus.
    let deep_link = app.url("/reports/2026/q3?view=table&sort=desc");
    let login = tab.open(&deep_link).await;
    assert!(on_login_page(&app, &login), "{login:?}");
    let field = tab
        .eval("[document.activeElement.id, document.getElementById('username').value]")
        .await;
    assert_eq!(field, serde_json::json!(["username", ""]), "{}", login.text);
    shoot(&tab, "sign-in", &mut problems).await;

    // A passkey saved, then used: the echo app shows how the user signed in.
    tab.fill("#username", "carol").await;
    let saved = tab.submit("#passkey-register").await;
    assert!(saved.shows("Passkey saved for carol"), "{}", saved.text);
    shoot(&tab, "passkey-saved", &mut problems).await;
    let landing = tab.submit("#passkey-sign-in").await;
    assert_eq!(landing.url, deep_link, "{}", landing.text);
    assert!(
        landing.shows("Signed in as carol (carol@example.test)"),
        "{}",
        landing.text
    );
    assert!(landing.shows("amr: webauthn"), "{}", landing.text);
    assert_eq!(tab.authenticator_credentials(&authenticator).await.len(), 1);
    shoot(&tab, "signed-in", &mut problems).await;

    // Sign-out: the question, the answer, and the page once nobody is signed in.
    let confirm = tab.open(&app.url("/oauth2/sign_out")).await;
    assert!(
        confirm.shows("Sign out?") && confirm.shows("carol"),
        "{}",
        confirm.text
    );
    shoot(&tab, "sign-out", &mut problems).await;
    let signed_out = tab.submit("#sign-out").await;
    assert!(
        signed_out.shows("You are signed out"),
        "{}",
        signed_out.text
    );
    shoot(&tab, "signed-out", &mut problems).await;
    let nobody = tab.open(&app.url("/oauth2/sign_out")).await;
    assert!(nobody.shows("You are not signed in"), "{}", nobody.text);
    shoot(&tab, "not-signed-in", &mut problems).await;

    // The 403 page, then "Sign in with another account" straight back to the refused page.
    let refused_url = app.url("/admin/users?page=2");
    let login = tab.open(&refused_url).await;
    assert!(on_login_page(&app, &login), "{login:?}");
    assert!(
        login.shows("Carol Example"),
        "the recent name is offered: {}",
        login.text
    );
    let denied = tab.submit("button[name=chosen_user][value=bob]").await;
    assert_eq!(denied.url, refused_url);
    assert!(
        denied.shows("Access denied") && denied.shows("as bob"),
        "{}",
        denied.text
    );
    shoot(&tab, "forbidden", &mut problems).await;
    let again = tab.submit("#switch-account").await;
    assert!(on_login_page(&app, &again), "{again:?}");
    assert_eq!(
        query_param(&again.url, "prompt").as_deref(),
        Some("select_account"),
        "{}",
        again.url
    );
    let allowed = tab.submit("button[name=chosen_user][value=alice]").await;
    assert_eq!(allowed.url, refused_url, "{}", allowed.text);
    assert!(allowed.shows("Signed in as alice"), "{}", allowed.text);

    // A sign-in link that expired (or never was), and a refusal at the provider.
    let expired = tab
        .open(&app.url("/oauth2/callback?code=stale&state=stale&error_description=not+ours"))
        .await;
    assert!(expired.shows("Sign-in link expired"), "{}", expired.text);
    assert!(!expired.shows("not ours"), "{}", expired.text);
    shoot(&tab, "link-expired", &mut problems).await;
    app.op.set_misbehavior(Misbehavior::AuthorizeError);
    let refusal = tab
        .open(&app.url("/oauth2/start?rd=%2Fdocuments%2F7"))
        .await;
    assert!(
        refusal.shows("Sign-in was not completed"),
        "{}",
        refusal.text
    );
    shoot(&tab, "provider-refused", &mut problems).await;
    app.op.set_misbehavior(Misbehavior::None);

    // portico's own 404, and the setup page.
    let missing = tab.open(&app.url("/oauth2/no-such-page")).await;
    assert!(missing.shows("Page not found"), "{}", missing.text);
    shoot(&tab, "not-found", &mut problems).await;
    let setup = tab.open(&app.url("/oauth2/setup")).await;
    assert!(setup.shows("Register these URLs"), "{}", setup.text);
    shoot(&tab, "setup", &mut problems).await;

    // The dev OP's own error page (a client it does not know).
    let op_error = tab
        .open(&format!(
            "{}/authorize?client_id=someone-else&response_type=code",
            app.op.issuer()
        ))
        .await;
    assert!(
        op_error.shows("The sign-in cannot go on"),
        "{}",
        op_error.text
    );
    shoot(&tab, "provider-error", &mut problems).await;

    // The check itself can fail: a page made too wide on purpose is caught.
    tab.eval(
        "(() => { const wide = document.createElement('div'); wide.id = 'too-wide'; \
         wide.style.width = '600px'; wide.style.height = '1px'; document.body.appendChild(wide); \
         return true; })()",
    )
    .await;
    tab.set_viewport(390, 844, true).await;
    let caught = layout_problems(&tab, 390).await;
    assert!(
        caught
            .iter()
            .any(|problem| problem.contains("div#too-wide")),
        "an overflowing page must be caught: {caught:?}"
    );
    let _: Value = tab
        .eval("document.getElementById('too-wide').remove() || true")
        .await;

    chromium.close().await;
    assert!(
        problems.is_empty(),
        "pages that do not hold up:\n{}",
        problems.join("\n")
    );
}
