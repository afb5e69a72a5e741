//! Header rules between the client, portico and the upstream.
//!
//! Identity headers are only ever set by portico: every client-sent copy is
//! removed first, whatever its case and whether it uses `_` for `-` (some
//! servers treat `X_Forwarded_User` as `X-Forwarded-User`). portico's own
//! cookies never reach the upstream. Hop-by-hop headers stop at each hop.
//!
//! Only a trusted proxy (`[server] trusted_proxies`) may say where a request
//! came from or where it was meant to go: from anyone else, `Forwarded`,
//! `X-Real-IP`, every `X-Forwarded-*` portico does not set itself,
//! `X-Original-URL`/`X-Rewrite-URL` (which IIS, Symfony and Laravel route
//! by) and the like are removed, and X-Forwarded-For/-Proto/-Host replaced.
//! From a trusted proxy they pass, and a `Forwarded` it sent is extended by
//! this hop as X-Forwarded-For is (RFC 7239 §4).

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
const FORWARDED: HeaderName = HeaderName::from_static("forwarded");

/// Headers that say where a request came from or was meant to go, which
/// frameworks believe (client address, scheme, host, path): only a trusted
/// proxy may send them. Besides these, every `x-forwarded-*`.
const ROUTING_HEADERS: &[&str] = &[
    "forwarded",
    "x-real-ip",
    "x-client-ip",
    "true-client-ip",
    "x-cluster-client-ip",
    "cf-connecting-ip",
    "x-original-url",
    "x-original-uri",
    "x-rewrite-url",
    "x-original-host",
    "x-host",
    "x-original-forwarded-for",
];

/// Whether `name` and `wanted` (lower-case) are the same header, also when
/// `name` spells `-` as `_`.
fn same_name(wanted: &str, name: &str) -> bool {
    wanted.len() == name.len()
        && wanted
            .bytes()
            .zip(name.bytes())
            .all(|(wanted, actual)| wanted == actual || (wanted == b'-' && actual == b'_'))
}

/// True when `name` (lower-case) is a header only a trusted proxy may send
/// ([`ROUTING_HEADERS`] and every `x-forwarded-*`), in either spelling.
/// Checked without allocating, for every header of every request.
fn is_routing_header(name: &str) -> bool {
    match name.as_bytes().first() {
        Some(b'x' | b'f' | b't' | b'c') => {}
        _ => return false,
    }
    const PREFIX: &str = "x-forwarded-";
    (name.len() > PREFIX.len()
        && name.is_char_boundary(PREFIX.len())
        && same_name(PREFIX, &name[..PREFIX.len()]))
        || ROUTING_HEADERS.iter().any(|wanted| same_name(wanted, name))
}

/// True when `name` (lower-case, as HeaderMap keeps names) is an identity
/// header, also when spelt with `_` for `-`. Checked without allocating:
/// this runs for every header of every request.
pub fn is_identity_header(name: &str) -> bool {
    IDENTITY_HEADERS
        .iter()
        .any(|wanted| same_name(wanted, name))
}

/// Framing and hop-by-hop headers whose `_` spellings never go upstream.
const UNDERSCORED_FRAMING: &[&str] = &[
    "content-length",
    "transfer-encoding",
    "keep-alive",
    "proxy-connection",
    "proxy-authorization",
];

/// `Content_Length`, `Transfer_Encoding` and the like: an upstream that
/// reads `_` as `-` (as CGI-style servers do) would frame the request
/// differently from portico. nginx drops them (`underscores_in_headers
/// off`); so does portico, in requests and in upstreams' answers alike. The
/// `-` spellings are judged elsewhere.
pub(crate) fn is_underscored_framing(name: &str) -> bool {
    name.as_bytes().contains(&b'_')
        && UNDERSCORED_FRAMING
            .iter()
            .any(|wanted| same_name(wanted, name))
}

/// Whether `name` is a hop-by-hop header (named by `Connection` or not).
pub fn is_hop_by_hop(name: &HeaderName) -> bool {
    HOP_BY_HOP.contains(name)
}

/// The tokens of `headers`' `Connection` lines, trimmed (any letter case).
pub fn connection_tokens(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|text| text.split(','))
        .map(str::trim)
}

/// `Cookie`, as a place a reference can point to.
static COOKIE_NAME: HeaderName = COOKIE;

/// What becomes of the client's Cookie header.
enum CookieRewrite {
    /// Sent as it came (none of portico's cookies, at most one line).
    Unchanged,
    /// Replaced by this one line, or by none.
    Replaced(Option<HeaderValue>),
}

/// The request's headers as they go upstream: the client's, less what stops
/// at portico, plus what portico sets. Nothing is edited in the client's
/// map: the head is written from the client's headers that pass and then
/// portico's own. (Editing the map grew it on every request, and hashed
/// every added and removed name.)
///
/// Stopped at portico: hop-by-hop headers and the ones `Connection` names,
/// identity headers in every spelling (`_` for `-` too: some servers read
/// `X_Forwarded_User` as `X-Forwarded-User`), portico's own cookies, and
/// any header portico sets or removes itself.
pub struct UpstreamHeaders<'a> {
    client: &'a HeaderMap,
    /// Names the client's `Connection` header lists (rarely any).
    connection_named: Vec<HeaderName>,
    cookie: CookieRewrite,
    /// Set (`Some`) or removed (`None`) by portico, replacing the client's.
    set: Vec<(HeaderName, Option<HeaderValue>)>,
    /// The signed-in user's identity headers (built once per session record).
    identity: &'a [(HeaderName, HeaderValue)],
    /// A websocket handshake: asks the upstream to switch protocols.
    websocket: bool,
    /// The client is a trusted proxy: its routing headers pass.
    from_trusted_proxy: bool,
}

impl<'a> UpstreamHeaders<'a> {
    /// The client's `headers`, with the cookies `is_ours` names taken out.
    pub fn new(client: &'a HeaderMap, is_ours: impl Fn(&str) -> bool) -> Self {
        let connection_named = if client.contains_key(CONNECTION) {
            connection_tokens(client)
                .filter_map(|name| HeaderName::from_bytes(name.as_bytes()).ok())
                .filter(|name| !HOP_BY_HOP.contains(name))
                .collect()
        } else {
            Vec::new()
        };
        UpstreamHeaders {
            client,
            connection_named,
            cookie: cookie_rewrite(client, is_ours),
            set: Vec::with_capacity(8),
            identity: &[],
            websocket: false,
            from_trusted_proxy: false,
        }
    }

    /// Makes the request a websocket handshake upstream (`Connection:
    /// upgrade`, `Upgrade: websocket`; the client's, like every hop-by-hop
    /// header, stop here).
    pub fn websocket(&mut self) {
        self.set(CONNECTION, HeaderValue::from_static("upgrade"));
        self.set(UPGRADE, HeaderValue::from_static("websocket"));
        self.websocket = true;
    }

    /// Whether the request asks the upstream to switch to a websocket.
    pub fn is_websocket(&self) -> bool {
        self.websocket
    }

    /// Sends `value` as `name`, in place of any the client sent.
    pub fn set(&mut self, name: HeaderName, value: HeaderValue) {
        self.set.push((name, Some(value)));
    }

    /// Sends no `name`, whatever the client sent.
    pub fn remove(&mut self, name: HeaderName) {
        self.set.push((name, None));
    }

    /// Adds the identity headers for a signed-in user (built once per
    /// shared session record).
    pub fn identity(&mut self, session: &'a SessionData) {
        self.identity = session
            .identity_headers
            .get_or_init(|| identity_headers(session));
    }

    /// Sets X-Forwarded-For/-Proto/-Host. From a trusted proxy the incoming
    /// chain is kept and extended (and an incoming proto and host kept), as
    /// is a `Forwarded` it sent; from anyone else they are replaced and the
    /// other routing headers removed.
    pub fn forwarded(
        &mut self,
        client_ip: std::net::IpAddr,
        proto: &str,
        host: Option<&str>,
        from_trusted_proxy: bool,
    ) {
        self.from_trusted_proxy = from_trusted_proxy;
        if from_trusted_proxy && !self.connection_named.contains(&FORWARDED) {
            if let Some(value) = extended_forwarded(self.client, client_ip) {
                self.set(FORWARDED, value);
            }
        }
        let chain = if from_trusted_proxy {
            self.client_value(&X_FORWARDED_FOR)
                .and_then(|value| value.to_str().ok())
                .map(|existing| format!("{existing}, {client_ip}"))
        } else {
            None
        };
        let chain = chain.unwrap_or_else(|| ip_text(client_ip));
        // From the String itself: no copy.
        match HeaderValue::try_from(chain) {
            Ok(value) => self.set(X_FORWARDED_FOR, value),
            Err(_) => self.remove(X_FORWARDED_FOR),
        }
        let keep_proto = from_trusted_proxy && self.client_value(&X_FORWARDED_PROTO).is_some();
        if !keep_proto {
            let value = match proto {
                "https" => Ok(HeaderValue::from_static("https")),
                "http" => Ok(HeaderValue::from_static("http")),
                other => HeaderValue::from_str(other),
            };
            match value {
                Ok(value) => self.set(X_FORWARDED_PROTO, value),
                Err(_) => self.remove(X_FORWARDED_PROTO),
            }
        }
        let keep_host = from_trusted_proxy && self.client_value(&X_FORWARDED_HOST).is_some();
        if !keep_host {
            match host.and_then(|host| HeaderValue::from_str(host).ok()) {
                Some(value) => self.set(X_FORWARDED_HOST, value),
                None => self.remove(X_FORWARDED_HOST),
            }
        }
    }

    /// Whether the client takes trailers (`TE: trailers`, as gRPC clients
    /// send): an HTTP/2 upstream is told so, since its trailers are passed on.
    pub fn client_takes_trailers(&self) -> bool {
        self.client
            .get_all(TE)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|text| text.split(','))
            .any(|coding| {
                let name = coding.split(';').next().unwrap_or_default();
                name.trim().eq_ignore_ascii_case("trailers")
            })
    }

    /// Whether a Content-Length goes upstream (the client's, if it sent one).
    pub fn has_content_length(&self) -> bool {
        self.client_value(&http::header::CONTENT_LENGTH).is_some()
    }

    /// The client's first `name`, unless `Connection` named it.
    fn client_value(&self, name: &HeaderName) -> Option<&'a HeaderValue> {
        if self.connection_named.contains(name) {
            return None;
        }
        self.client.get(name)
    }

    /// Whether the client's `name` goes upstream as it came.
    fn passes(&self, name: &HeaderName) -> bool {
        if HOP_BY_HOP.contains(name) || self.connection_named.contains(name) {
            return false;
        }
        if name == COOKIE {
            return matches!(self.cookie, CookieRewrite::Unchanged);
        }
        let name_text = name.as_str();
        !is_identity_header(name_text)
            && !is_underscored_framing(name_text)
            && (self.from_trusted_proxy || !is_routing_header(name_text))
            && !self.set.iter().any(|(set, _)| set == name)
    }

    /// Every header that goes upstream, in the order written.
    pub fn iter(&self) -> impl Iterator<Item = (&HeaderName, &HeaderValue)> + '_ {
        let cookie = match &self.cookie {
            CookieRewrite::Replaced(Some(value)) => Some((&COOKIE_NAME, value)),
            _ => None,
        };
        self.client
            .iter()
            .filter(|(name, _)| self.passes(name))
            .chain(cookie)
            .chain(
                self.set
                    .iter()
                    .filter_map(|(name, value)| value.as_ref().map(|value| (name, value))),
            )
            .chain(self.identity.iter().map(|(name, value)| (name, value)))
    }

    /// The value of `name` that goes upstream, if any (the first).
    #[cfg(test)]
    pub fn get(&self, name: &str) -> Option<&HeaderValue> {
        self.iter()
            .find(|(candidate, _)| candidate.as_str() == name)
            .map(|(_, value)| value)
    }
}

/// The client's Cookie lines without the cookies `is_ours` names: unchanged
/// when none is portico's and there is one line at most; otherwise joined
/// into one line of what is left (or none).
fn cookie_rewrite(client: &HeaderMap, is_ours: impl Fn(&str) -> bool) -> CookieRewrite {
    let mut lines = 0;
    let mut kept = String::new();
    let mut dropped = false;
    for text in client
        .get_all(COOKIE)
        .iter()
        .inspect(|_| lines += 1)
        .filter_map(|value| value.to_str().ok())
    {
        for pair in text
            .split(';')
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
    }
    if !dropped && lines <= 1 {
        return CookieRewrite::Unchanged;
    }
    CookieRewrite::Replaced(
        (!kept.is_empty())
            .then(|| HeaderValue::try_from(kept).ok())
            .flatten(),
    )
}

/// A trusted proxy's `Forwarded` lines, joined, with this hop's element
/// (`for=` the proxy's address, RFC 7239 §4; an IPv6 address quoted and
/// bracketed, §6) appended; `None` when it sent none.
fn extended_forwarded(client: &HeaderMap, peer: std::net::IpAddr) -> Option<HeaderValue> {
    let mut lines = client.get_all(FORWARDED).iter().peekable();
    lines.peek()?;
    let mut text = String::with_capacity(64);
    for line in lines {
        let Ok(line) = line.to_str() else { continue };
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        text.push_str(line);
        text.push_str(", ");
    }
    match peer {
        std::net::IpAddr::V4(_) => {
            text.push_str("for=");
            text.push_str(&ip_text(peer));
        }
        std::net::IpAddr::V6(v6) => {
            text.push_str("for=\"[");
            text.push_str(&v6.to_string());
            text.push_str("]\"");
        }
    }
    HeaderValue::try_from(text).ok()
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
        set(
            X_FORWARDED_GROUPS,
            Some(&crate::identity::header_list(&session.roles)),
        );
    }
    set(
        X_FORWARDED_PREFERRED_USERNAME,
        session.preferred_username.as_deref(),
    );
    built
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

    fn names(headers: &UpstreamHeaders<'_>) -> Vec<String> {
        headers.iter().map(|(name, _)| name.to_string()).collect()
    }

    #[test]
    fn identity_headers_are_stripped_in_every_spelling() {
        let mut client = HeaderMap::new();
        client.insert("X-Forwarded-User", HeaderValue::from_static("mallory"));
        client.insert("x_forwarded_email", HeaderValue::from_static("m@evil"));
        client.insert("X_FORWARDED_GROUPS", HeaderValue::from_static("admin"));
        client.insert("x-portico-identity", HeaderValue::from_static("forged"));
        client.insert("x-other", HeaderValue::from_static("kept"));
        let headers = UpstreamHeaders::new(&client, |_| false);
        assert_eq!(names(&headers), ["x-other"]);
    }

    #[test]
    fn framing_headers_spelt_with_underscores_are_dropped() {
        let mut client = HeaderMap::new();
        client.insert("transfer_encoding", HeaderValue::from_static("chunked"));
        client.insert("content_length", HeaderValue::from_static("5"));
        client.insert("Keep_Alive", HeaderValue::from_static("1"));
        client.insert("x_custom_header", HeaderValue::from_static("kept"));
        client.insert("content-type", HeaderValue::from_static("text/plain"));
        let headers = UpstreamHeaders::new(&client, |_| false);
        assert_eq!(names(&headers), ["x_custom_header", "content-type"]);
    }

    #[test]
    fn hop_by_hop_and_connection_named_headers_are_removed() {
        let mut client = HeaderMap::new();
        client.insert(
            CONNECTION,
            HeaderValue::from_static("keep-alive, x-secret-hop"),
        );
        client.insert("x-secret-hop", HeaderValue::from_static("1"));
        client.insert("te", HeaderValue::from_static("trailers"));
        client.insert("accept", HeaderValue::from_static("*/*"));
        assert_eq!(names(&UpstreamHeaders::new(&client, |_| false)), ["accept"]);

        let mut only_upgrade = HeaderMap::new();
        only_upgrade.insert("upgrade", HeaderValue::from_static("websocket"));
        only_upgrade.insert("proxy-authorization", HeaderValue::from_static("Basic x"));
        only_upgrade.insert("x-kept", HeaderValue::from_static("1"));
        assert_eq!(
            names(&UpstreamHeaders::new(&only_upgrade, |_| false)),
            ["x-kept"]
        );

        let mut named_only = HeaderMap::new();
        named_only.insert(CONNECTION, HeaderValue::from_static("X-Private"));
        named_only.insert("x-private", HeaderValue::from_static("1"));
        named_only.insert("x-public", HeaderValue::from_static("1"));
        assert_eq!(
            names(&UpstreamHeaders::new(&named_only, |_| false)),
            ["x-public"]
        );

        let mut none = HeaderMap::new();
        none.insert("accept", HeaderValue::from_static("*/*"));
        none.insert("cookie", HeaderValue::from_static("a=1"));
        let passed = UpstreamHeaders::new(&none, |_| false);
        assert_eq!(names(&passed), ["accept", "cookie"]);
        assert_eq!(passed.get("cookie").unwrap(), "a=1");
    }

    #[test]
    fn only_portico_cookies_are_removed() {
        let mut client = HeaderMap::new();
        client.append(COOKIE, HeaderValue::from_static("a=1; portico_session=xyz"));
        client.append(
            COOKIE,
            HeaderValue::from_static("portico_session_login_abc=q; b=2"),
        );
        let headers = UpstreamHeaders::new(&client, |name| name.starts_with("portico_session"));
        assert_eq!(names(&headers), ["cookie"]);
        assert_eq!(headers.get("cookie").unwrap(), "a=1; b=2");
        let mut only_ours = HeaderMap::new();
        only_ours.insert(COOKIE, HeaderValue::from_static("portico_session=1"));
        let headers = UpstreamHeaders::new(&only_ours, |name| name == "portico_session");
        assert!(headers.get("cookie").is_none());
        // Two lines of the client's own cookies go as one.
        let mut two_lines = HeaderMap::new();
        two_lines.append(COOKIE, HeaderValue::from_static("a=1"));
        two_lines.append(COOKIE, HeaderValue::from_static("b=2"));
        let headers = UpstreamHeaders::new(&two_lines, |_| false);
        assert_eq!(names(&headers), ["cookie"]);
        assert_eq!(headers.get("cookie").unwrap(), "a=1; b=2");
    }

    #[test]
    fn what_portico_sets_or_removes_replaces_the_clients() {
        let mut client = HeaderMap::new();
        client.insert("host", HeaderValue::from_static("public.example"));
        client.insert("x-request-id", HeaderValue::from_static("client-chosen"));
        client.insert("accept", HeaderValue::from_static("*/*"));
        let mut headers = UpstreamHeaders::new(&client, |_| false);
        headers.set(
            http::header::HOST,
            HeaderValue::from_static("upstream.internal"),
        );
        headers.remove(HeaderName::from_static("x-request-id"));
        assert_eq!(names(&headers), ["accept", "host"]);
        assert_eq!(headers.get("host").unwrap(), "upstream.internal");
    }

    #[test]
    fn forwarded_chain_is_only_extended_for_trusted_proxies() {
        let ip: std::net::IpAddr = "10.0.0.9".parse().unwrap();
        let mut client = HeaderMap::new();
        client.insert("x-forwarded-for", HeaderValue::from_static("1.2.3.4"));
        client.insert("x-forwarded-proto", HeaderValue::from_static("http"));
        client.insert("x-forwarded-host", HeaderValue::from_static("evil.example"));
        let mut headers = UpstreamHeaders::new(&client, |_| false);
        headers.forwarded(ip, "https", Some("app.example"), false);
        assert_eq!(headers.get("x-forwarded-for").unwrap(), "10.0.0.9");
        assert_eq!(headers.get("x-forwarded-proto").unwrap(), "https");
        assert_eq!(headers.get("x-forwarded-host").unwrap(), "app.example");
        assert_eq!(names(&headers).len(), 3, "the client's copies are gone");

        let mut trusted = UpstreamHeaders::new(&client, |_| false);
        trusted.forwarded(ip, "https", Some("app.example"), true);
        assert_eq!(trusted.get("x-forwarded-for").unwrap(), "1.2.3.4, 10.0.0.9");
        assert_eq!(trusted.get("x-forwarded-proto").unwrap(), "http");
        assert_eq!(trusted.get("x-forwarded-host").unwrap(), "evil.example");
        assert_eq!(names(&trusted).len(), 3);

        let no_chain = HeaderMap::new();
        let mut fresh = UpstreamHeaders::new(&no_chain, |_| false);
        fresh.forwarded(ip, "https", None, true);
        assert_eq!(fresh.get("x-forwarded-for").unwrap(), "10.0.0.9");
        assert_eq!(fresh.get("x-forwarded-proto").unwrap(), "https");
        assert!(fresh.get("x-forwarded-host").is_none());
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
        let client = HeaderMap::new();
        let mut headers = UpstreamHeaders::new(&client, |_| false);
        headers.identity(&session);
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
        let mut headers = UpstreamHeaders::new(&client, |_| false);
        headers.identity(&copy);
        assert_eq!(headers.get("x-forwarded-user").unwrap(), "alice");
        session.sub = "bob".into();
        session.identity_headers.clear();
        let mut fresh = UpstreamHeaders::new(&client, |_| false);
        fresh.identity(&session);
        assert_eq!(fresh.get("x-forwarded-user").unwrap(), "bob");
        assert_eq!(fresh.get("x-forwarded-groups").unwrap(), "admin,ops");
    }

    #[test]
    fn routing_headers_from_untrusted_clients_do_not_pass() {
        let mut client = HeaderMap::new();
        for (name, value) in [
            ("forwarded", "for=6.6.6.6;host=evil"),
            ("x-real-ip", "6.6.6.6"),
            ("x_real_ip", "6.6.6.6"),
            ("x-forwarded-port", "8443"),
            ("x-forwarded-prefix", "/admin"),
            ("x-forwarded-ssl", "on"),
            ("x_forwarded_server", "evil"),
            ("x-original-url", "/admin/x"),
            ("x-rewrite-url", "/admin/x"),
            ("x-original-uri", "/admin/x"),
            ("true-client-ip", "6.6.6.6"),
            ("x-client-ip", "6.6.6.6"),
            ("accept", "*/*"),
            ("x-forward", "kept: not a routing header"),
            ("forwarded-for-me", "kept"),
        ] {
            client.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_static(value),
            );
        }
        let mut untrusted = UpstreamHeaders::new(&client, |_| false);
        untrusted.forwarded(
            "10.0.0.9".parse().unwrap(),
            "https",
            Some("app.example"),
            false,
        );
        let mut passed = names(&untrusted);
        passed.sort();
        assert_eq!(
            passed,
            [
                "accept",
                "forwarded-for-me",
                "x-forward",
                "x-forwarded-for",
                "x-forwarded-host",
                "x-forwarded-proto"
            ]
        );
        // Until told the client is trusted, nothing of the kind passes.
        assert!(
            !names(&UpstreamHeaders::new(&client, |_| false)).contains(&"x-real-ip".to_string())
        );

        let mut trusted = UpstreamHeaders::new(&client, |_| false);
        trusted.forwarded(
            "10.0.0.9".parse().unwrap(),
            "https",
            Some("app.example"),
            true,
        );
        for name in [
            "x-real-ip",
            "x-forwarded-port",
            "x-forwarded-prefix",
            "x-original-url",
        ] {
            assert!(trusted.get(name).is_some(), "{name}");
        }
        assert_eq!(
            trusted.get("forwarded").unwrap(),
            "for=6.6.6.6;host=evil, for=10.0.0.9"
        );
        assert_eq!(
            names(&trusted)
                .iter()
                .filter(|name| *name == "forwarded")
                .count(),
            1
        );
    }

    #[test]
    fn forwarded_is_extended_only_when_a_trusted_proxy_sent_one() {
        let mut two_lines = HeaderMap::new();
        two_lines.append(FORWARDED, HeaderValue::from_static("for=1.1.1.1"));
        two_lines.append(
            FORWARDED,
            HeaderValue::from_static("for=\"[2001:db8::1]\";proto=https"),
        );
        assert_eq!(
            extended_forwarded(&two_lines, "::1".parse().unwrap()).unwrap(),
            "for=1.1.1.1, for=\"[2001:db8::1]\";proto=https, for=\"[::1]\""
        );
        assert!(extended_forwarded(&HeaderMap::new(), "10.0.0.1".parse().unwrap()).is_none());
        let none = HeaderMap::new();
        let mut trusted = UpstreamHeaders::new(&none, |_| false);
        trusted.forwarded("10.0.0.9".parse().unwrap(), "https", None, true);
        assert!(trusted.get("forwarded").is_none());
    }

    #[test]
    fn routing_header_names_are_recognised_in_both_spellings_only() {
        for name in [
            "forwarded",
            "x-forwarded-anything",
            "x_forwarded_port",
            "x-real-ip",
            "x_rewrite_url",
        ] {
            assert!(is_routing_header(name), "{name}");
        }
        for name in [
            "x-forwarded-",
            "accept",
            "x-requested-with",
            "cookie",
            "x-forwardedfor",
            "te",
        ] {
            assert!(!is_routing_header(name), "{name}");
        }
    }
}
