//! Scenario (a) in a real browser: a person opens a protected deep link,
//! goes through the Descope-shaped hosted flow with a passkey (headless
//! Chromium's virtual authenticator), lands on the page with identity
//! headers, and a project role and a tenant role each open a guarded route.
//!
//! Without Chromium this test prints a skip notice and passes, unless `CI=true`.

use portico::devop::DevUser;
use serde_json::json;

use crate::descope::{descope_builder, descope_op, PROJECT};
use crate::support::Chromium;

#[tokio::test]
async fn a_deep_link_through_the_descope_hosted_flow_with_a_passkey_opens_role_and_tenant_routes() {
    let test =
        "a_deep_link_through_the_descope_hosted_flow_with_a_passkey_opens_role_and_tenant_routes";
    let Some(chromium) = Chromium::launch(test).await else {
        return;
    };
    let mut carol = DevUser::new("carol").with_roles(&["editor"]);
    carol.extra_claims = json!({"tenants": {"T1": {"roles": ["admin"], "permissions": []}}})
        .as_object()
        .unwrap()
        .clone();
    let op = descope_op(PROJECT, |options| {
        options.public_host = Some("localhost".into());
        options.users = vec![carol];
    })
    .await;
    let app = descope_builder(
        op,
        &[
            "path_prefix = \"/\"\nupstream = \"{upstream}\"",
            "path_prefix = \"/edit\"\nupstream = \"{upstream}\"\nrequire_roles = [\"editor\"]\nrequire_amr = [\"webauthn\"]",
            "path_prefix = \"/tenant\"\nupstream = \"{upstream}\"\nrequire_tenant_roles = { tenant = \"T1\", roles = [\"admin\"] }",
            "path_prefix = \"/ops\"\nupstream = \"{upstream}\"\nrequire_roles = [\"ops\"]",
        ],
    )
    .auto_approve(None)
    .build()
    .await;
    let tab = chromium.new_tab().await;
    let authenticator = tab.add_virtual_authenticator().await;
    let deep_link = app.url("/edit/drafts/42?view=diff");

    let login = tab.open(&deep_link).await;
    assert!(
        login.url.contains("/oauth2/v1/authorize?"),
        "not Descope's authorization endpoint: {login:?}"
    );
    tab.fill("#username", "carol").await;
    let saved = tab.submit("#passkey-register").await;
    assert!(saved.shows("Passkey saved for carol"), "{}", saved.text);
    let landing = tab.submit("#passkey-sign-in").await;
    assert_eq!(landing.url, deep_link, "{}", landing.text);
    assert!(
        landing.shows("Signed in as carol (carol@example.test)"),
        "{}",
        landing.text
    );
    assert_eq!(app.op.stats().last_amr, ["webauthn"]);
    assert!(!tab
        .authenticator_credentials(&authenticator)
        .await
        .is_empty());

    // The project role opened /edit (with the passkey rule); the tenant role opens /tenant.
    let tenant = tab.open(&app.url("/tenant/members")).await;
    assert!(tenant.shows("GET /tenant/members"), "{}", tenant.text);
    // A role carol lacks: the forbidden page, not the app.
    let ops = tab.open(&app.url("/ops")).await;
    assert!(!ops.shows("GET /ops"), "{}", ops.text);
    tab.screenshot("descope-passkey-landing").await;
    chromium.close().await;
}
