//! Answers for the proxies in front of portico that ask it whether a request
//! may pass: forward-auth (`/oauth2/auth`, nginx `auth_request`, Caddy
//! `forward_auth`, Traefik ForwardAuth, ingress-nginx, HAProxy) and Envoy's
//! external authorization, over HTTP (`/oauth2/ext_authz/…`) and gRPC
//! (`envoy.service.auth.v3.Authorization/Check`).
//!
//! All of them judge the original request the same way ([`judge`]): the
//! same canonical path and route as the proxy would use, the same caller
//! (session cookie or bearer token) and the same rules. Only the way the
//! answer is spelt differs per protocol.

pub mod ext_authz_grpc;
pub mod ext_authz_http;
pub mod proto;

use http::HeaderMap;
use url::Url;

use crate::authz::{decide, Decision};
use crate::error::GatewayError;
use crate::proxy::{authenticate, path_error, PathError};
use crate::request_id::RequestId;
use crate::AppState;

/// What the proxy in front is to do with the original request.
#[derive(Debug)]
pub enum Verdict {
    /// Let it through; `identity` (name suffix, value) describes the caller
    /// (empty for a public route).
    Allow {
        identity: Vec<(&'static str, String)>,
    },
    /// Nobody is signed in: a navigation may be sent to the sign-in.
    NotSignedIn,
    /// Refused: rules failed (403), no route covers it (403), the path or
    /// token is bad, or portico cannot judge now.
    Refused(GatewayError),
}

/// Judges a request for `path` (as sent, not yet canonical) on `host`,
/// carrying `headers` (its cookie or Authorization), as the proxy would:
/// no route is a refusal, never an allow.
pub async fn judge(
    app: &AppState,
    headers: &HeaderMap,
    host: Option<&str>,
    path: &str,
    request_id: &RequestId,
) -> Verdict {
    let route = match app.routes.resolve(host, path) {
        Ok((_, route)) => route,
        Err(PathError::NoRoute) => {
            tracing::info!("authorization denied: no route covers the original URI");
            return Verdict::Refused(GatewayError::NoRouteToJudge);
        }
        Err(error) => return Verdict::Refused(path_error(error)),
    };
    if route.public {
        return Verdict::Allow {
            identity: Vec::new(),
        };
    }
    let principal = match authenticate(app, headers, Some(&route), request_id).await {
        Ok(Some(principal)) => principal,
        Ok(None) => return Verdict::NotSignedIn,
        Err(error) => return Verdict::Refused(error),
    };
    if decide(&route, principal.data()) != Decision::Allow {
        return Verdict::Refused(GatewayError::Forbidden("route rules".into()));
    }
    let data = principal.data();
    let mut identity = vec![("user", data.sub.clone())];
    if let Some(email) = &data.email {
        identity.push(("email", email.clone()));
    }
    if !data.roles.is_empty() {
        identity.push(("groups", crate::identity::header_list(&data.roles)));
    }
    if let Some(name) = &data.preferred_username {
        identity.push(("preferred-username", name.clone()));
    }
    if route.pass_access_token {
        if let Some(token) = principal.access_token(app) {
            identity.push(("access-token", token));
        }
    }
    // Values that cannot be a header (control characters) are left out
    // rather than sent mangled.
    identity.retain(|(_, value)| http::HeaderValue::from_bytes(value.as_bytes()).is_ok());
    Verdict::Allow { identity }
}

/// Whether the request being judged is a page navigation that should be
/// sent to the sign-in rather than refused. Browsers say so with
/// `Sec-Fetch-Mode: navigate` (Fetch Metadata,
/// <https://www.w3.org/TR/fetch-metadata/#sec-fetch-mode-header>); any other
/// mode (`cors`, `no-cors`, `same-origin`, `websocket`) is a program or a
/// subresource. A client that sends no Fetch Metadata is a navigation only
/// when it asks for HTML (`Accept: text/html`) and is not an XHR.
pub fn is_page_navigation(headers: &HeaderMap) -> bool {
    let text = |name: &str| {
        headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .map(str::trim)
    };
    if let Some(mode) = text("sec-fetch-mode") {
        return mode.eq_ignore_ascii_case("navigate");
    }
    if headers.contains_key("x-requested-with") {
        return false;
    }
    headers
        .get_all(http::header::ACCEPT)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|item| {
            item.split(';')
                .next()
                .is_some_and(|media| media.trim().eq_ignore_ascii_case("text/html"))
        })
}

/// The URL the browser asked for, rebuilt from what the proxy says about it
/// (scheme, host, path and query); scheme and host default to the public
/// URL's. None when it is not a URL.
pub fn original_url(
    public_url: &Url,
    proto: Option<&str>,
    host: Option<&str>,
    path_and_query: &str,
) -> Option<String> {
    let scheme = match proto.map(|proto| proto.split(',').next().unwrap_or("").trim()) {
        Some(proto) if proto.eq_ignore_ascii_case("https") => "https",
        Some(proto) if proto.eq_ignore_ascii_case("http") => "http",
        Some(_) => return None,
        None => public_url.scheme(),
    };
    let authority = match host.map(|host| host.split(',').next().unwrap_or("").trim()) {
        Some(host)
            if !host.is_empty()
                && !host.contains(|character: char| {
                    matches!(character, '/' | '?' | '#' | '@' | '\\') || character.is_whitespace()
                }) =>
        {
            host.to_string()
        }
        Some(_) => return None,
        None => {
            let host = public_url.host_str()?;
            match public_url.port() {
                Some(port) => format!("{host}:{port}"),
                None => host.to_string(),
            }
        }
    };
    if !path_and_query.starts_with('/') || path_and_query.starts_with("//") {
        return None;
    }
    let url = Url::parse(&format!("{scheme}://{authority}{path_and_query}")).ok()?;
    Some(url.into())
}

/// Where a navigation without a session is sent: portico's own sign-in
/// start on the public URL, returning to `original` when the return-URL
/// rule allows it (else to the default target, as `/oauth2/start` does).
/// The start runs on portico's origin so the login cookie lands where the
/// callback will read it, whatever host the app is on.
pub fn sign_in_location(app: &AppState, original: Option<&str>) -> String {
    let mut start = app.config.server.public_url.clone();
    start.set_path("/oauth2/start");
    start.set_query(None);
    start.set_fragment(None);
    if let Some(target) = original.and_then(|url| app.return_policy.check(url)) {
        start.query_pairs_mut().append_pair("rd", target.as_str());
    }
    start.into()
}

/// The identity headers an upstream behind Envoy receives: the names
/// portico itself sends upstreams (`X-Forwarded-User` …).
pub fn upstream_identity(identity: &[(&'static str, String)]) -> Vec<(String, String)> {
    identity
        .iter()
        .map(|(suffix, value)| (format!("x-forwarded-{suffix}"), value.clone()))
        .collect()
}

/// The request headers Envoy is to remove before the request goes
/// upstream: every identity header portico does not set in this answer
/// (so none the client sent survives), and every other spelling of one the
/// client sent (any case, `_` for `-`), lower-case and without repeats.
pub fn identity_headers_to_remove<'a>(
    client_sent: impl Iterator<Item = &'a str>,
    set: &[(String, String)],
) -> Vec<String> {
    let is_set = |name: &str| set.iter().any(|(set_name, _)| set_name == name);
    let mut remove: Vec<String> = crate::proxy::IDENTITY_HEADERS
        .iter()
        .filter(|name| !is_set(name))
        .map(|name| name.to_string())
        .collect();
    for name in client_sent {
        let name = name.to_ascii_lowercase();
        if crate::proxy::is_identity_header(&name) && !is_set(&name) && !remove.contains(&name) {
            remove.push(name);
        }
    }
    remove
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn fetch_metadata_decides_what_is_a_navigation() {
        assert!(is_page_navigation(&headers(&[(
            "sec-fetch-mode",
            "navigate"
        )])));
        assert!(is_page_navigation(&headers(&[
            ("sec-fetch-mode", "navigate"),
            ("accept", "application/json")
        ])));
        for mode in ["cors", "no-cors", "same-origin", "websocket"] {
            let mut map = headers(&[("accept", "text/html")]);
            map.insert("sec-fetch-mode", HeaderValue::from_static(mode));
            assert!(!is_page_navigation(&map), "{mode}");
        }
    }

    #[test]
    fn without_fetch_metadata_only_a_request_for_html_is_a_navigation() {
        assert!(is_page_navigation(&headers(&[(
            "accept",
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
        )])));
        assert!(is_page_navigation(&headers(&[(
            "accept",
            "Text/HTML; q=1"
        )])));
        assert!(!is_page_navigation(&HeaderMap::new()));
        assert!(!is_page_navigation(&headers(&[("accept", "*/*")])));
        assert!(!is_page_navigation(&headers(&[(
            "accept",
            "application/json"
        )])));
        assert!(!is_page_navigation(&headers(&[("accept", "text/htmlx")])));
        assert!(!is_page_navigation(&headers(&[
            ("accept", "text/html"),
            ("x-requested-with", "XMLHttpRequest")
        ])));
    }

    #[test]
    fn the_original_url_is_rebuilt_from_the_proxy_s_headers() {
        let public = Url::parse("https://portico.example:8443/").unwrap();
        assert_eq!(
            original_url(&public, Some("http"), Some("app.example"), "/a/b?c=d").as_deref(),
            Some("http://app.example/a/b?c=d")
        );
        assert_eq!(
            original_url(&public, None, None, "/deep?x=1").as_deref(),
            Some("https://portico.example:8443/deep?x=1")
        );
        assert_eq!(
            original_url(&public, Some("https, http"), Some("a.example, b"), "/").as_deref(),
            Some("https://a.example/")
        );
        assert_eq!(original_url(&public, Some("ftp"), None, "/"), None);
        assert_eq!(original_url(&public, None, Some(""), "/"), None);
        assert_eq!(original_url(&public, None, None, "//evil.example/"), None);
        assert_eq!(original_url(&public, None, None, "evil"), None);
        for host in [
            "evil.example/x",
            "user@evil.example",
            "a b",
            "a\\b",
            "a?b",
            "a#b",
        ] {
            assert_eq!(original_url(&public, None, Some(host), "/"), None, "{host}");
        }
    }
}

#[cfg(test)]
mod identity_tests {
    use super::*;

    #[test]
    fn envoy_removes_every_identity_header_portico_does_not_set() {
        let set = upstream_identity(&[("user", "alice".into()), ("email", "a@x".into())]);
        assert_eq!(
            set[0],
            ("x-forwarded-user".to_string(), "alice".to_string())
        );
        let remove = identity_headers_to_remove(
            [
                "X_Forwarded_User",
                "x-forwarded-groups",
                "x-other",
                "x-forwarded-user",
            ]
            .into_iter(),
            &set,
        );
        assert!(remove.contains(&"x_forwarded_user".to_string()));
        assert!(remove.contains(&"x-forwarded-groups".to_string()));
        assert!(remove.contains(&"x-forwarded-access-token".to_string()));
        assert!(remove.contains(&"x-portico-identity".to_string()));
        assert!(!remove.contains(&"x-forwarded-user".to_string()));
        assert!(!remove.contains(&"x-forwarded-email".to_string()));
        assert!(!remove.contains(&"x-other".to_string()));
        let unique: std::collections::HashSet<_> = remove.iter().collect();
        assert_eq!(unique.len(), remove.len());
    }
}
