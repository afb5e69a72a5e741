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
#[path = "headers_tests.rs"]
mod tests;
