//! Property tests over the parsers that see untrusted input: any bytes in
//! cookies, state values, return URLs and header names are handled without
//! a panic, and the security rules hold for every input.

use http::header::{HeaderName, HeaderValue, COOKIE};
use http::HeaderMap;
use portico::oidc::cookie_tag;
use portico::proxy::{UpstreamHeaders, IDENTITY_HEADERS};
use portico::redirect::ReturnUrlPolicy;
use portico::session::{request_cookies, CookieRules};
use proptest::prelude::*;
use url::Url;

fn rules() -> CookieRules {
    CookieRules::new("portico_session", true, None, cookie::Key::from(&[9u8; 64]))
}

fn policy() -> ReturnUrlPolicy {
    ReturnUrlPolicy::new(
        &Url::parse("https://portico.example.com/").unwrap(),
        &[
            "docs.example.com".to_string(),
            ".apps.example.com".to_string(),
        ],
    )
}

/// Return-URL candidates built from the pieces open-redirect payloads use.
fn url_like() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("/".to_string()),
        Just("//".to_string()),
        Just("\\".to_string()),
        Just("/\\".to_string()),
        Just("https:".to_string()),
        Just("http:".to_string()),
        Just("javascript:".to_string()),
        Just("evil.example".to_string()),
        Just("portico.example.com".to_string()),
        Just("docs.example.com".to_string()),
        Just("x.apps.example.com".to_string()),
        Just("apps.example.com.evil".to_string()),
        Just("@".to_string()),
        Just(":443".to_string()),
        Just("%2f".to_string()),
        Just("%5c".to_string()),
        Just("%00".to_string()),
        Just("?".to_string()),
        Just("#".to_string()),
        Just(".".to_string()),
        Just("\t".to_string()),
        Just("。".to_string()),
        "\\PC{0,6}",
    ];
    proptest::collection::vec(piece, 0..8).prop_map(|pieces| pieces.concat())
}

fn allowed_host(host: &str) -> bool {
    host == "portico.example.com"
        || host == "docs.example.com"
        || host == "apps.example.com"
        || host.ends_with(".apps.example.com")
}

/// A header name: an identity header in some spelling, or anything else.
fn header_name() -> impl Strategy<Value = String> {
    let identity = (
        proptest::sample::select(IDENTITY_HEADERS.to_vec()),
        proptest::collection::vec(any::<bool>(), 40),
        any::<bool>(),
    )
        .prop_map(|(name, upper, underscores)| {
            name.chars()
                .zip(upper.iter().cycle())
                .map(|(character, upper)| match (character, upper) {
                    ('-', _) if underscores => '_',
                    (character, true) => character.to_ascii_uppercase(),
                    (character, false) => character,
                })
                .collect::<String>()
        });
    prop_oneof![identity, "[a-zA-Z0-9_-]{1,30}"]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn cookie_headers_of_any_bytes_never_read_as_a_session(
        values in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..200), 0..4)
    ) {
        let rules = rules();
        let mut headers = HeaderMap::new();
        for value in &values {
            if let Ok(value) = HeaderValue::from_bytes(value) {
                headers.append(COOKIE, value);
            }
        }
        prop_assert!(rules.read_session_id(&headers).is_none());
        prop_assert!(rules.login_cookies(&headers).is_empty());
        let _ = rules.read_login(&headers, "abc");
        let _ = request_cookies(&headers).count();
    }

    #[test]
    fn cookie_like_text_never_reads_as_a_session(text in "(portico_session(_login_[a-z0-9]{0,12})?=[ -~]{0,80}; ?){0,4}") {
        let rules = rules();
        let mut headers = HeaderMap::new();
        if let Ok(value) = HeaderValue::from_str(&text) {
            headers.insert(COOKIE, value);
        }
        prop_assert!(rules.read_session_id(&headers).is_none());
        prop_assert!(rules.login_cookies(&headers).is_empty());
        let upstream = UpstreamHeaders::new(&headers, |name| rules.is_portico_cookie(name));
        let sent: HeaderMap = upstream
            .iter()
            .map(|(name, value)| (name.clone(), value.clone()))
            .collect();
        prop_assert!(request_cookies(&sent).all(|(name, _)| !rules.is_portico_cookie(&name)));
    }

    #[test]
    fn a_sealed_session_cookie_reads_back_whatever_else_is_around_it(
        id in "[A-Za-z0-9_-]{1,40}",
        before in "([a-z]{1,8}=[a-z0-9]{0,8}; ){0,3}",
        after in "(; [a-z]{1,8}=[a-z0-9]{0,8}){0,3}",
    ) {
        let rules = rules();
        let cookie = rules.session_cookie(&id, time::Duration::hours(1));
        let text = format!("{before}portico_session={}{after}", cookie.value());
        let mut headers = HeaderMap::new();
        headers.insert(COOKIE, HeaderValue::from_str(&text).unwrap());
        prop_assert_eq!(rules.read_session_id(&headers), Some(id));
    }

    #[test]
    fn state_values_of_any_text_give_a_short_alphanumeric_tag(state in any::<String>()) {
        let tag = cookie_tag(&state);
        prop_assert!(tag.len() <= 12);
        prop_assert!(tag.bytes().all(|byte| byte.is_ascii_alphanumeric()));
    }

    #[test]
    fn return_urls_never_leave_the_origin_or_the_allow_list(candidate in url_like()) {
        if let Some(target) = policy().check(&candidate) {
            prop_assert_eq!(target.scheme(), "https", "{} → {}", candidate, target);
            prop_assert!(allowed_host(target.host_str().unwrap_or_default()), "{} → {}", candidate, target);
            prop_assert!(target.username().is_empty() && target.password().is_none());
        }
    }

    #[test]
    fn return_urls_of_any_text_never_panic(candidate in any::<String>()) {
        if let Some(target) = policy().check(&candidate) {
            prop_assert!(allowed_host(target.host_str().unwrap_or_default()));
        }
    }

    #[test]
    fn identity_headers_are_gone_in_every_spelling_and_others_stay(
        names in proptest::collection::vec(header_name(), 0..12),
        value in "[ -~]{0,20}",
    ) {
        let mut headers = HeaderMap::new();
        for name in &names {
            let name = HeaderName::from_bytes(name.as_bytes()).unwrap();
            headers.append(name, HeaderValue::from_str(&value).unwrap());
        }
        let is_identity = |name: &str| {
            IDENTITY_HEADERS.contains(&name.to_ascii_lowercase().replace('_', "-").as_str())
        };
        // Names that stop at portico for other reasons (hop-by-hop, or
        // Cookie lines, which are joined) are out of this property.
        prop_assume!(!headers.keys().any(|name| {
            matches!(
                name.as_str(),
                "connection" | "keep-alive" | "proxy-authenticate" | "proxy-authorization"
                    | "proxy-connection" | "te" | "trailer" | "transfer-encoding" | "upgrade"
                    | "cookie"
            )
        }));
        let others: usize = headers
            .iter()
            .filter(|(name, _)| !is_identity(name.as_str()))
            .count();
        let upstream = UpstreamHeaders::new(&headers, |_| false);
        prop_assert!(upstream.iter().all(|(name, _)| !is_identity(name.as_str())));
        prop_assert_eq!(upstream.iter().count(), others);
    }
}
