//! Compact JWS (JWT) encoding, written out by hand.
//!
//! The dev OP must be able to produce tokens no JWT library would: an `alg: none` token, an
//! HS256 token keyed with the client secret, a corrupted signature. So it builds the
//! `header.payload.signature` form itself (RFC 7515 §7.1) and keeps the one check it needs for
//! its own access tokens (RS256 against its own keys).

use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::{json, Map, Value};
use sha2::{Digest as _, Sha256};

use super::keys::KeyPair;
use super::signers::AlgKey;

/// How a token is signed.
pub(crate) enum Signing<'a> {
    /// RS256 with this key; the header names its kid.
    Rs256(&'a KeyPair),
    /// RS256 with this key; the header names no kid.
    Rs256NoKid(&'a KeyPair),
    /// RS256 with this key, then the signature bytes are corrupted.
    Rs256Corrupted(&'a KeyPair),
    /// Header `{"alg":"none"}` and an empty signature.
    Unsigned,
    /// HS256 keyed with these bytes (a confused verifier would use the client secret).
    Hs256(&'a [u8]),
    /// The key's own algorithm (any asymmetric one); the header names its kid.
    With(&'a AlgKey),
}

/// Why a token could not be produced.
#[derive(Debug, thiserror::Error)]
pub(crate) enum JwtError {
    #[error("could not sign the token: {0}")]
    Signing(#[from] rsa::signature::Error),
    #[error("could not sign the token: {0}")]
    OtherSigning(#[from] super::signers::SignerError),
    #[error("could not serialise the token: {0}")]
    Serialising(#[from] serde_json::Error),
}

/// Encodes `claims` as a compact JWS. `token_type` goes into the header's `typ` (except for the
/// unsigned form, whose header is exactly `{"alg":"none"}`).
pub(crate) fn encode(
    claims: &Map<String, Value>,
    token_type: &str,
    signing: Signing<'_>,
) -> Result<String, JwtError> {
    let header = match &signing {
        Signing::Rs256(key) | Signing::Rs256Corrupted(key) => {
            json!({"alg": "RS256", "typ": token_type, "kid": key.kid})
        }
        Signing::Rs256NoKid(_) => json!({"alg": "RS256", "typ": token_type}),
        Signing::Unsigned => json!({"alg": "none"}),
        Signing::Hs256(_) => json!({"alg": "HS256", "typ": token_type}),
        Signing::With(key) => json!({"alg": key.alg().name(), "typ": token_type, "kid": key.kid()}),
    };
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header)?),
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims)?)
    );
    let signature = match signing {
        Signing::Rs256(key) | Signing::Rs256NoKid(key) => key.sign(signing_input.as_bytes())?,
        Signing::Rs256Corrupted(key) => {
            let mut signature = key.sign(signing_input.as_bytes())?;
            for byte in signature.iter_mut().take(8) {
                *byte ^= 0xA5;
            }
            signature
        }
        Signing::Unsigned => Vec::new(),
        Signing::Hs256(secret) => hmac_sha256(secret, signing_input.as_bytes()).to_vec(),
        Signing::With(key) => key.sign(signing_input.as_bytes())?,
    };
    Ok(format!(
        "{signing_input}.{}",
        URL_SAFE_NO_PAD.encode(signature)
    ))
}

/// The parts of a compact JWS, decoded but not verified.
pub(crate) struct DecodedToken {
    pub header: Value,
    pub claims: Map<String, Value>,
    pub signature: Vec<u8>,
    pub signing_input: String,
}

/// Splits and decodes a compact JWS without checking anything.
pub(crate) fn decode_unverified(token: &str) -> Option<DecodedToken> {
    let mut parts = token.split('.');
    let (header, payload, signature) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).ok()?).ok()?;
    let claims = match serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()? {
        Value::Object(claims) => claims,
        _ => return None,
    };
    Some(DecodedToken {
        header,
        claims,
        signature: URL_SAFE_NO_PAD.decode(signature).ok()?,
        signing_input: token[..token.len() - signature.len() - 1].to_owned(),
    })
}

/// The claims of an RS256 token signed by one of `keys` (matched by kid) whose header `typ` is
/// `token_type`; `None` if anything is off. Time and issuer checks are the caller's.
pub(crate) fn verify_rs256(
    token: &str,
    keys: &[Arc<KeyPair>],
    token_type: &str,
) -> Option<Map<String, Value>> {
    let decoded = decode_unverified(token)?;
    if decoded.header.get("alg")?.as_str()? != "RS256"
        || decoded.header.get("typ")?.as_str()? != token_type
    {
        return None;
    }
    let kid = decoded.header.get("kid")?.as_str()?;
    let key = keys.iter().find(|key| key.kid == kid)?;
    key.verify(decoded.signing_input.as_bytes(), &decoded.signature)
        .then_some(decoded.claims)
}

/// HMAC-SHA-256 (RFC 2104), small enough to write out rather than add a dependency.
pub(crate) fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    const BLOCK_SIZE: usize = 64;
    let mut block_key = [0u8; BLOCK_SIZE];
    if key.len() > BLOCK_SIZE {
        block_key[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block_key[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(block_key.map(|byte| byte ^ 0x36));
    inner.update(message);
    let inner_hash = inner.finalize();
    let mut outer = Sha256::new();
    outer.update(block_key.map(|byte| byte ^ 0x5c));
    outer.update(inner_hash);
    outer.finalize().into()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly
mod tests {
    use super::super::keys::key_at;
    use super::*;

    fn sample_claims() -> Map<String, Value> {
        let Value::Object(claims) = json!({"iss": "http://127.0.0.1:1", "sub": "alice"}) else {
            unreachable!()
        };
        claims
    }

    #[test]
    fn rs256_token_verifies_with_the_public_key() {
        let key = key_at(0).unwrap();
        let token = encode(&sample_claims(), "JWT", Signing::Rs256(&key)).unwrap();
        let decoded = decode_unverified(&token).unwrap();
        assert_eq!(
            decoded.header,
            json!({"alg": "RS256", "typ": "JWT", "kid": key.kid})
        );
        assert_eq!(decoded.claims, sample_claims());
        assert!(key.verify(decoded.signing_input.as_bytes(), &decoded.signature));
        assert_eq!(
            verify_rs256(&token, std::slice::from_ref(&key), "JWT"),
            Some(sample_claims())
        );
        assert!(!token.contains('='), "base64url without padding");
    }

    #[test]
    fn verify_rs256_refuses_other_keys_types_and_tampering() {
        let key = key_at(0).unwrap();
        let other = key_at(1).unwrap();
        let token = encode(&sample_claims(), "at+jwt", Signing::Rs256(&key)).unwrap();
        assert!(verify_rs256(&token, &[other], "at+jwt").is_none());
        assert!(verify_rs256(&token, std::slice::from_ref(&key), "JWT").is_none());
        let mut tampered = token.clone();
        tampered.insert(tampered.find('.').unwrap() + 3, 'x');
        assert!(verify_rs256(&tampered, std::slice::from_ref(&key), "at+jwt").is_none());
        let corrupted = encode(&sample_claims(), "at+jwt", Signing::Rs256Corrupted(&key)).unwrap();
        assert!(verify_rs256(&corrupted, &[key], "at+jwt").is_none());
    }

    #[test]
    fn unsigned_token_has_alg_none_and_an_empty_signature() {
        let token = encode(&sample_claims(), "JWT", Signing::Unsigned).unwrap();
        assert!(token.ends_with('.'));
        let decoded = decode_unverified(&token).unwrap();
        assert_eq!(decoded.header, json!({"alg": "none"}));
        assert!(decoded.signature.is_empty());
    }

    #[test]
    fn hs256_token_is_keyed_with_the_given_secret() {
        let token = encode(&sample_claims(), "JWT", Signing::Hs256(b"devop-secret")).unwrap();
        let decoded = decode_unverified(&token).unwrap();
        assert_eq!(decoded.header["alg"], "HS256");
        let expected = hmac_sha256(b"devop-secret", decoded.signing_input.as_bytes());
        assert_eq!(decoded.signature, expected.to_vec());
    }

    #[test]
    fn hmac_sha256_matches_rfc4231_test_case_2() {
        let mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        let hex: String = mac.iter().map(|byte| format!("{byte:02x}")).collect();
        assert_eq!(
            hex,
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
