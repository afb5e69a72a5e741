//! Where a browser may be sent back to after login or sign-out.
//!
//! A return URL (`rd`, or the URL first asked for) is resolved against the
//! public URL with a WHATWG URL parser, the same way a browser would, and the
//! result must be http(s) on portico's own origin or on an allow-listed host.
//! The checked URL is what goes into the `Location` header, serialised
//! absolute, so the browser sees exactly what was checked: no `//host`,
//! `/\host` or encoded tricks survive to be re-interpreted.
//!
//! The path is also judged once decoded ([`path_is_plain`]), because the
//! upstream that finally serves it may decode or normalise it and redirect:
//! `/%2F%2Fevil.example` is a harmless path to a browser, but an upstream
//! that decodes it and answers with a redirect to "the same path" sends the
//! person to `//evil.example`. A path that decodes to `//`, `/\`, a control
//! character or a dot segment is refused (the person goes to `public_url`),
//! as oauth2-proxy does.

use url::Url;

#[derive(Debug, Clone)]
pub struct ReturnUrlPolicy {
    public_url: Url,
    allowed_hosts: Vec<String>,
}

impl ReturnUrlPolicy {
    /// `allowed_hosts`: lower-case host names; a leading dot admits the
    /// domain and its subdomains.
    pub fn new(public_url: &Url, allowed_hosts: &[String]) -> Self {
        ReturnUrlPolicy {
            public_url: public_url.clone(),
            allowed_hosts: allowed_hosts.to_vec(),
        }
    }

    /// Where to go when no (acceptable) return URL was given.
    pub fn default_target(&self) -> Url {
        self.public_url.clone()
    }

    /// The absolute URL to send the browser to, or None when `candidate`
    /// would leave portico's origin and the allow-list.
    pub fn check(&self, candidate: &str) -> Option<Url> {
        if candidate.is_empty()
            || candidate.len() > 4096
            || candidate
                .chars()
                .any(|character| character.is_control() || character == '\\')
        {
            return None;
        }
        if !path_is_plain(raw_path(candidate)) {
            return None;
        }
        let target = self.public_url.join(candidate).ok()?;
        if !matches!(target.scheme(), "http" | "https")
            || !target.username().is_empty()
            || target.password().is_some()
        {
            return None;
        }
        let host = target.host_str()?;
        if target.origin() == self.public_url.origin() {
            return Some(target);
        }
        let host_allowed =
            self.allowed_hosts
                .iter()
                .any(|allowed| match allowed.strip_prefix('.') {
                    Some(domain) => {
                        host == domain
                            || host
                                .strip_suffix(domain)
                                .is_some_and(|rest| rest.ends_with('.'))
                    }
                    None => host == allowed,
                });
        // An allow-listed host may not downgrade an https portico to http.
        let scheme_ok = target.scheme() == "https" || self.public_url.scheme() == "http";
        (host_allowed && scheme_ok).then_some(target)
    }
}

/// The path of `candidate` as written: before any `?` or `#`, after the
/// scheme and authority of an absolute URL.
fn raw_path(candidate: &str) -> &str {
    let end = candidate.find(['?', '#']).unwrap_or(candidate.len());
    let before = &candidate[..end];
    let scheme_end = before.find(':').filter(|&colon| {
        colon > 0
            && before[..colon].starts_with(|first: char| first.is_ascii_alphabetic())
            && before[..colon]
                .bytes()
                .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'+' | b'-' | b'.'))
    });
    let Some(colon) = scheme_end else {
        return before;
    };
    let rest = &before[colon + 1..];
    match rest.strip_prefix("//") {
        Some(authority_and_path) => {
            let slash = authority_and_path
                .find('/')
                .unwrap_or(authority_and_path.len());
            &authority_and_path[slash..]
        }
        None => rest,
    }
}

/// A path, decoded once, holds no `//`, no `\`, no control character and
/// no `.` or `..` segment.
fn path_is_plain(path: &str) -> bool {
    let decoded: Vec<u8> = percent_encoding::percent_decode_str(path).collect();
    !decoded
        .iter()
        .any(|byte| byte.is_ascii_control() || *byte == b'\\')
        && !decoded.windows(2).any(|pair| pair == b"//")
        && !decoded
            .split(|byte| *byte == b'/')
            .any(|segment| segment == b"." || segment == b"..")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(allowed: &[&str]) -> ReturnUrlPolicy {
        let public = Url::parse("https://portico.example.com/").unwrap();
        let allowed: Vec<String> = allowed.iter().map(|host| host.to_string()).collect();
        ReturnUrlPolicy::new(&public, &allowed)
    }

    /// The integration tests' payload generator, judged here without a server.
    mod redirect_corpus {
        include!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/integration/support/redirect_corpus.rs"
        ));
    }

    fn corpus() -> Vec<String> {
        redirect_corpus::payloads("portico.example.com", "www.whitelisteddomain.tld")
    }

    #[test]
    fn relative_paths_stay_on_the_public_origin() {
        let target = policy(&[]).check("/app/page?x=1#frag").unwrap();
        assert_eq!(
            target.as_str(),
            "https://portico.example.com/app/page?x=1#frag"
        );
    }

    #[test]
    fn same_origin_absolute_urls_are_kept() {
        assert!(policy(&[]).check("https://portico.example.com/a").is_some());
        assert!(policy(&[]).check("http://portico.example.com/a").is_none());
        assert!(policy(&[])
            .check("https://portico.example.com:8443/a")
            .is_none());
    }

    #[test]
    fn protocol_relative_and_backslash_tricks_are_refused() {
        for bad in [
            "//evil.com",
            "/\\evil.com",
            "\\\\evil.com",
            "/\tevil",
            "javascript:alert(1)",
        ] {
            assert!(policy(&[]).check(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn paths_that_decode_to_another_host_are_refused() {
        for bad in [
            "/%2F%2Fevil.example",
            "/%2f%2fevil.example",
            "/%5Cevil.example",
            "/%5cevil.example",
            "/%09/evil.example",
            "/.//evil.example",
            "%2F%2Fevil.example",
            "/%2E%2E/evil.example",
            "/a/%2e/b",
            "/a/../b",
            "/a//b",
            "/%00",
            "/%7F",
            "https://portico.example.com/%2F%2Fevil.example",
            "https://portico.example.com/./x",
        ] {
            assert!(policy(&[]).check(bad).is_none(), "{bad}");
        }
        // Encoded characters that decode to nothing dangerous are kept,
        // as written; so are dots inside a segment, and a query or fragment
        // holding what a path may not.
        for good in [
            "/app/a%2Fb",
            "/files/%20name.txt",
            "/v1.2/..data/.hidden",
            "/search?q=//x&r=%2F%2F",
            "/page#/..//x",
            "https://portico.example.com/a%2Fb",
        ] {
            assert!(policy(&[]).check(good).is_some(), "{good}");
        }
        assert_eq!(
            policy(&[]).check("/app/a%2Fb").unwrap().as_str(),
            "https://portico.example.com/app/a%2Fb"
        );
    }

    #[test]
    fn the_raw_path_is_found_in_relative_and_absolute_candidates() {
        assert_eq!(raw_path("/a/b?c#d"), "/a/b");
        assert_eq!(raw_path("a/b"), "a/b");
        assert_eq!(raw_path("https://host.example/p/q?x"), "/p/q");
        assert_eq!(raw_path("https://host.example"), "");
        assert_eq!(raw_path("mailto:x@y"), "x@y");
        assert_eq!(raw_path("/a:b/c"), "/a:b/c");
    }

    #[test]
    fn allow_listed_hosts_and_subdomains() {
        let policy = policy(&["app.example.org", ".example.net"]);
        assert!(policy.check("https://app.example.org/x").is_some());
        assert!(policy.check("https://a.example.net/x").is_some());
        assert!(policy.check("https://example.net/x").is_some());
        assert!(policy.check("https://badexample.net/x").is_none());
        assert!(policy.check("https://app.example.org.evil.com/x").is_none());
        assert!(policy.check("http://app.example.org/x").is_none());
        assert!(policy.check("https://user@app.example.org/x").is_none());
    }

    #[test]
    fn every_open_redirect_payload_is_refused_or_stays_home() {
        let corpus = corpus();
        assert!(corpus.len() >= 1000, "{} payloads", corpus.len());
        let policy = policy(&["www.whitelisteddomain.tld"]);
        let strict =
            ReturnUrlPolicy::new(&Url::parse("https://portico.example.com/").unwrap(), &[]);
        let home = Url::parse("https://portico.example.com/").unwrap().origin();
        let mut kept = 0;
        for payload in &corpus {
            for policy in [&policy, &strict] {
                if let Some(target) = policy.check(payload) {
                    kept += 1;
                    // No payload names the allow-listed host exactly: kept means home.
                    assert!(
                        target.origin() == home,
                        "payload {payload:?} escaped to {target}"
                    );
                    // What the browser receives parses back to the same place.
                    let reparsed = Url::parse(target.as_str()).unwrap();
                    assert_eq!(reparsed.origin(), target.origin(), "{payload:?}");
                }
            }
        }
        assert!(kept > 0, "some payloads are plain paths and should be kept");
    }
}
