//! Header rules between the client, portico and the upstream.
//!
//! Identity headers are only ever set by portico: every client-sent copy is
//! removed first, whatever its case and whether it uses `_` for `-` (some
//! servers treat `X_Forwarded_User` as `X-Forwarded-User`). portico's own
//! cookies never reach the upstream. Hop-by-hop headers stop at each hop.

use http::header::{
    HeaderName, HeaderValue, CONNECTION, COOKIE, PROXY_AUTHENTICATE, PROXY_AUTHORIZATION, TE,
    TRAILER, TRANSFER_ENCODING, UPGRADE,
};
use http::HeaderMap;

use crate::session::SessionData;

/// Headers portico sets for upstreams; removed from every client request.
pub const IDENTITY_HEADERS: &[&str] = &[
    "x-forwarded-user",
    "x-forwarded-email",
    "x-forwarded-groups",
    "x-forwarded-preferred-username",
    "x-forwarded-access-token",
    "x-portico-identity",
    "x-auth-request-user",
    "x-auth-request-email",
    "x-auth-request-groups",
    "x-auth-request-preferred-username",
    "x-auth-request-access-token",
];

/// Hop-by-hop headers (RFC 9110 §7.6.1, plus the unofficial ones).
static HOP_BY_HOP: [HeaderName; 9] = [
    CONNECTION,
    HeaderName::from_static("keep-alive"),
    PROXY_AUTHENTICATE,
    PROXY_AUTHORIZATION,
    HeaderName::from_static("proxy-connection"),
    TE,
    TRAILER,
    TRANSFER_ENCODING,
    UPGRADE,
];

const X_FORWARDED_USER: HeaderName = HeaderName::from_static("x-forwarded-user");
const X_FORWARDED_EMAIL: HeaderName = HeaderName::from_static("x-forwarded-email");
const X_FORWARDED_GROUPS: HeaderName = HeaderName::from_static("x-forwarded-groups");
const X_FORWARDED_PREFERRED_USERNAME: HeaderName =
    HeaderName::from_static("x-forwarded-preferred-username");
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// True when `name` (lower-case, as HeaderMap keeps names) is an identity
/// header, also when spelt with `_` for `-`. Checked without allocating:
/// this runs for every header of every request.
fn is_identity_header(name: &str) -> bool {
    IDENTITY_HEADERS.iter().any(|wanted| {
        wanted.len() == name.len()
            && wanted
                .bytes()
                .zip(name.bytes())
                .all(|(wanted, actual)| wanted == actual || (wanted == b'-' && actual == b'_'))
    })
}

/// Removes client-sent identity headers in every spelling.
pub fn strip_identity_headers(headers: &mut HeaderMap) {
    let doomed: Vec<HeaderName> = headers
        .keys()
        .filter(|name| is_identity_header(name.as_str()))
        .cloned()
        .collect();
    for name in doomed {
        headers.remove(&name);
    }
}

/// Whether `name` is a hop-by-hop header (named by `Connection` or not).
pub fn is_hop_by_hop(name: &HeaderName) -> bool {
    HOP_BY_HOP.contains(name)
}

/// Removes hop-by-hop headers, including any named by `Connection`.
/// One pass over the names finds which are present (most requests carry
/// none), so only those are looked up again to be removed.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let mut present = 0u16;
    for name in headers.keys() {
        if let Some(index) = HOP_BY_HOP.iter().position(|hop| hop == name) {
            present |= 1 << index;
        }
    }
    if present == 0 {
        return;
    }
    // HOP_BY_HOP[0] is Connection.
    let named: Vec<HeaderName> = if present & 1 == 1 {
        headers
            .get_all(CONNECTION)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|text| text.split(','))
            .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
            .filter(|name| !HOP_BY_HOP.contains(name))
            .collect()
    } else {
        Vec::new()
    };
    for (index, name) in HOP_BY_HOP.iter().enumerate() {
        if present & (1 << index) != 0 {
            headers.remove(name);
        }
    }
    for name in &named {
        headers.remove(name);
    }
}

/// Rewrites the Cookie header(s) without the cookies `is_ours` names.
pub fn strip_cookies(headers: &mut HeaderMap, is_ours: impl Fn(&str) -> bool) {
    let mut kept = String::new();
    let mut dropped = false;
    for pair in headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|text| text.split(';'))
        .map(str::trim)
        .filter(|pair| !pair.is_empty())
    {
        let name = pair.split_once('=').map_or(pair, |(name, _)| name).trim();
        if is_ours(name) {
            dropped = true;
            continue;
        }
        if !kept.is_empty() {
            kept.push_str("; ");
        }
        kept.push_str(pair);
    }
    if !dropped && headers.get_all(COOKIE).iter().count() <= 1 {
        return;
    }
    headers.remove(COOKIE);
    if !kept.is_empty() {
        if let Ok(value) = HeaderValue::from_str(&kept) {
            headers.insert(COOKIE, value);
        }
    }
}

/// Adds the identity headers for a signed-in user (built once per shared
/// session record).
pub fn add_identity_headers(headers: &mut HeaderMap, session: &SessionData) {
    let built = session
        .identity_headers
        .get_or_init(|| identity_headers(session));
    for (name, value) in built {
        headers.insert(name.clone(), value.clone());
    }
}

fn identity_headers(session: &SessionData) -> Vec<(HeaderName, HeaderValue)> {
    let mut built = Vec::with_capacity(4);
    let mut set = |name: HeaderName, value: Option<&str>| {
        // Text that may hold any UTF-8; values that cannot be a header
        // (control characters) are left out rather than sent mangled.
        if let Some(Ok(value)) = value.map(|value| HeaderValue::from_bytes(value.as_bytes())) {
            built.push((name, value));
        }
    };
    set(X_FORWARDED_USER, Some(&session.sub));
    set(X_FORWARDED_EMAIL, session.email.as_deref());
    if !session.roles.is_empty() {
        set(X_FORWARDED_GROUPS, Some(&session.roles.join(",")));
    }
    set(
        X_FORWARDED_PREFERRED_USERNAME,
        session.preferred_username.as_deref(),
    );
    built
}

/// Sets X-Forwarded-For/-Proto/-Host. From a trusted proxy the incoming
/// chain is kept and extended; from anyone else it is replaced.
pub fn set_forwarded(
    headers: &mut HeaderMap,
    client_ip: std::net::IpAddr,
    proto: &str,
    host: Option<&str>,
    from_trusted_proxy: bool,
) {
    let chain = if from_trusted_proxy {
        headers
            .get(&X_FORWARDED_FOR)
            .and_then(|value| value.to_str().ok())
            .map(|existing| format!("{existing}, {client_ip}"))
    } else {
        None
    };
    let chain = chain.unwrap_or_else(|| ip_text(client_ip));
    // From the String itself: no copy.
    if let Ok(value) = HeaderValue::try_from(chain) {
        headers.insert(X_FORWARDED_FOR, value);
    }
    let keep_proto = from_trusted_proxy && headers.contains_key(&X_FORWARDED_PROTO);
    if !keep_proto {
        let value = match proto {
            "https" => Ok(HeaderValue::from_static("https")),
            "http" => Ok(HeaderValue::from_static("http")),
            other => HeaderValue::from_str(other),
        };
        if let Ok(value) = value {
            headers.insert(X_FORWARDED_PROTO, value);
        }
    }
    let keep_host = from_trusted_proxy && headers.contains_key(&X_FORWARDED_HOST);
    if !keep_host {
        match host.and_then(|host| HeaderValue::from_str(host).ok()) {
            Some(value) => {
                headers.insert(X_FORWARDED_HOST, value);
            }
            None => {
                headers.remove(&X_FORWARDED_HOST);
            }
        }
    }
}

/// An address as text; IPv4 (the usual case) without the formatting
/// machinery, which was a visible part of every request's cost.
fn ip_text(ip: std::net::IpAddr) -> String {
    match ip {
        std::net::IpAddr::V4(v4) => {
            let mut text = String::with_capacity(15);
            for (index, octet) in v4.octets().into_iter().enumerate() {
                if index > 0 {
                    text.push('.');
                }
                if octet >= 100 {
                    text.push(char::from(b'0' + octet / 100));
                }
                if octet >= 10 {
                    text.push(char::from(b'0' + octet / 10 % 10));
                }
                text.push(char::from(b'0' + octet % 10));
            }
            text
        }
        std::net::IpAddr::V6(v6) => v6.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_written_as_display_writes_them() {
        for text in [
            "0.0.0.0",
            "127.0.0.1",
            "10.20.100.255",
            "1.2.3.4",
            "::1",
            "fe80::1",
        ] {
            let ip: std::net::IpAddr = text.parse().unwrap();
            assert_eq!(ip_text(ip), ip.to_string());
        }
    }

    #[test]
    fn identity_headers_are_stripped_in_every_spelling() {
        let mut headers = HeaderMap::new();
        headers.insert("X-Forwarded-User", HeaderValue::from_static("mallory"));
        headers.insert("x_forwarded_email", HeaderValue::from_static("m@evil"));
        headers.insert("X_FORWARDED_GROUPS", HeaderValue::from_static("admin"));
        headers.insert("x-portico-identity", HeaderValue::from_static("forged"));
        headers.insert("x-other", HeaderValue::from_static("kept"));
        strip_identity_headers(&mut headers);
        assert_eq!(headers.len(), 1);
        assert!(headers.contains_key("x-other"));
    }

    #[test]
    fn hop_by_hop_and_connection_named_headers_are_removed() {
        let mut headers = HeaderMap::new();
        headers.insert(
            CONNECTION,
            HeaderValue::from_static("keep-alive, x-secret-hop"),
        );
        headers.insert("x-secret-hop", HeaderValue::from_static("1"));
        headers.insert("te", HeaderValue::from_static("trailers"));
        headers.insert("accept", HeaderValue::from_static("*/*"));
        strip_hop_by_hop(&mut headers);
        assert_eq!(headers.len(), 1);
        assert!(headers.contains_key("accept"));

        let mut only_upgrade = HeaderMap::new();
        only_upgrade.insert("upgrade", HeaderValue::from_static("websocket"));
        only_upgrade.insert("proxy-authorization", HeaderValue::from_static("Basic x"));
        only_upgrade.insert("x-kept", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut only_upgrade);
        assert_eq!(only_upgrade.keys().collect::<Vec<_>>(), ["x-kept"]);

        let mut named_only = HeaderMap::new();
        named_only.insert(CONNECTION, HeaderValue::from_static("X-Private"));
        named_only.insert("x-private", HeaderValue::from_static("1"));
        named_only.insert("x-public", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut named_only);
        assert_eq!(named_only.keys().collect::<Vec<_>>(), ["x-public"]);

        let mut none = HeaderMap::new();
        none.insert("accept", HeaderValue::from_static("*/*"));
        none.insert("cookie", HeaderValue::from_static("a=1"));
        strip_hop_by_hop(&mut none);
        assert_eq!(none.len(), 2);
    }

    #[test]
    fn only_portico_cookies_are_removed() {
        let mut headers = HeaderMap::new();
        headers.append(COOKIE, HeaderValue::from_static("a=1; portico_session=xyz"));
        headers.append(
            COOKIE,
            HeaderValue::from_static("portico_session_login_abc=q; b=2"),
        );
        strip_cookies(&mut headers, |name| name.starts_with("portico_session"));
        assert_eq!(headers.get(COOKIE).unwrap(), "a=1; b=2");
        let mut only_ours = HeaderMap::new();
        only_ours.insert(COOKIE, HeaderValue::from_static("portico_session=1"));
        strip_cookies(&mut only_ours, |name| name == "portico_session");
        assert!(only_ours.get(COOKIE).is_none());
    }

    #[test]
    fn forwarded_chain_is_only_extended_for_trusted_proxies() {
        let ip: std::net::IpAddr = "10.0.0.9".parse().unwrap();
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", HeaderValue::from_static("1.2.3.4"));
        set_forwarded(&mut headers, ip, "https", Some("app.example"), false);
        assert_eq!(headers.get("x-forwarded-for").unwrap(), "10.0.0.9");
        let mut trusted = HeaderMap::new();
        trusted.insert("x-forwarded-for", HeaderValue::from_static("1.2.3.4"));
        set_forwarded(&mut trusted, ip, "https", Some("app.example"), true);
        assert_eq!(trusted.get("x-forwarded-for").unwrap(), "1.2.3.4, 10.0.0.9");
        assert_eq!(trusted.get("x-forwarded-proto").unwrap(), "https");
        assert_eq!(trusted.get("x-forwarded-host").unwrap(), "app.example");
    }

    #[test]
    fn unicode_identity_values_are_passed_as_bytes_and_control_characters_dropped() {
        let mut session = crate::session::SessionData {
            sub: "bad\r\nInjected: 1".into(),
            email: Some("jose@example.com".into()),
            name: None,
            preferred_username: Some("José".into()),
            roles: vec!["admin".into(), "ops".into()],
            groups: vec![],
            permissions: vec![],
            amr: vec![],
            email_verified: None,
            claims: Default::default(),
            provider_sid: None,
            created_at: 0,
            last_active_at: 0,
            expires_at: 0,
            access_token_expires_at: None,
            sealed_tokens: String::new(),
            identity_headers: Default::default(),
        };
        let mut headers = HeaderMap::new();
        add_identity_headers(&mut headers, &session);
        assert!(headers.get("x-forwarded-user").is_none());
        assert_eq!(headers.get("x-forwarded-groups").unwrap(), "admin,ops");
        assert_eq!(
            headers
                .get("x-forwarded-preferred-username")
                .unwrap()
                .as_bytes(),
            "José".as_bytes()
        );
        // Built once per record: a copy that changes builds its own, and a
        // change in place clears what was built (as a refresh does).
        let mut copy = session.clone();
        copy.sub = "alice".into();
        add_identity_headers(&mut headers, &copy);
        assert_eq!(headers.get("x-forwarded-user").unwrap(), "alice");
        session.sub = "bob".into();
        session.identity_headers.clear();
        let mut fresh = HeaderMap::new();
        add_identity_headers(&mut fresh, &session);
        assert_eq!(fresh.get("x-forwarded-user").unwrap(), "bob");
        assert_eq!(fresh.get("x-forwarded-groups").unwrap(), "admin,ops");
    }
}
