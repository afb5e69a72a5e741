//! Raw configuration → validated [`Config`], reporting every problem at once.
//!
//! Like oauth2-proxy's `pkg/validation`, this is its own step over plain
//! data: each rule looks at one value (or a pair), reports into the shared
//! [`Problems`] list and carries on, so one run of `portico check` lists
//! everything that needs fixing. The `[server]` and `[[routes]]` rules live
//! here with the helpers every section shares; `[oidc]` and `[session]` have
//! their own files.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;
use url::{Host, Url};

use super::duration::{parse_duration, DURATION_FIX};
use super::errors::{quoted, Problems};
use super::raw::{RawConfig, RawServer};
use super::size::{parse_size, SIZE_FIX};
use super::types::{Config, LogFormat, RequestLimits, ServerConfig};
use super::validate_branding::branding;
use super::validate_oidc::oidc;
use super::validate_routes::{kept_claims, routes, wanted_claims};
use super::validate_session::session;
use super::validate_telemetry::telemetry;
use super::validate_upstream_limit::{route_limits, server_limit};

/// Checks everything; `None` when any problem was reported.
pub(crate) fn validate(raw: &RawConfig, problems: &mut Problems) -> Option<Config> {
    let public_url = public_url(problems, &raw.server.public_url);
    let server = server(problems, &raw.server, public_url.as_ref());
    let oidc = oidc(problems, &raw.oidc, public_url.as_ref());
    let session = session(problems, &raw.session, public_url.as_ref());
    let routes = routes(problems, &raw.routes);
    // Each route's upstream limit; judged against the built-in defaults
    // when `[server]`'s are unusable (and reported).
    let limits = route_limits(
        problems,
        server
            .as_ref()
            .map_or_else(Default::default, |server| server.upstream_limit),
        &raw.routes,
    );
    let telemetry = telemetry(problems, &raw.telemetry);
    if let (Some(oidc), Some(session), Some(public_url)) = (&oidc, &session, &public_url) {
        redirect_origin(
            problems,
            public_url,
            &oidc.redirect_url,
            session.cookie_domain.as_deref(),
        );
    }
    let mut oidc = oidc?;
    let mut routes = routes?;
    for (route, limit) in routes.iter_mut().zip(limits?) {
        route.upstream_limit = limit;
    }
    oidc.kept_claims = kept_claims(&routes);
    oidc.wanted_claims = wanted_claims(&oidc, &routes);
    Some(Config {
        server: server?,
        oidc,
        session: session?,
        routes,
        telemetry: telemetry?,
    })
}

/// The callback must see the login cookies set on the public origin: same
/// origin, or both hosts under `cookie_domain`.
fn redirect_origin(
    problems: &mut Problems,
    public_url: &Url,
    redirect_url: &Url,
    cookie_domain: Option<&str>,
) {
    if redirect_url.origin() == public_url.origin() {
        return;
    }
    let covered = |url: &Url, domain: &str| {
        url.host_str().is_some_and(|host| {
            host == domain
                || host
                    .strip_suffix(domain)
                    .is_some_and(|rest| rest.ends_with('.'))
        })
    };
    if let Some(domain) = cookie_domain {
        if covered(public_url, domain) && covered(redirect_url, domain) {
            return;
        }
    }
    problems.report(
        "oidc.redirect_url",
        quoted(redirect_url.as_str()),
        format!(
            "is on another origin than server.public_url ({}), so the callback would not see the login cookie",
            public_url.origin().ascii_serialization()
        ),
        "use {public_url}/oauth2/callback, or set session.cookie_domain to a domain covering both hosts",
    );
}

fn server(
    problems: &mut Problems,
    raw: &RawServer,
    public_url: Option<&Url>,
) -> Option<ServerConfig> {
    let listen = socket_address(problems, "server.listen", &raw.listen);
    let metrics_listen = if raw.metrics_listen.is_empty() {
        Some(None)
    } else {
        socket_address(problems, "server.metrics_listen", &raw.metrics_listen).map(Some)
    };
    let ext_authz_grpc_listen = if raw.ext_authz_grpc_listen.is_empty() {
        Some(None)
    } else {
        socket_address(
            problems,
            "server.ext_authz_grpc_listen",
            &raw.ext_authz_grpc_listen,
        )
        .map(Some)
    };
    let trusted_proxies = each_item(
        problems,
        "server.trusted_proxies",
        &raw.trusted_proxies,
        |text| {
            parse_network(text).ok_or((
                "is not an IP network".to_owned(),
                "write a CIDR such as \"10.0.0.0/8\" or a single address such as \"10.1.2.3\""
                    .to_owned(),
            ))
        },
    );
    let allowed_redirect_hosts = each_item(
        problems,
        "server.allowed_redirect_hosts",
        &raw.allowed_redirect_hosts,
        |text| {
            redirect_host(text).map_err(|problem| {
                (
                    problem.to_owned(),
                    "write a host name such as \"docs.example.com\", or \".example.com\" for a domain and its subdomains".to_owned(),
                )
            })
        },
    );
    let log_format = match raw.log_format.as_str() {
        "text" => Some(LogFormat::Text),
        "json" => Some(LogFormat::Json),
        other => {
            problems.report(
                "server.log_format",
                quoted(other),
                "is not a log format",
                "use \"text\" or \"json\"",
            );
            None
        }
    };
    let shutdown_timeout = duration(
        problems,
        "server.shutdown_timeout",
        &raw.shutdown_timeout,
        true,
    );
    let upstream_timeout = duration(
        problems,
        "server.upstream_timeout",
        &raw.upstream_timeout,
        true,
    );
    let upstream_connect_timeout = duration(
        problems,
        "server.upstream_connect_timeout",
        &raw.upstream_connect_timeout,
        true,
    );
    let upstream_read_timeout = duration(
        problems,
        "server.upstream_read_timeout",
        &raw.upstream_read_timeout,
        true,
    );
    let upstream_send_timeout = duration(
        problems,
        "server.upstream_send_timeout",
        &raw.upstream_send_timeout,
        true,
    );
    let tls_paired = raw.tls_cert.is_empty() == raw.tls_key.is_empty();
    if !tls_paired {
        let (key, value, missing) = if raw.tls_key.is_empty() {
            ("server.tls_cert", &raw.tls_cert, "server.tls_key")
        } else {
            ("server.tls_key", &raw.tls_key, "server.tls_cert")
        };
        problems.report(
            key,
            quoted(value),
            format!("is set but {missing} is not"),
            "set both tls_cert and tls_key to serve https, or neither",
        );
    }
    let limits = limits(problems, raw);
    let upstream_limit = server_limit(problems, raw);
    let branding = branding(problems, &raw.app_name, &raw.logo_url);
    let optional_path = |text: &str| (!text.is_empty()).then(|| PathBuf::from(text));
    let identity_key = match super::secrets::read_secret(
        problems,
        "server",
        "identity_key",
        &raw.identity_key,
        &raw.identity_key_file,
    ) {
        super::secrets::SecretInput::Missing => Some(None),
        super::secrets::SecretInput::Found(secret) => {
            if crate::identity::IdentitySigner::from_base64(&secret.text, "https://check").is_ok() {
                Some(Some(super::types::Secret::new(secret.text)))
            } else {
                problems.report(
                    &secret.key,
                    secret.shown.clone(),
                    "is not 32 bytes of base64 making a P-256 key",
                    "generate one with `openssl rand -base64 32`",
                );
                None
            }
        }
        super::secrets::SecretInput::Broken => None,
    };
    Some(ServerConfig {
        listen: listen?,
        public_url: public_url?.clone(),
        trusted_proxies: trusted_proxies?,
        allowed_redirect_hosts: allowed_redirect_hosts?,
        metrics_listen: metrics_listen?,
        ext_authz_grpc_listen: ext_authz_grpc_listen?,
        log_format: log_format?,
        shutdown_timeout: shutdown_timeout?,
        tls_cert: optional_path(&raw.tls_cert).filter(|_| tls_paired),
        tls_key: optional_path(&raw.tls_key).filter(|_| tls_paired),
        setup_page: raw.setup_page,
        identity_key: identity_key?,
        upstream_timeout: upstream_timeout?,
        upstream_connect_timeout: upstream_connect_timeout?,
        upstream_read_timeout: upstream_read_timeout?,
        upstream_send_timeout: upstream_send_timeout?,
        h2c: raw.h2c,
        limits: limits?,
        branding: branding?,
        upstream_limit: upstream_limit?,
    })
}

/// The request size limits; each must be a size larger than zero.
fn limits(problems: &mut Problems, raw: &RawServer) -> Option<RequestLimits> {
    let mut size = |key: &str, text: &str| match parse_size(text) {
        Ok(0) => {
            problems.report(key, quoted(text), "must be larger than zero", SIZE_FIX);
            None
        }
        Ok(bytes) => Some(bytes),
        Err(problem) => {
            problems.report(
                key,
                quoted(text),
                format!("is not a size: {problem}"),
                SIZE_FIX,
            );
            None
        }
    };
    let max_header_bytes = size("server.max_header_bytes", &raw.max_header_bytes);
    let max_cookie_bytes = size("server.max_cookie_bytes", &raw.max_cookie_bytes);
    let max_query_bytes = size("server.max_query_bytes", &raw.max_query_bytes);
    let max_body_bytes = size("server.max_body_bytes", &raw.max_body_bytes);
    Some(RequestLimits {
        max_header_bytes: max_header_bytes?,
        max_cookie_bytes: max_cookie_bytes?,
        max_query_bytes: max_query_bytes?,
        max_body_bytes: max_body_bytes?,
    })
}

/// The origin browsers use, normalised to `scheme://host[:port]/`.
fn public_url(problems: &mut Problems, text: &str) -> Option<Url> {
    const KEY: &str = "server.public_url";
    const FIX: &str = "set it to the origin browsers use, e.g. \"https://app.example.com\"";
    if text.is_empty() {
        problems.report(KEY, quoted(text), "is required", FIX);
        return None;
    }
    let url = http_url(problems, KEY, text, FIX)?;
    let problem = if !url.username().is_empty() || url.password().is_some() {
        Some("must not contain a user name or password")
    } else if url.path() != "/" {
        Some("must be an origin without a path")
    } else if url.query().is_some() || url.fragment().is_some() {
        Some("must be an origin without a query or fragment")
    } else {
        None
    };
    match problem {
        Some(problem) => {
            problems.report(KEY, quoted(text), problem, FIX);
            None
        }
        None => Some(url),
    }
}

fn socket_address(problems: &mut Problems, key: &str, text: &str) -> Option<SocketAddr> {
    match text.parse() {
        Ok(address) => Some(address),
        Err(_) => {
            problems.report(
                key,
                quoted(text),
                "is not an IP address and port",
                "write e.g. \"127.0.0.1:4180\" or \"[::]:4180\" (host names are not accepted)",
            );
            None
        }
    }
}

/// A CIDR, or a bare address as a single-host network.
fn parse_network(text: &str) -> Option<IpNet> {
    let text = text.trim();
    text.parse::<IpNet>()
        .ok()
        .or_else(|| text.parse::<IpAddr>().ok().map(IpNet::from))
}

/// A redirect host: lower-cased host name, optional leading dot.
fn redirect_host(text: &str) -> Result<String, &'static str> {
    let lower = text.trim().to_ascii_lowercase();
    if lower.contains("://") {
        return Err("has a scheme; give the host name only");
    }
    if lower.contains(['/', '?', '#']) {
        return Err("has a path; give the host name only");
    }
    if lower.contains('*') {
        return Err("wildcards are not supported");
    }
    let (dot, name) = match lower.strip_prefix('.') {
        Some(name) => (".", name),
        None => ("", lower.as_str()),
    };
    if name.is_empty() {
        return Err("is empty");
    }
    if name.contains(':') && !name.starts_with('[') {
        return Err("has a port; give the host name only");
    }
    match Host::parse(name) {
        Ok(host) => Ok(format!("{dot}{host}")),
        Err(_) => Err("is not a valid host name"),
    }
}

/// Checks every item of a list; `None` when any item was reported.
fn each_item<T>(
    problems: &mut Problems,
    key: &str,
    items: &[String],
    check: impl Fn(&str) -> Result<T, (String, String)>,
) -> Option<Vec<T>> {
    let mut checked = Some(Vec::with_capacity(items.len()));
    for (index, item) in items.iter().enumerate() {
        match check(item) {
            Ok(value) => {
                if let Some(list) = checked.as_mut() {
                    list.push(value);
                }
            }
            Err((problem, fix)) => {
                problems.report(format!("{key}[{index}]"), quoted(item), problem, fix);
                checked = None;
            }
        }
    }
    checked
}

pub(crate) fn non_empty(
    problems: &mut Problems,
    key: &str,
    text: &str,
    fix: &str,
) -> Option<String> {
    if text.trim().is_empty() {
        problems.report(key, quoted(text), "must not be empty", fix);
        None
    } else {
        Some(text.to_owned())
    }
}

/// A duration; `positive` refuses zero.
pub(crate) fn duration(
    problems: &mut Problems,
    key: &str,
    text: &str,
    positive: bool,
) -> Option<Duration> {
    match parse_duration(text) {
        Ok(duration) if positive && duration.is_zero() => {
            problems.report(key, quoted(text), "must be longer than zero", DURATION_FIX);
            None
        }
        Ok(duration) => Some(duration),
        Err(problem) => {
            problems.report(
                key,
                quoted(text),
                format!("is not a duration: {problem}"),
                DURATION_FIX,
            );
            None
        }
    }
}

/// An absolute http or https URL with a host.
pub(crate) fn http_url(problems: &mut Problems, key: &str, text: &str, fix: &str) -> Option<Url> {
    let problem = match Url::parse(text) {
        Err(error) => format!("is not an absolute URL ({error})"),
        Ok(url) if !matches!(url.scheme(), "http" | "https") => {
            format!("must be an http or https URL, not {}", url.scheme())
        }
        Ok(url) if url.host().is_none() => "has no host".to_owned(),
        Ok(url) => return Some(url),
    };
    problems.report(key, quoted(text), problem, fix);
    None
}

/// Loopback hosts may use plain http (local development, tests).
pub(crate) fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(Host::Domain(domain)) => domain.eq_ignore_ascii_case("localhost"),
        Some(Host::Ipv4(address)) => address.is_loopback(),
        Some(Host::Ipv6(address)) => address.is_loopback(),
        None => false,
    }
}

#[cfg(test)]
#[path = "validate_tests.rs"]
mod tests;
