//! Compact JWS of any bytes (bearer and logout tokens), checked against an
//! empty key set: the header and claims parsing must never panic, and
//! nothing verifies.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portico::oidc::{parse_algorithms, verify_jws, KeySet};

fuzz_target!(|data: &[u8]| {
    let Ok(token) = std::str::from_utf8(data) else {
        return;
    };
    let jwks = KeySet::new(openidconnect::core::CoreJsonWebKeySet::new(Vec::new()));
    let algorithms = parse_algorithms(&[
        "RS256".to_owned(),
        "ES256".to_owned(),
        "PS256".to_owned(),
        "EdDSA".to_owned(),
    ]);
    assert!(verify_jws(token, &jwks, &algorithms).is_err());
});
