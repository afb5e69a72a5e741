//! Tests of the `[server]` and `[[routes]]` rules.
// Tests may fail loudly.
#![allow(clippy::expect_used, clippy::panic, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::time::Duration;

use super::super::parse;
use super::super::test_support::{errors_of, minimal, minimal_with, no_environment, problem_for};
use super::super::LogFormat;

#[test]
fn listen_must_be_an_ip_address_and_port() {
    let error = problem_for(
        &minimal_with("[server]", "listen = \"localhost:4180\""),
        "server.listen",
    );
    assert_eq!(error.value, "\"localhost:4180\"");
    assert!(error.fix.contains("127.0.0.1:4180"));
}

#[test]
fn metrics_listen_is_optional() {
    let config = parse(&minimal(), &no_environment()).expect("valid");
    assert_eq!(config.server.metrics_listen, None);
    let text = minimal_with("[server]", "metrics_listen = \"[::1]:9090\"");
    let config = parse(&text, &no_environment()).expect("valid");
    assert_eq!(
        config.server.metrics_listen,
        "[::1]:9090".parse::<SocketAddr>().ok()
    );
    problem_for(
        &minimal_with("[server]", "metrics_listen = \"9090\""),
        "server.metrics_listen",
    );
}

#[test]
fn ext_authz_grpc_listen_is_off_unless_an_address_is_given() {
    let config = parse(&minimal(), &no_environment()).expect("valid");
    assert_eq!(config.server.ext_authz_grpc_listen, None);
    let text = minimal_with("[server]", "ext_authz_grpc_listen = \"0.0.0.0:9001\"");
    let config = parse(&text, &no_environment()).expect("valid");
    assert_eq!(
        config.server.ext_authz_grpc_listen,
        "0.0.0.0:9001".parse::<SocketAddr>().ok()
    );
    problem_for(
        &minimal_with("[server]", "ext_authz_grpc_listen = \"portico:9001\""),
        "server.ext_authz_grpc_listen",
    );
}

#[test]
fn public_url_is_normalised_to_its_origin() {
    let text = minimal().replace("https://app.example.com", "HTTPS://App.Example.COM:443/");
    let config = parse(&text, &no_environment()).expect("valid");
    assert_eq!(
        config.server.public_url.as_str(),
        "https://app.example.com/"
    );
}

#[test]
fn public_url_must_be_a_bare_http_origin() {
    for (written, problem) in [
        (
            "https://app.example.com/app",
            "must be an origin without a path",
        ),
        (
            "https://app.example.com/?a=b",
            "must be an origin without a query or fragment",
        ),
        (
            "https://user:pw@app.example.com",
            "must not contain a user name or password",
        ),
        (
            "ftp://app.example.com",
            "must be an http or https URL, not ftp",
        ),
        (
            "app.example.com",
            "is not an absolute URL (relative URL without a base)",
        ),
        ("", "is required"),
    ] {
        let text = minimal().replace("\"https://app.example.com\"", &format!("\"{written}\""));
        assert_eq!(
            problem_for(&text, "server.public_url").problem,
            problem,
            "{written}"
        );
    }
}

#[test]
fn trusted_proxies_accept_networks_and_bare_addresses() {
    let text = minimal_with(
        "[server]",
        "trusted_proxies = [\"10.0.0.0/8\", \"192.168.1.7\", \"::1\"]",
    );
    let config = parse(&text, &no_environment()).expect("valid");
    let proxies: Vec<String> = config
        .server
        .trusted_proxies
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(proxies, ["10.0.0.0/8", "192.168.1.7/32", "::1/128"]);
    let text = minimal_with(
        "[server]",
        "trusted_proxies = [\"10.0.0.0/8\", \"10.0.0.0/33\"]",
    );
    assert_eq!(
        problem_for(&text, "server.trusted_proxies[1]").value,
        "\"10.0.0.0/33\""
    );
}

#[test]
fn allowed_redirect_hosts_are_lower_cased_host_names() {
    let text = minimal_with(
        "[server]",
        "allowed_redirect_hosts = [\"Docs.Example.com\", \".example.org\"]",
    );
    let config = parse(&text, &no_environment()).expect("valid");
    assert_eq!(
        config.server.allowed_redirect_hosts,
        ["docs.example.com", ".example.org"]
    );
    for (written, problem) in [
        (
            "https://docs.example.com",
            "has a scheme; give the host name only",
        ),
        (
            "docs.example.com/path",
            "has a path; give the host name only",
        ),
        ("*.example.com", "wildcards are not supported"),
        (
            "docs.example.com:8443",
            "has a port; give the host name only",
        ),
        (".", "is empty"),
    ] {
        let text = minimal_with(
            "[server]",
            &format!("allowed_redirect_hosts = [\"{written}\"]"),
        );
        assert_eq!(
            problem_for(&text, "server.allowed_redirect_hosts[0]").problem,
            problem
        );
    }
}

#[test]
fn durations_must_parse_and_timeouts_be_positive() {
    let text = minimal_with(
        "[server]",
        "shutdown_timeout = \"0s\"\nupstream_timeout = \"30\"",
    );
    let errors = errors_of(&text, &[]);
    let shutdown = errors.for_key("server.shutdown_timeout").expect("reported");
    assert_eq!(shutdown.problem, "must be longer than zero");
    let upstream = errors.for_key("server.upstream_timeout").expect("reported");
    assert_eq!(upstream.problem, "is not a duration: `30` has no unit");
    let text = minimal_with(
        "[server]",
        "upstream_timeout = \"1m30s\"\nlog_format = \"json\"",
    );
    let config = parse(&text, &no_environment()).expect("valid");
    assert_eq!(config.server.upstream_timeout, Duration::from_secs(90));
    assert_eq!(config.server.log_format, LogFormat::Json);
}

#[test]
fn log_format_is_text_or_json() {
    let error = problem_for(
        &minimal_with("[server]", "log_format = \"xml\""),
        "server.log_format",
    );
    assert_eq!(error.fix, "use \"text\" or \"json\"");
}

#[test]
fn tls_cert_and_key_come_together() {
    let error = problem_for(
        &minimal_with("[server]", "tls_cert = \"/etc/cert.pem\""),
        "server.tls_cert",
    );
    assert_eq!(error.problem, "is set but server.tls_key is not");
    let text = minimal_with(
        "[server]",
        "tls_cert = \"/etc/cert.pem\"\ntls_key = \"/etc/key.pem\"",
    );
    let config = parse(&text, &no_environment()).expect("valid");
    assert!(config.server.tls_cert.is_some() && config.server.tls_key.is_some());
}

#[test]
fn at_least_one_route_is_required() {
    let text = minimal().replace("[[routes]]\nupstream = \"http://127.0.0.1:9100\"\n", "");
    problem_for(&text, "routes");
}

#[test]
fn route_rules_are_each_reported() {
    let text = minimal()
        + r#"
[[routes]]
path_prefix = "api"
upstream = "ftp://files"

[[routes]]
path_prefix = "/open"
upstream = "http://127.0.0.1:9101"
public = true
require_roles = ["admin"]

[[routes]]
upstream = "http://127.0.0.1:9102"

[[routes]]
path_prefix = "/x"
host = "https://app.example.com"
upstream = "http://127.0.0.1:9103"
require_roles = [""]

[[routes]]
path_prefix = "/y"
upstream = ""
"#;
    let errors = errors_of(&text, &[]);
    let problem = |key: &str| errors.for_key(key).map(|error| error.problem.clone());
    assert_eq!(
        problem("routes[1].path_prefix").as_deref(),
        Some("must start with \"/\"")
    );
    assert_eq!(
        problem("routes[1].upstream").as_deref(),
        Some("must be an http, https or h2c URL, not ftp")
    );
    assert!(problem("routes[2].require_roles").is_some_and(|text| text.contains("public route")));
    assert_eq!(
        problem("routes[3].path_prefix").as_deref(),
        Some("routes[0] already has the same host and path_prefix")
    );
    assert!(problem("routes[4].host").is_some());
    assert_eq!(
        problem("routes[4].require_roles[0]").as_deref(),
        Some("is empty")
    );
    assert_eq!(
        problem("routes[5].upstream").as_deref(),
        Some("is required")
    );
    assert_eq!(errors.errors.len(), 7, "{errors}");
}

#[test]
fn route_host_is_lower_cased_and_distinguishes_routes() {
    let text = minimal()
        + "[[routes]]\nhost = \"Admin.Example.com:8443\"\nupstream = \"http://127.0.0.1:9101/base\"\n";
    let config = parse(&text, &no_environment()).expect("valid");
    assert_eq!(
        config.routes[1].host.as_deref(),
        Some("admin.example.com:8443")
    );
    assert_eq!(
        config.routes[1].upstream.as_str(),
        "http://127.0.0.1:9101/base"
    );
}

#[test]
fn request_limits_default_and_must_be_positive_sizes() {
    let config = parse(&minimal_with("[server]", ""), &no_environment()).expect("valid");
    assert_eq!(
        config.server.limits,
        crate::config::RequestLimits::default()
    );
    assert_eq!(config.server.limits.max_body_bytes, 10 * 1024 * 1024);
    let text = minimal_with(
        "[server]",
        "max_body_bytes = \"1MiB\"\nmax_header_bytes = \"0\"\nmax_query_bytes = \"lots\"",
    );
    let errors = errors_of(&text, &[]);
    assert_eq!(
        errors
            .for_key("server.max_header_bytes")
            .expect("reported")
            .problem,
        "must be larger than zero"
    );
    assert!(errors
        .for_key("server.max_query_bytes")
        .expect("reported")
        .problem
        .starts_with("is not a size"));
    let config = parse(
        &minimal_with("[server]", "max_body_bytes = \"1MiB\""),
        &no_environment(),
    )
    .expect("valid");
    assert_eq!(config.server.limits.max_body_bytes, 1 << 20);
    let rendered = crate::config::render_effective(&config);
    assert!(rendered.contains("max_body_bytes = \"1MiB\""), "{rendered}");
}

#[test]
fn upstream_timeouts_and_h2c_have_nginx_like_defaults_and_are_checked() {
    let config = parse(&minimal_with("[server]", ""), &no_environment()).expect("valid");
    assert_eq!(
        config.server.upstream_connect_timeout,
        Duration::from_secs(5)
    );
    assert_eq!(config.server.upstream_read_timeout, Duration::from_secs(60));
    assert_eq!(config.server.upstream_send_timeout, Duration::from_secs(60));
    assert!(config.server.h2c, "h2c is on by default");
    let text = minimal_with(
        "[server]",
        "upstream_connect_timeout = \"0s\"\nupstream_read_timeout = \"soon\"\n\
         upstream_send_timeout = \"0s\"",
    );
    let errors = errors_of(&text, &[]);
    for key in [
        "server.upstream_connect_timeout",
        "server.upstream_read_timeout",
        "server.upstream_send_timeout",
    ] {
        assert!(errors.for_key(key).is_some(), "{key} reported");
    }
    let text = minimal_with(
        "[server]",
        "upstream_read_timeout = \"2m\"\nupstream_send_timeout = \"5s\"\nh2c = false",
    );
    let config = parse(&text, &no_environment()).expect("valid");
    assert_eq!(
        config.server.upstream_read_timeout,
        Duration::from_secs(120)
    );
    assert_eq!(config.server.upstream_send_timeout, Duration::from_secs(5));
    assert!(!config.server.h2c);
    let rendered = crate::config::render_effective(&config);
    assert!(rendered.contains("h2c = false"), "{rendered}");
    assert!(
        rendered.contains("upstream_read_timeout = \"2m\""),
        "{rendered}"
    );
}
