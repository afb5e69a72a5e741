//! Cookie headers of any bytes: reading the session and login cookies and
//! stripping portico's cookies must never panic, and a value that was not
//! sealed with our key never reads as a session id.
#![no_main]

use http::header::COOKIE;
use http::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;
use portico::oidc::cookie_tag;
use portico::proxy::UpstreamHeaders;
use portico::session::{request_cookies, CookieRules};

fuzz_target!(|data: &[u8]| {
    let rules = CookieRules::new("portico_session", true, None, cookie::Key::from(&[7u8; 64]));
    let mut headers = HeaderMap::new();
    // Several Cookie headers: split the input at NUL bytes.
    for part in data.split(|byte| *byte == 0) {
        if let Ok(value) = HeaderValue::from_bytes(part) {
            headers.append(COOKIE, value);
        }
    }
    assert!(rules.read_session_id(&headers).is_none());
    let _ = rules.login_cookies(&headers);
    let tag = cookie_tag(&String::from_utf8_lossy(data));
    let _ = rules.read_login(&headers, &tag);
    let _ = request_cookies(&headers).count();
    // What goes upstream: the Cookie lines less portico's own cookies.
    let upstream = UpstreamHeaders::new(&headers, |name| rules.is_portico_cookie(name));
    let mut sent = HeaderMap::new();
    for (name, value) in upstream.iter() {
        if name == COOKIE {
            sent.append(COOKIE, value.clone());
        }
    }
    assert!(request_cookies(&sent).all(|(name, _)| !rules.is_portico_cookie(&name)));
});
