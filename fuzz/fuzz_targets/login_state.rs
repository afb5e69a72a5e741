//! The login state as it comes back from a login cookie: JSON of any shape,
//! and the `state` query parameter that names its cookie.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portico::oidc::{cookie_tag, LoginState};

fuzz_target!(|data: &[u8]| {
    if let Ok(state) = serde_json::from_slice::<LoginState>(data) {
        let tag = state.tag();
        assert!(tag.len() <= 12 && tag.bytes().all(|byte| byte.is_ascii_alphanumeric()));
    }
    let text = String::from_utf8_lossy(data);
    let tag = cookie_tag(&text);
    assert!(tag.len() <= 12 && tag.bytes().all(|byte| byte.is_ascii_alphanumeric()));
});
