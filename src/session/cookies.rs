//! Every cookie portico sets, read or removes, and their attributes, in one place.
//!
//! Two kinds: the session cookie (holds only the encrypted session id) and
//! short-lived login cookies (one per login attempt, holding the encrypted
//! login state). Both are private cookies: AES-GCM with the cookie key, the
//! cookie name bound as associated data, so a value cannot be read, forged,
//! or moved to another cookie name. Attributes: HttpOnly, SameSite=Lax (Strict
//! would drop the cookie on the redirect back from the provider), Secure when
//! configured (default for https public URLs), Path=/.
//!
//! Names carry the `__Host-` prefix whenever the public URL is https and no
//! `cookie_domain` is set ([`host_prefixed_name`]): browsers then accept the
//! cookie only from a secure origin, for Path=/ and without a Domain, so a
//! sibling subdomain (or a plain-http page on the same host) cannot set or
//! overwrite it to plant its own session or login state (login CSRF,
//! session fixation). RFC 6265bis §4.1.3.2. The session and login cookies
//! are sealed with separate keys (see `crypto`).

use cookie::{Cookie, CookieJar, SameSite};
use http::header::COOKIE;
use http::HeaderMap;

/// How long a login attempt may take, start to callback.
pub const LOGIN_COOKIE_LIFETIME: time::Duration = time::Duration::minutes(10);

/// The prefix browsers hold to "secure origin, Path=/, no Domain".
pub const HOST_PREFIX: &str = "__Host-";

/// Whether cookies get the `__Host-` prefix: the public URL is https, the
/// cookies are Secure, and no `cookie_domain` shares them with other hosts
/// (a `__Host-` cookie may carry no Domain).
pub fn host_prefix_applies(public_url_is_https: bool, secure: bool, domain: Option<&str>) -> bool {
    public_url_is_https && secure && domain.is_none()
}

/// The session cookie's name: `cookie_name`, with `__Host-` in front when
/// `prefixed` (unless the configured name already carries a cookie prefix).
pub fn host_prefixed_name(cookie_name: &str, prefixed: bool) -> String {
    let has_prefix = cookie_name.starts_with(HOST_PREFIX) || cookie_name.starts_with("__Secure-");
    if prefixed && !has_prefix {
        format!("{HOST_PREFIX}{cookie_name}")
    } else {
        cookie_name.to_string()
    }
}

#[derive(Clone)]
pub struct CookieRules {
    session_name: String,
    login_prefix: String,
    /// The names without `__Host-` (what older versions set): still never
    /// sent upstream, never read.
    legacy_session_name: Option<String>,
    legacy_login_prefix: Option<String>,
    secure: bool,
    domain: Option<String>,
    key: cookie::Key,
    login_key: cookie::Key,
}

impl CookieRules {
    /// Rules for cookies named `name` (and `{name}_login_…`), both sealed
    /// with `key` unless [`CookieRules::with_login_key`] gives login cookies
    /// their own.
    pub fn new(name: &str, secure: bool, domain: Option<String>, key: cookie::Key) -> Self {
        CookieRules {
            session_name: name.to_string(),
            login_prefix: format!("{name}_login_"),
            legacy_session_name: None,
            legacy_login_prefix: None,
            secure,
            domain,
            login_key: key.clone(),
            key,
        }
    }

    /// Login-state cookies sealed with their own key.
    pub fn with_login_key(mut self, key: cookie::Key) -> Self {
        self.login_key = key;
        self
    }

    /// Rules for the configured `cookie_name`, `__Host-`-prefixed when
    /// `prefixed`; the unprefixed names are remembered as legacy (stripped
    /// from upstream requests, never read).
    pub fn for_config(
        cookie_name: &str,
        prefixed: bool,
        secure: bool,
        domain: Option<String>,
        key: cookie::Key,
    ) -> Self {
        let name = host_prefixed_name(cookie_name, prefixed);
        let mut rules = CookieRules::new(&name, secure, domain, key);
        if name != cookie_name {
            rules.legacy_session_name = Some(cookie_name.to_string());
            rules.legacy_login_prefix = Some(format!("{cookie_name}_login_"));
        }
        rules
    }

    pub fn session_name(&self) -> &str {
        &self.session_name
    }

    /// True for the session cookie and every login cookie: never sent upstream.
    pub fn is_portico_cookie(&self, name: &str) -> bool {
        name == self.session_name
            || name.starts_with(&self.login_prefix)
            || self.legacy_session_name.as_deref() == Some(name)
            || self
                .legacy_login_prefix
                .as_deref()
                .is_some_and(|prefix| name.starts_with(prefix))
    }

    fn base(&self, name: String, value: String) -> Cookie<'static> {
        let mut cookie = Cookie::new(name, value);
        cookie.set_http_only(true);
        cookie.set_same_site(SameSite::Lax);
        cookie.set_secure(self.secure);
        cookie.set_path("/");
        if let Some(domain) = &self.domain {
            cookie.set_domain(domain.clone());
        }
        cookie
    }

    fn encrypt(&self, key: &cookie::Key, name: &str, plaintext: &str) -> String {
        let mut jar = CookieJar::new();
        jar.private_mut(key)
            .add(Cookie::new(name.to_string(), plaintext.to_string()));
        jar.get(name)
            .map(|cookie| cookie.value().to_string())
            .unwrap_or_default()
    }

    fn decrypt(&self, key: &cookie::Key, name: &str, value: &str) -> Option<String> {
        let jar = CookieJar::new();
        jar.private(key)
            .decrypt(Cookie::new(name.to_string(), value.to_string()))
            .map(|cookie| cookie.value().to_string())
    }

    /// The session cookie carrying `session_id`, living `max_age`.
    pub fn session_cookie(&self, session_id: &str, max_age: time::Duration) -> Cookie<'static> {
        let value = self.encrypt(&self.key, &self.session_name, session_id);
        let mut cookie = self.base(self.session_name.clone(), value);
        cookie.set_max_age(max_age);
        cookie
    }

    pub fn session_removal(&self) -> Cookie<'static> {
        removal(self.base(self.session_name.clone(), String::new()))
    }

    /// The decrypted session id from the request, if a valid cookie is present.
    /// A tampered or foreign value is ignored as if absent.
    pub fn read_session_id(&self, headers: &HeaderMap) -> Option<String> {
        self.session_cookie_values(headers)
            .find_map(|value| self.open_session_value(value))
    }

    /// The raw (still sealed) values of the request's session cookies.
    pub fn session_cookie_values<'a>(
        &'a self,
        headers: &'a HeaderMap,
    ) -> impl Iterator<Item = &'a str> + 'a {
        cookie_pairs(headers)
            .filter(|(name, _)| *name == self.session_name)
            .map(|(_, value)| value)
    }

    /// The session id sealed in a session cookie's value, if authentic.
    pub fn open_session_value(&self, value: &str) -> Option<String> {
        self.decrypt(&self.key, &self.session_name, value)
    }

    pub fn login_cookie_name(&self, tag: &str) -> String {
        format!("{}{tag}", self.login_prefix)
    }

    pub fn login_cookie(&self, tag: &str, plaintext: &str) -> Cookie<'static> {
        let name = self.login_cookie_name(tag);
        let value = self.encrypt(&self.login_key, &name, plaintext);
        let mut cookie = self.base(name, value);
        cookie.set_max_age(LOGIN_COOKIE_LIFETIME);
        cookie
    }

    pub fn login_removal(&self, name: &str) -> Cookie<'static> {
        removal(self.base(name.to_string(), String::new()))
    }

    /// The decrypted login cookie for `tag`, if present and authentic.
    pub fn read_login(&self, headers: &HeaderMap, tag: &str) -> Option<String> {
        let wanted = self.login_cookie_name(tag);
        request_cookies(headers)
            .filter(|(name, _)| name == &wanted)
            .find_map(|(name, value)| self.decrypt(&self.login_key, &name, &value))
    }

    /// Every authentic login cookie of the request: (cookie name, plaintext).
    pub fn login_cookies(&self, headers: &HeaderMap) -> Vec<(String, String)> {
        request_cookies(headers)
            .filter(|(name, _)| name.starts_with(&self.login_prefix))
            .filter_map(|(name, value)| {
                let plaintext = self.decrypt(&self.login_key, &name, &value)?;
                Some((name, plaintext))
            })
            .collect()
    }
}

fn removal(mut cookie: Cookie<'static>) -> Cookie<'static> {
    cookie.set_max_age(time::Duration::ZERO);
    cookie.set_expires(time::OffsetDateTime::UNIX_EPOCH);
    cookie
}

/// (name, value) of each cookie the request carries, over every Cookie
/// header, borrowed from it. Malformed pairs are skipped.
fn cookie_pairs(headers: &HeaderMap) -> impl Iterator<Item = (&str, &str)> + '_ {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|text| text.split(';'))
        .filter_map(|pair| {
            let (name, value) = pair.split_once('=')?;
            let name = name.trim();
            (!name.is_empty()).then(|| (name, value.trim().trim_matches('"')))
        })
}

/// [`cookie_pairs`], owned.
pub fn request_cookies(headers: &HeaderMap) -> impl Iterator<Item = (String, String)> + '_ {
    cookie_pairs(headers).map(|(name, value)| (name.to_string(), value.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn rules() -> CookieRules {
        CookieRules::new("portico_session", true, None, cookie::Key::from(&[3u8; 64]))
    }

    fn headers_with(cookie: &Cookie<'_>) -> HeaderMap {
        let mut headers = HeaderMap::new();
        let pair = format!("other=1; {}={}", cookie.name(), cookie.value());
        headers.insert(COOKIE, HeaderValue::from_str(&pair).unwrap());
        headers
    }

    #[test]
    fn session_cookie_has_safe_attributes_and_hides_the_id() {
        let cookie = rules().session_cookie("session-id-123", time::Duration::hours(1));
        let text = cookie.to_string();
        assert!(text.contains("HttpOnly"), "{text}");
        assert!(text.contains("SameSite=Lax"), "{text}");
        assert!(text.contains("Secure"), "{text}");
        assert!(text.contains("Path=/"), "{text}");
        assert!(!text.contains("session-id-123"), "{text}");
        assert_eq!(
            rules().read_session_id(&headers_with(&cookie)).as_deref(),
            Some("session-id-123")
        );
    }

    #[test]
    fn tampered_session_cookie_is_ignored() {
        let cookie = rules().session_cookie("abc", time::Duration::hours(1));
        let mut value = cookie.value().to_string();
        value.replace_range(0..1, if value.starts_with('A') { "B" } else { "A" });
        let forged = Cookie::new("portico_session", value);
        assert_eq!(rules().read_session_id(&headers_with(&forged)), None);
        let plain = Cookie::new("portico_session", "abc");
        assert_eq!(rules().read_session_id(&headers_with(&plain)), None);
    }

    #[test]
    fn a_login_value_cannot_be_replayed_under_another_cookie_name() {
        let rules = rules();
        let login = rules.login_cookie("tag1", "state-data");
        let moved = Cookie::new(rules.login_cookie_name("tag2"), login.value().to_string());
        assert_eq!(rules.read_login(&headers_with(&moved), "tag2"), None);
        assert_eq!(
            rules.read_login(&headers_with(&login), "tag1").as_deref(),
            Some("state-data")
        );
    }

    #[test]
    fn portico_cookies_are_recognised_by_name() {
        let rules = rules();
        assert!(rules.is_portico_cookie("portico_session"));
        assert!(rules.is_portico_cookie("portico_session_login_abc"));
        assert!(!rules.is_portico_cookie("app_session"));
    }

    #[test]
    fn removal_cookies_expire_immediately() {
        let text = rules().session_removal().to_string();
        assert!(text.contains("Max-Age=0"), "{text}");
        assert!(text.contains("Path=/"), "{text}");
    }

    #[test]
    fn host_prefix_only_for_https_secure_host_only_cookies() {
        assert!(host_prefix_applies(true, true, None));
        assert!(!host_prefix_applies(false, true, None));
        assert!(!host_prefix_applies(true, false, None));
        assert!(!host_prefix_applies(true, true, Some(".example.com")));
        assert_eq!(
            host_prefixed_name("portico_session", true),
            "__Host-portico_session"
        );
        assert_eq!(
            host_prefixed_name("portico_session", false),
            "portico_session"
        );
        assert_eq!(host_prefixed_name("__Host-mine", true), "__Host-mine");
        assert_eq!(host_prefixed_name("__Secure-mine", true), "__Secure-mine");
    }

    #[test]
    fn prefixed_cookies_keep_the_host_only_attributes_and_ignore_unprefixed_ones() {
        let key = cookie::Key::from(&[3u8; 64]);
        let rules = CookieRules::for_config("portico_session", true, true, None, key.clone());
        let session = rules.session_cookie("id-7", time::Duration::hours(1));
        assert_eq!(session.name(), "__Host-portico_session");
        let text = session.to_string();
        assert!(text.contains("Secure") && text.contains("Path=/"), "{text}");
        assert!(!text.contains("Domain"), "{text}");
        let login = rules.login_cookie("t1", "state");
        assert!(login.name().starts_with("__Host-portico_session_login_"));
        let removal = rules.session_removal();
        assert_eq!(removal.name(), "__Host-portico_session");
        assert!(removal.to_string().contains("Secure"));
        // A cookie tossed in under the bare name (as any subdomain could) is
        // not read, even with a genuine sealed value, but is still stripped.
        let tossed = Cookie::new(
            "portico_session",
            CookieRules::new("portico_session", true, None, key)
                .session_cookie("id-7", time::Duration::hours(1))
                .value()
                .to_string(),
        );
        assert_eq!(rules.read_session_id(&headers_with(&tossed)), None);
        assert!(rules.is_portico_cookie("portico_session"));
        assert!(rules.is_portico_cookie("portico_session_login_x"));
        assert!(rules.is_portico_cookie("__Host-portico_session"));
        assert_eq!(
            rules.read_session_id(&headers_with(&session)).as_deref(),
            Some("id-7")
        );
    }
}
