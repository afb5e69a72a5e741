//! Tests of the `[oidc]` rules, provider identity included.
// Tests may fail loudly.
#![allow(clippy::expect_used, clippy::panic, clippy::unwrap_used)]

use super::super::parse;
use super::super::test_support::{errors_of, minimal, minimal_with, no_environment, problem_for};

fn with_issuer(issuer: &str) -> String {
    minimal().replace("\"https://op.example.com\"", &format!("\"{issuer}\""))
}

#[test]
fn issuer_is_kept_exactly_as_written() {
    let config = parse(
        &with_issuer("https://op.example.com/tenant/"),
        &no_environment(),
    )
    .expect("valid");
    assert_eq!(config.oidc.issuer, "https://op.example.com/tenant/");
}

#[test]
fn issuer_must_use_https_except_on_loopback() {
    for issuer in [
        "http://127.0.0.1:9000",
        "http://localhost:9000/op",
        "http://[::1]:9000",
    ] {
        assert!(
            parse(&with_issuer(issuer), &no_environment()).is_ok(),
            "{issuer}"
        );
    }
    let error = problem_for(&with_issuer("http://op.example.com"), "oidc.issuer");
    assert_eq!(
        error.problem,
        "must use https (http is allowed only for localhost)"
    );
    let error = problem_for(&with_issuer("https://op.example.com "), "oidc.issuer");
    assert!(error.problem.starts_with("has spaces around it"));
    problem_for(
        &with_issuer("https://op.example.com/?tenant=a"),
        "oidc.issuer",
    );
    problem_for(&with_issuer("not a url"), "oidc.issuer");
}

#[test]
fn generic_provider_requires_issuer_and_client_id() {
    let text = minimal().replace(
        "issuer = \"https://op.example.com\"\nclient_id = \"portico\"\n",
        "",
    );
    let errors = errors_of(&text, &[]);
    assert!(errors
        .for_key("oidc.issuer")
        .is_some_and(|error| error.problem.contains("generic")));
    assert!(errors.for_key("oidc.client_id").is_some());
}

#[test]
fn descope_keys_with_the_generic_provider_are_reported() {
    let error = problem_for(
        &minimal_with("[oidc]", "project_id = \"P2abc\""),
        "oidc.project_id",
    );
    assert_eq!(
        error.fix,
        "set oidc.provider = \"descope\", or remove oidc.project_id"
    );
}

#[test]
fn descope_project_id_is_required_and_alphanumeric() {
    let descope = |extra: &str| {
        minimal().replace(
            "issuer = \"https://op.example.com\"\nclient_id = \"portico\"",
            &format!("provider = \"descope\"\n{extra}"),
        )
    };
    problem_for(&descope(""), "oidc.project_id");
    let error = problem_for(&descope("project_id = \"P2-abc\""), "oidc.project_id");
    assert_eq!(error.problem, "may only contain letters and digits");
    let error = problem_for(
        &descope("project_id = \"P2YourProjectIdHere\""),
        "oidc.project_id",
    );
    assert_eq!(error.problem, "is a placeholder, not a real project id");
    assert!(error.fix.contains("Project settings"), "{}", error.fix);
    let error = problem_for(
        &descope("project_id = \"P2abc\"\nbase_url = \"http://auth.example.com\""),
        "oidc.base_url",
    );
    assert!(error.problem.contains("https"));
}

#[test]
fn unknown_provider_is_reported() {
    let error = problem_for(
        &minimal_with("[oidc]", "provider = \"okta\""),
        "oidc.provider",
    );
    assert!(error.fix.contains("descope"));
}

#[test]
fn client_secret_and_its_file_together_are_refused() {
    let text = minimal_with(
        "[oidc]",
        "client_secret = \"hunter2\"\nclient_secret_file = \"/run/secret\"",
    );
    let error = problem_for(&text, "oidc.client_secret");
    assert_eq!(error.value, "\"***\"");
    assert!(!errors_of(&text, &[]).to_string().contains("hunter2"));
}

#[test]
fn redirect_url_must_be_the_callback_path() {
    let error = problem_for(
        &minimal_with(
            "[oidc]",
            "redirect_url = \"https://app.example.com/callback\"",
        ),
        "oidc.redirect_url",
    );
    assert!(error
        .problem
        .starts_with("must have the path /oauth2/callback"));
    let error = problem_for(
        &minimal_with(
            "[oidc]",
            "redirect_url = \"http://app.example.com/oauth2/callback\"",
        ),
        "oidc.redirect_url",
    );
    assert!(error.problem.starts_with("must use https"));
}

#[test]
fn redirect_url_derived_from_an_http_public_url_needs_loopback() {
    let text = minimal().replace("https://app.example.com", "http://app.example.com");
    let error = problem_for(&text, "oidc.redirect_url");
    assert!(error.problem.ends_with("(derived from server.public_url)"));
    let text = minimal().replace("https://app.example.com", "http://127.0.0.1:4180");
    let config = parse(&text, &no_environment()).expect("valid");
    assert_eq!(
        config.oidc.redirect_url.as_str(),
        "http://127.0.0.1:4180/oauth2/callback"
    );
    assert!(!config.session.cookie_secure);
}

#[test]
fn scopes_must_include_openid() {
    let error = problem_for(
        &minimal_with("[oidc]", "scopes = [\"profile\"]"),
        "oidc.scopes",
    );
    assert_eq!(error.value, "[\"profile\"]");
}

#[test]
fn algorithm_none_is_always_refused() {
    let text = minimal_with("[oidc]", "allowed_algs = [\"RS256\", \"none\", \"XX999\"]");
    let errors = errors_of(&text, &[]);
    let none = errors.for_key("oidc.allowed_algs[1]").expect("reported");
    assert!(none.problem.contains("unsigned tokens"));
    assert!(errors.for_key("oidc.allowed_algs[2]").is_some());
    problem_for(
        &minimal_with("[oidc]", "allowed_algs = []"),
        "oidc.allowed_algs",
    );
}

#[test]
fn algorithm_names_are_normalised_and_hmac_needs_a_client_secret() {
    let text = minimal_with("[oidc]", "allowed_algs = [\"rs256\", \"eddsa\"]");
    let config = parse(&text, &no_environment()).expect("valid");
    assert_eq!(config.oidc.allowed_algs, ["RS256", "EdDSA"]);
    let text = minimal_with("[oidc]", "allowed_algs = [\"HS256\"]");
    let error = problem_for(&text, "oidc.allowed_algs[0]");
    assert!(error.problem.contains("no client secret"));
    let text = minimal_with(
        "[oidc]",
        "allowed_algs = [\"HS256\"]\nclient_secret = \"hunter2\"",
    );
    assert!(parse(&text, &no_environment()).is_ok());
}

#[test]
fn extra_auth_params_cannot_replace_portico_parameters() {
    let text = minimal_with(
        "[oidc]",
        "extra_auth_params = { prompt = \"login\", state = \"fixed\" }",
    );
    problem_for(&text, "oidc.extra_auth_params.state");
    let text = minimal_with("[oidc]", "extra_auth_params = { prompt = \"login\" }");
    let config = parse(&text, &no_environment()).expect("valid");
    assert_eq!(config.oidc.extra_auth_params["prompt"], "login");
}

#[test]
fn claims_must_be_named_and_jwks_refresh_positive() {
    let text = minimal_with(
        "[oidc]",
        "roles_claim = \"\"\ngroups_claim = \" \"\njwks_refresh = \"0s\"\nclock_skew = \"0s\"",
    );
    let errors = errors_of(&text, &[]);
    let keys: Vec<&str> = errors
        .errors
        .iter()
        .map(|error| error.key.as_str())
        .collect();
    assert_eq!(
        keys,
        ["oidc.jwks_refresh", "oidc.roles_claim", "oidc.groups_claim"]
    );
}

#[test]
fn bearer_audiences_are_kept_and_may_not_name_the_client() {
    let text = minimal_with("[oidc]", "bearer_audiences = [\"https://api.example.com\"]");
    let config = parse(&text, &no_environment()).expect("valid");
    assert_eq!(config.oidc.bearer_audiences, ["https://api.example.com"]);
    let client_id = config.oidc.client_id.clone();
    let text = minimal_with(
        "[oidc]",
        &format!("bearer_audiences = [\"api\", \"{client_id}\"]"),
    );
    let problem = problem_for(&text, "oidc.bearer_audiences[1]");
    assert!(problem.to_string().contains("ID token"), "{problem}");
}

#[test]
fn userinfo_mode_defaults_to_auto_and_takes_the_three_names() {
    use super::super::types::UserinfoMode;
    let config = parse(&minimal(), &no_environment()).expect("valid");
    assert_eq!(config.oidc.userinfo, UserinfoMode::Auto);
    for (name, mode) in [
        ("auto", UserinfoMode::Auto),
        ("always", UserinfoMode::Always),
        ("never", UserinfoMode::Never),
    ] {
        let text = minimal_with("[oidc]", &format!("userinfo = \"{name}\""));
        assert_eq!(
            parse(&text, &no_environment()).expect(name).oidc.userinfo,
            mode
        );
    }
    let error = problem_for(
        &minimal_with("[oidc]", "userinfo = \"sometimes\""),
        "oidc.userinfo",
    );
    assert_eq!(error.value, "\"sometimes\"");
    assert!(error.fix.contains("\"always\""), "{}", error.fix);
}

#[test]
fn wanted_claims_follow_the_claim_settings_and_the_route_rules() {
    let plain = parse(&minimal(), &no_environment()).expect("valid");
    assert_eq!(
        plain.oidc.wanted_claims,
        ["email", "name", "preferred_username", "roles", "groups"]
    );
    let text = minimal_with("[oidc]", "roles_claim = \"realm_access.roles\"").replace(
        "upstream = \"http://127.0.0.1:9100\"",
        "upstream = \"http://127.0.0.1:9100\"\nrequire_permissions = [\"read\"]\n\
             require_claims = { \"org.id\" = [\"acme\"], email = [\"a@b.c\"] }",
    );
    let config = parse(&text, &no_environment()).expect("valid");
    assert_eq!(
        config.oidc.wanted_claims,
        [
            "email",
            "name",
            "preferred_username",
            "realm_access.roles",
            "groups",
            "permissions",
            "org.id"
        ]
    );
}
