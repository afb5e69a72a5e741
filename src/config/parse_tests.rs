//! Tests of the whole pipeline (`parse`, `load`, `render_effective`): text
//! and environment in, `Config` or every problem out.
// Tests may fail loudly.
#![allow(clippy::expect_used, clippy::panic, clippy::unwrap_used)]

use std::time::Duration;

use super::test_support::*;
use super::*;

#[test]
fn minimal_config_gets_contract_defaults() {
    let config = parse(&minimal(), &no_environment()).expect("valid");
    assert_eq!(config.server.listen.to_string(), "127.0.0.1:4180");
    assert_eq!(
        config.server.public_url.as_str(),
        "https://app.example.com/"
    );
    assert_eq!(config.server.shutdown_timeout, Duration::from_secs(30));
    assert_eq!(config.server.upstream_timeout, Duration::from_secs(30));
    assert_eq!(config.server.log_format, LogFormat::Text);
    assert_eq!(config.oidc.provider, ProviderKind::Generic);
    assert_eq!(config.oidc.issuer, "https://op.example.com");
    assert!(config.oidc.client_secret.is_none());
    assert_eq!(
        config.oidc.redirect_url.as_str(),
        "https://app.example.com/oauth2/callback"
    );
    assert_eq!(
        config.oidc.post_logout_redirect_url.as_str(),
        "https://app.example.com/oauth2/signed_out"
    );
    // Every asymmetric algorithm, and nothing else (never none, never HMAC).
    assert_eq!(
        config.oidc.allowed_algs,
        [
            "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512",
            "EdDSA"
        ]
    );
    assert_eq!(config.oidc.clock_skew, Duration::from_secs(30));
    assert_eq!(config.oidc.jwks_refresh, Duration::from_secs(900));
    assert_eq!(config.oidc.groups_claim, "groups");
    assert_eq!(config.session.store, StoreKind::Redis);
    assert_eq!(config.session.cookie_secret.expose().len(), 32);
    assert!(config.session.cookie_secure);
    assert_eq!(config.session.ttl, Duration::from_secs(12 * 3600));
    assert_eq!(config.session.idle_timeout, Duration::from_secs(3600));
    assert_eq!(config.session.refresh_before, Duration::from_secs(60));
    assert_eq!(config.routes[0].path_prefix, "/");
    assert_eq!(config.routes[0].host, None);
}

#[test]
fn every_problem_is_reported_at_once() {
    let text = r#"
[server]
listen = "localhost"
public_url = "ftp://app.example.com"

[oidc]
issuer = "not a url"
client_id = ""

[session]
cookie_secret = "c2hvcnQgc2VjcmV0"
tll = "2h"

[[routes]]
upstream = "also not a url"
"#;
    let errors = errors_of(text, &[]);
    let keys: Vec<&str> = errors
        .errors
        .iter()
        .map(|error| error.key.as_str())
        .collect();
    for expected in [
        "server.listen",
        "server.public_url",
        "oidc.issuer",
        "oidc.client_id",
        "session.cookie_secret",
        "session.tll",
        "routes[0].upstream",
    ] {
        assert!(keys.contains(&expected), "{expected} missing from {keys:?}");
    }
    let rendered = errors.to_string();
    assert!(rendered.starts_with(&format!(
        "found {} problems in the configuration:",
        errors.errors.len()
    )));
    assert!(
        rendered.contains("session.tll = \"2h\": unknown key — fix: did you mean `ttl`?"),
        "{rendered}"
    );
    assert!(rendered.contains(
        "session.cookie_secret = \"***\": decodes to 12 bytes, needs at least 32 — fix: generate one with `openssl rand -base64 32`"
    ));
    assert!(!rendered.contains("c2hvcnQgc2VjcmV0"));
    assert!(rendered.contains(
        "server.public_url = \"ftp://app.example.com\": must be an http or https URL, not ftp"
    ));
}

#[test]
fn toml_syntax_error_is_one_problem_with_line_and_column() {
    let errors = errors_of("[server]\nlisten = 127.0.0.1:4180\n", &[]);
    assert_eq!(errors.errors.len(), 1);
    assert!(
        errors.errors[0].key.starts_with("line 2, column "),
        "{:?}",
        errors.errors[0]
    );
    assert!(errors.errors[0].problem.starts_with("TOML syntax error: "));
    assert_eq!(errors.to_string().lines().count(), 2);
}

#[test]
fn env_override_replaces_values_from_the_file() {
    let config = parse(
        &minimal(),
        &environment(&[
            ("PORTICO_OIDC__CLIENT_SECRET", "from-env"),
            ("PORTICO_SERVER__LISTEN", "0.0.0.0:8080"),
            ("PORTICO_SESSION__COOKIE_SECURE", "false"),
            ("PORTICO_OIDC__CLIENT_ID", "123"),
            ("PORTICO_CONFIG", "/etc/portico.toml"),
        ]),
    )
    .expect("valid");
    assert_eq!(
        config
            .oidc
            .client_secret
            .as_ref()
            .map(|secret| secret.expose().as_str()),
        Some("from-env")
    );
    assert_eq!(config.server.listen.to_string(), "0.0.0.0:8080");
    assert!(!config.session.cookie_secure);
    assert_eq!(config.oidc.client_id, "123");
}

#[test]
fn problem_with_an_env_value_names_the_variable() {
    let errors = errors_of(&minimal(), &[("PORTICO_SESSION__TTL", "forever")]);
    let error = errors.for_key("session.ttl").expect("reported");
    assert!(
        error
            .problem
            .ends_with("(set by environment variable PORTICO_SESSION__TTL)"),
        "{error}"
    );
    let errors = errors_of(&minimal(), &[("PORTICO_SESSION__TLL", "2h")]);
    let error = errors.for_key("session.tll").expect("reported");
    assert!(error.problem.contains("PORTICO_SESSION__TLL"));
}

#[test]
fn descope_project_derives_issuer_client_id_and_base_url() {
    let text = minimal().replace(
        "issuer = \"https://op.example.com\"\nclient_id = \"portico\"",
        "provider = \"descope\"\nproject_id = \"P2abcDEF\"",
    );
    let config = parse(&text, &no_environment()).expect("valid");
    assert_eq!(config.oidc.provider, ProviderKind::Descope);
    assert_eq!(config.oidc.issuer, "https://api.descope.com/P2abcDEF");
    assert_eq!(config.oidc.client_id, "P2abcDEF");
    assert_eq!(
        config.oidc.base_url.as_ref().map(url::Url::as_str),
        Some("https://api.descope.com/")
    );
    assert_eq!(config.oidc.flow, None);
}

#[test]
fn descope_regional_project_derives_regional_base_url() {
    let project = "PEuc12vQ8bS1ZiSXHCCOh5cDlEsSabcd";
    assert_eq!(project.len(), 32);
    let text = minimal().replace(
        "issuer = \"https://op.example.com\"\nclient_id = \"portico\"",
        &format!("provider = \"descope\"\nproject_id = \"{project}\""),
    );
    let config = parse(&text, &no_environment()).expect("valid");
    assert_eq!(
        config.oidc.issuer,
        format!("https://api.euc1.descope.com/{project}")
    );
}

#[test]
fn descope_explicit_base_url_issuer_and_client_id_win() {
    let text = minimal().replace(
        "issuer = \"https://op.example.com\"\nclient_id = \"portico\"",
        "provider = \"descope\"\nproject_id = \"P2abc\"\nbase_url = \"https://auth.example.com/\"\nclient_id = \"custom\"\nflow = \"sign-in\"",
    );
    let config = parse(&text, &no_environment()).expect("valid");
    assert_eq!(config.oidc.issuer, "https://auth.example.com/P2abc");
    assert_eq!(config.oidc.client_id, "custom");
    assert_eq!(config.oidc.flow.as_deref(), Some("sign-in"));
    let explicit = text.replace(
        "client_id = \"custom\"",
        "issuer = \"https://auth.example.com/x/\"",
    );
    let config = parse(&explicit, &no_environment()).expect("valid");
    assert_eq!(config.oidc.issuer, "https://auth.example.com/x/");
    assert_eq!(config.oidc.client_id, "P2abc");
}

#[test]
fn cookie_secret_file_is_read() {
    let path = temp_file("cookie-secret", &format!("{COOKIE_SECRET}\n"));
    let text = minimal().replace(
        &format!("cookie_secret = \"{COOKIE_SECRET}\""),
        &format!(
            "cookie_secret_file = {}",
            errors::quoted(&path.display().to_string())
        ),
    );
    let result = parse(&text, &no_environment());
    std::fs::remove_file(&path).ok();
    assert_eq!(
        result.expect("valid").session.cookie_secret.expose().len(),
        32
    );
}

#[test]
fn client_secret_file_is_read_and_trimmed() {
    let path = temp_file("client-secret", "  s3cret\n");
    let text = minimal().replace(
        "client_id = \"portico\"",
        &format!(
            "client_id = \"portico\"\nclient_secret_file = {}",
            errors::quoted(&path.display().to_string())
        ),
    );
    let result = parse(&text, &no_environment());
    std::fs::remove_file(&path).ok();
    let config = result.expect("valid");
    assert_eq!(
        config
            .oidc
            .client_secret
            .as_ref()
            .map(|secret| secret.expose().as_str()),
        Some("s3cret")
    );
}

#[test]
fn missing_config_file_is_one_problem_naming_the_path() {
    let path = std::env::temp_dir().join("portico-config-test-does-not-exist.toml");
    let errors = load(&path, &no_environment()).expect_err("missing file");
    assert_eq!(errors.errors.len(), 1);
    assert_eq!(errors.errors[0].key, path.display().to_string());
}

#[test]
fn load_reads_the_file() {
    let path = temp_file("portico.toml", &minimal());
    let result = load(&path, &no_environment());
    std::fs::remove_file(&path).ok();
    assert!(result.is_ok());
}

#[test]
fn secrets_are_masked_in_effective_config() {
    let config = parse(
        &minimal(),
        &environment(&[
            ("PORTICO_OIDC__CLIENT_SECRET", "hunter2"),
            (
                "PORTICO_SESSION__REDIS_URL",
                "redis://default:redispw@redis:6379/0",
            ),
        ]),
    )
    .expect("valid");
    let rendered = render_effective(&config);
    assert!(!rendered.contains("hunter2"));
    assert!(!rendered.contains("redispw"));
    assert!(!rendered.contains(COOKIE_SECRET));
    assert!(rendered.contains("client_secret = \"***\""));
    assert!(rendered.contains("cookie_secret = \"***\""));
    assert!(rendered.contains("redis_url = \"redis://default:***@redis:6379/0\""));
    assert!(rendered.contains("redirect_url = \"https://app.example.com/oauth2/callback\""));
    rendered
        .parse::<toml::Table>()
        .expect("effective config is valid TOML");
}

#[test]
fn effective_config_reads_back_as_the_same_config() {
    let config = parse(
        &minimal(),
        &environment(&[("PORTICO_OIDC__CLIENT_SECRET", "hunter2")]),
    )
    .expect("valid");
    let rendered = render_effective(&config);
    let again = parse(
        &rendered,
        &environment(&[
            ("PORTICO_OIDC__CLIENT_SECRET", "hunter2"),
            ("PORTICO_SESSION__COOKIE_SECRET", COOKIE_SECRET),
        ]),
    )
    .expect("effective config parses");
    assert_eq!(render_effective(&again), rendered);
}

#[test]
fn telemetry_is_off_by_default_and_set_from_file_or_environment() {
    let config = parse(&minimal(), &no_environment()).expect("valid");
    assert_eq!(config.telemetry.otlp_endpoint, None);
    assert_eq!(config.telemetry.sample_ratio, 1.0);

    let text = format!(
        "{}\n[telemetry]\notlp_endpoint = \"http://127.0.0.1:4318\"\nsample_ratio = 1\n",
        minimal()
    );
    let config = parse(
        &text,
        &environment(&[("PORTICO_TELEMETRY__SAMPLE_RATIO", "0.25")]),
    )
    .expect("valid");
    assert_eq!(
        config
            .telemetry
            .otlp_endpoint
            .as_ref()
            .map(url::Url::as_str),
        Some("http://127.0.0.1:4318/v1/traces")
    );
    assert_eq!(config.telemetry.sample_ratio, 0.25);
    let rendered = render_effective(&config);
    assert!(rendered.contains("[telemetry]\notlp_endpoint = \"http://127.0.0.1:4318/v1/traces\"\nsample_ratio = 0.25\n"), "{rendered}");
}

#[test]
fn telemetry_typos_and_quoted_ratios_are_errors() {
    let text = format!(
        "{}\n[telemetry]\notlp_endpiont = \"http://127.0.0.1:4318\"\nsample_ratio = \"0.5\"\n",
        minimal()
    );
    let errors = errors_of(&text, &[]);
    let typo = errors
        .for_key("telemetry.otlp_endpiont")
        .expect("typo reported");
    assert!(typo.fix.contains("otlp_endpoint"), "{errors}");
    let ratio = errors
        .for_key("telemetry.sample_ratio")
        .expect("kind reported");
    assert!(ratio.fix.contains("without quotes"), "{errors}");
}
