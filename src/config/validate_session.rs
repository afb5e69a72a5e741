//! The `[session]` rules: where sessions are stored, how the cookie that
//! points to them is named, sealed and scoped, and how long they live.

use url::{Host, Url};

use super::errors::{mask_url_password, quoted, Problems};
use super::raw::RawSession;
use super::secrets::{decode_cookie_secret, read_secret, SecretInput};
use super::types::{Secret, SessionConfig, StoreKind};
use super::validate::duration;

/// URL schemes fred (portico's Redis client) understands.
const REDIS_SCHEMES: &[&str] = &[
    "redis",
    "rediss",
    "redis-cluster",
    "rediss-cluster",
    "redis-sentinel",
    "rediss-sentinel",
    "redis+unix",
    "valkey",
    "valkeys",
    "valkey-cluster",
    "valkeys-cluster",
    "valkey-sentinel",
    "valkeys-sentinel",
    "valkey+unix",
];

pub(crate) fn session(
    problems: &mut Problems,
    raw: &RawSession,
    public_url: Option<&Url>,
) -> Option<SessionConfig> {
    let store = match raw.store.as_str() {
        "redis" => Some(StoreKind::Redis),
        "memory" => Some(StoreKind::Memory),
        other => {
            problems.report(
                "session.store",
                quoted(other),
                "is not a session store",
                "use \"redis\", or \"memory\" for a single instance in development",
            );
            None
        }
    };
    let redis_url_valid = store != Some(StoreKind::Redis) || redis_url(problems, &raw.redis_url);
    if raw.key_prefix.is_empty() {
        problems.report(
            "session.key_prefix",
            quoted(""),
            "must not be empty",
            "use a prefix such as \"portico:\" so portico's keys never collide with others",
        );
    }
    let cookie_name_valid = cookie_name(problems, &raw.cookie_name);
    let cookie_secret = cookie_secret(problems, raw);
    let cookie_secure = raw
        .cookie_secure
        .or_else(|| public_url.map(|url| url.scheme() == "https"));
    let cookie_domain = cookie_domain(problems, &raw.cookie_domain, public_url);
    let cookie_prefix_valid = match (cookie_secure, &cookie_domain) {
        (Some(secure), Some(domain)) => {
            cookie_name_prefix(problems, &raw.cookie_name, secure, domain.is_some())
        }
        _ => true,
    };
    let ttl = duration(problems, "session.ttl", &raw.ttl, true);
    let idle_timeout = duration(problems, "session.idle_timeout", &raw.idle_timeout, true);
    let refresh_before = duration(
        problems,
        "session.refresh_before",
        &raw.refresh_before,
        false,
    );
    if let (Some(ttl), Some(idle_timeout)) = (ttl, idle_timeout) {
        if idle_timeout > ttl {
            problems.report(
                "session.idle_timeout",
                quoted(&raw.idle_timeout),
                format!(
                    "is longer than session.ttl ({}), so it would never apply",
                    raw.ttl
                ),
                "make idle_timeout at most as long as ttl",
            );
        }
    }
    let lifetimes_valid = matches!((ttl, idle_timeout), (Some(ttl), Some(idle)) if idle <= ttl);
    let valid = redis_url_valid
        && !raw.key_prefix.is_empty()
        && cookie_name_valid
        && cookie_prefix_valid
        && lifetimes_valid;
    if !valid {
        return None;
    }
    Some(SessionConfig {
        store: store?,
        redis_url: Secret::new(raw.redis_url.clone()),
        key_prefix: raw.key_prefix.clone(),
        cookie_name: raw.cookie_name.clone(),
        cookie_secret: Secret::new(cookie_secret?),
        cookie_secure: cookie_secure?,
        cookie_host_prefix: crate::session::host_prefix_applies(
            public_url.is_some_and(|url| url.scheme() == "https"),
            cookie_secure?,
            cookie_domain.as_ref()?.as_deref(),
        ),
        cookie_domain: cookie_domain?,
        ttl: ttl?,
        idle_timeout: idle_timeout?,
        refresh_before: refresh_before?,
        local_cache: raw.local_cache,
    })
}

fn redis_url(problems: &mut Problems, text: &str) -> bool {
    const FIX: &str = "write e.g. \"redis://127.0.0.1:6379/0\" or \"rediss://user:password@redis.example.com:6380/0\"";
    let problem = match Url::parse(text) {
        Err(error) => format!("is not a URL ({error})"),
        Ok(url) if !REDIS_SCHEMES.contains(&url.scheme()) => format!(
            "has the scheme {}, which is not a Redis scheme ({})",
            url.scheme(),
            REDIS_SCHEMES.join(", ")
        ),
        Ok(url) if !url.scheme().ends_with("+unix") && url.host_str().is_none_or(str::is_empty) => {
            "has no host".to_owned()
        }
        Ok(url)
            if url.scheme().ends_with("-sentinel")
                && !url
                    .query_pairs()
                    .any(|(name, _)| name == "sentinelServiceName") =>
        {
            "names a Sentinel setup without ?sentinelServiceName=…".to_owned()
        }
        Ok(_) => return true,
    };
    problems.report(
        "session.redis_url",
        quoted(&mask_url_password(text)),
        problem,
        FIX,
    );
    false
}

fn cookie_name(problems: &mut Problems, name: &str) -> bool {
    let valid = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !valid {
        problems.report(
            "session.cookie_name",
            quoted(name),
            "must be a non-empty name of letters, digits, '-', '_' or '.'",
            "use e.g. \"portico_session\"",
        );
    }
    valid
}

/// A configured name with a cookie prefix must meet what browsers demand of
/// it (RFC 6265bis §4.1.3), or every cookie portico sets would be dropped.
fn cookie_name_prefix(problems: &mut Problems, name: &str, secure: bool, has_domain: bool) -> bool {
    let problem = if name.starts_with("__Host-") && has_domain {
        "starts with __Host-, which browsers refuse on a cookie with a Domain (session.cookie_domain is set)"
    } else if (name.starts_with("__Host-") || name.starts_with("__Secure-")) && !secure {
        "starts with a cookie prefix that browsers accept only on Secure cookies, and cookie_secure is false"
    } else {
        return true;
    };
    problems.report(
        "session.cookie_name",
        quoted(name),
        problem,
        "use a plain name such as \"portico_session\": portico adds __Host- itself when public_url is https and no cookie_domain is set",
    );
    false
}

fn cookie_secret(problems: &mut Problems, raw: &RawSession) -> Option<Vec<u8>> {
    match read_secret(
        problems,
        "session",
        "cookie_secret",
        &raw.cookie_secret,
        &raw.cookie_secret_file,
    ) {
        SecretInput::Found(secret) => decode_cookie_secret(problems, &secret),
        SecretInput::Broken => None,
        SecretInput::Missing => {
            problems.report(
                "session.cookie_secret",
                quoted(""),
                "is required: it seals the session cookie",
                "generate one with `openssl rand -base64 32` and set session.cookie_secret, \
                 session.cookie_secret_file or PORTICO_SESSION__COOKIE_SECRET",
            );
            None
        }
    }
}

/// `""` is no Domain attribute (host-only cookie). Otherwise the domain,
/// lower-cased and without a leading dot, which must contain the public host
/// or browsers would refuse the cookie.
fn cookie_domain(
    problems: &mut Problems,
    text: &str,
    public_url: Option<&Url>,
) -> Option<Option<String>> {
    if text.is_empty() {
        return Some(None);
    }
    const KEY: &str = "session.cookie_domain";
    let domain = text.trim().trim_start_matches('.').to_ascii_lowercase();
    let domain = match Host::parse(&domain) {
        Ok(Host::Domain(domain)) if !domain.contains(':') => domain,
        _ => {
            problems.report(
                KEY,
                quoted(text),
                "is not a domain name",
                "write a domain such as \"example.com\", or \"\" for a host-only cookie",
            );
            return None;
        }
    };
    let public_host = public_url.and_then(Url::host_str)?;
    let inside = public_host == domain || public_host.ends_with(&format!(".{domain}"));
    if !inside {
        problems.report(
            KEY,
            quoted(text),
            format!("does not contain the public host {public_host}, so browsers would refuse the cookie"),
            "use the public host or one of its parent domains, or \"\"",
        );
        return None;
    }
    Some(Some(domain))
}

#[cfg(test)]
#[allow(clippy::expect_used, clippy::panic, clippy::unwrap_used)]
mod tests {
    use super::super::errors::MASKED;
    use super::*;

    fn redis_problem(text: &str) -> Option<String> {
        let mut problems = Problems::default();
        if redis_url(&mut problems, text) {
            None
        } else {
            problems
                .into_errors()
                .pop()
                .map(|error| format!("{} {}", error.value, error.problem))
        }
    }

    #[test]
    fn redis_url_accepts_the_forms_fred_reads() {
        for text in [
            "redis://127.0.0.1:6379/0",
            "rediss://user:pw@redis.example.com:6380/1",
            "redis-cluster://a:30001?node=b:30002",
            "redis-sentinel://s:26379/0?sentinelServiceName=main",
            "redis+unix:///run/redis.sock",
        ] {
            assert_eq!(redis_problem(text), None, "{text}");
        }
    }

    #[test]
    fn bad_redis_url_is_reported_with_its_password_masked() {
        let problem = redis_problem("http://user:hunter2@redis:6379").expect("reported");
        assert!(
            problem.starts_with("\"http://user:***@redis:6379\" has the scheme http"),
            "{problem}"
        );
        assert!(!problem.contains("hunter2"));
        assert!(redis_problem("redis-sentinel://s:26379/0").is_some());
        assert!(redis_problem("not a url").is_some());
    }

    #[test]
    fn prefixed_cookie_names_must_be_possible_for_browsers() {
        let mut problems = Problems::default();
        assert!(cookie_name_prefix(
            &mut problems,
            "portico_session",
            false,
            true
        ));
        assert!(cookie_name_prefix(&mut problems, "__Host-s", true, false));
        assert!(cookie_name_prefix(&mut problems, "__Secure-s", true, true));
        assert!(!cookie_name_prefix(&mut problems, "__Host-s", true, true));
        assert!(!cookie_name_prefix(
            &mut problems,
            "__Secure-s",
            false,
            false
        ));
        let errors = problems.into_errors();
        assert_eq!(errors.len(), 2);
        assert!(errors
            .iter()
            .all(|error| error.key == "session.cookie_name"));
    }

    #[test]
    fn cookie_domain_must_contain_the_public_host() {
        let public_url = Url::parse("https://app.example.com/").ok();
        let mut problems = Problems::default();
        assert_eq!(
            cookie_domain(&mut problems, ".Example.com", public_url.as_ref()),
            Some(Some("example.com".to_owned()))
        );
        assert_eq!(
            cookie_domain(&mut problems, "other.com", public_url.as_ref()),
            None
        );
        assert_eq!(
            cookie_domain(&mut problems, "", public_url.as_ref()),
            Some(None)
        );
        let errors = problems.into_errors();
        assert_eq!(errors.len(), 1);
        assert!(errors[0].problem.contains("app.example.com"));
        assert_ne!(errors[0].value, MASKED);
    }
}

#[cfg(test)]
#[path = "validate_session_tests.rs"]
mod rule_tests;
