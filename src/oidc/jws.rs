//! Compact JWS verification against the provider's JWKS, for tokens that
//! are not ID tokens (logout tokens now; bearer access tokens later).
//!
//! The algorithm comes from an allow-list (never `none`), the key is chosen
//! by `kid`, and the signature is checked with openidconnect's own key
//! types, so every algorithm portico accepts for ID tokens works here too.
//! Claims are returned as JSON for the caller to judge.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use openidconnect::core::{CoreJsonWebKeySet, CoreJwsSigningAlgorithm};
use openidconnect::JsonWebKey;

use super::verify::TokenRejection;

/// A JWS whose signature checked out.
#[derive(Debug)]
pub struct VerifiedJws {
    pub header: serde_json::Map<String, serde_json::Value>,
    pub claims: serde_json::Map<String, serde_json::Value>,
}

fn decode_json(part: &str) -> Result<serde_json::Map<String, serde_json::Value>, TokenRejection> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part.trim_end_matches('='))
        .map_err(|_| TokenRejection::Malformed("not base64url".into()))?;
    match serde_json::from_slice(&bytes) {
        Ok(serde_json::Value::Object(map)) => Ok(map),
        _ => Err(TokenRejection::Malformed("not a JSON object".into())),
    }
}

/// The `kid` in a compact JWS's header, read before any verification (only
/// to choose or fetch keys).
pub fn unverified_kid(token: &str) -> Option<String> {
    let header = decode_json(token.split('.').next()?).ok()?;
    header.get("kid")?.as_str().map(str::to_string)
}

/// Whether `jwks` holds a key with this id.
pub fn jwks_has_kid(jwks: &CoreJsonWebKeySet, kid: &str) -> bool {
    jwks.keys()
        .iter()
        .any(|key| key.key_id().is_some_and(|key_id| key_id.as_str() == kid))
}

pub fn verify_jws(
    token: &str,
    jwks: &CoreJsonWebKeySet,
    allowed_algs: &[CoreJwsSigningAlgorithm],
) -> Result<VerifiedJws, TokenRejection> {
    let mut parts = token.split('.');
    let (Some(header_part), Some(claims_part), Some(signature_part), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenRejection::Malformed("not a compact JWS".into()));
    };
    let header = decode_json(header_part)?;
    let alg_name = header
        .get("alg")
        .and_then(|value| value.as_str())
        .ok_or_else(|| TokenRejection::Malformed("no alg".into()))?;
    let alg: CoreJwsSigningAlgorithm =
        serde_json::from_value(serde_json::Value::String(alg_name.to_string()))
            .map_err(|_| TokenRejection::Algorithm(alg_name.to_string()))?;
    if alg == CoreJwsSigningAlgorithm::None || !allowed_algs.contains(&alg) {
        return Err(TokenRejection::Algorithm(alg_name.to_string()));
    }
    let signature = URL_SAFE_NO_PAD
        .decode(signature_part)
        .map_err(|_| TokenRejection::Malformed("signature not base64url".into()))?;
    let kid = header.get("kid").and_then(|value| value.as_str());
    let candidates: Vec<_> = jwks
        .keys()
        .iter()
        .filter(|key| match (kid, key.key_id()) {
            (Some(kid), Some(key_id)) => key_id.as_str() == kid,
            (Some(_), None) => false,
            (None, _) => true,
        })
        .collect();
    if candidates.is_empty() {
        return Err(TokenRejection::UnknownKey);
    }
    let signing_input = &token[..header_part.len() + 1 + claims_part.len()];
    let verified = candidates.iter().any(|key| {
        ring_verifies(key, &alg, signing_input.as_bytes(), &signature)
            || key
                .verify_signature(&alg, signing_input.as_bytes(), &signature)
                .is_ok()
    });
    if !verified {
        return Err(TokenRejection::Signature(
            "no key verifies the signature".into(),
        ));
    }
    Ok(VerifiedJws {
        header,
        claims: decode_json(claims_part)?,
    })
}

/// RSASSA-PKCS1-v1_5 signatures checked with ring, which is several times
/// faster than the pure-Rust RSA behind openidconnect's keys (a bearer
/// token is verified on every request). Anything ring cannot take (other
/// algorithms, keys under 2048 bits) returns false and is left to
/// openidconnect, so what is accepted does not change, only how fast.
fn ring_verifies(
    key: &openidconnect::core::CoreJsonWebKey,
    alg: &CoreJwsSigningAlgorithm,
    message: &[u8],
    signature: &[u8],
) -> bool {
    let (parameters, alg_name) = match alg {
        CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256 => {
            (&ring::signature::RSA_PKCS1_2048_8192_SHA256, "RS256")
        }
        CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha384 => {
            (&ring::signature::RSA_PKCS1_2048_8192_SHA384, "RS384")
        }
        CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha512 => {
            (&ring::signature::RSA_PKCS1_2048_8192_SHA512, "RS512")
        }
        _ => return false,
    };
    let Ok(serde_json::Value::Object(jwk)) = serde_json::to_value(key) else {
        return false;
    };
    let text = |name: &str| jwk.get(name).and_then(|value| value.as_str());
    // The key must be RSA and, when it says so, meant for signatures with
    // this very algorithm (as openidconnect also requires).
    if text("kty") != Some("RSA")
        || text("use").is_some_and(|key_use| key_use != "sig")
        || text("alg").is_some_and(|key_alg| key_alg != alg_name)
    {
        return false;
    }
    let component = |name: &str| {
        text(name).and_then(|text| URL_SAFE_NO_PAD.decode(text.trim_end_matches('=')).ok())
    };
    let (Some(n), Some(e)) = (component("n"), component("e")) else {
        return false;
    };
    ring::signature::RsaPublicKeyComponents { n, e }
        .verify(parameters, message, signature)
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_checks_rsa_signatures_only_with_keys_meant_for_them() {
        let pair = crate::devop::keys::key_at(0).unwrap();
        let message = b"header.claims";
        let signature = pair.sign(message).unwrap();
        let jwk = |change: &dyn Fn(&mut serde_json::Value)| {
            let mut value = pair.public_jwk();
            change(&mut value);
            serde_json::from_value::<openidconnect::core::CoreJsonWebKey>(value).unwrap()
        };
        let rs256 = CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256;
        let plain = jwk(&|_| {});
        assert!(ring_verifies(&plain, &rs256, message, &signature));
        assert!(!ring_verifies(&plain, &rs256, b"header.other", &signature));
        let mut tampered = signature.clone();
        tampered[10] ^= 1;
        assert!(!ring_verifies(&plain, &rs256, message, &tampered));
        // A key marked for encryption, or for another algorithm, is not used.
        let encryption = jwk(&|value| value["use"] = "enc".into());
        assert!(!ring_verifies(&encryption, &rs256, message, &signature));
        let other_alg = jwk(&|value| value["alg"] = "RS512".into());
        assert!(!ring_verifies(&other_alg, &rs256, message, &signature));
        // openidconnect agrees on every case.
        assert!(plain.verify_signature(&rs256, message, &signature).is_ok());
        assert!(encryption
            .verify_signature(&rs256, message, &signature)
            .is_err());
        assert!(other_alg
            .verify_signature(&rs256, message, &signature)
            .is_err());
    }

    #[test]
    fn malformed_tokens_are_refused_before_any_key_is_tried() {
        let jwks = CoreJsonWebKeySet::new(vec![]);
        let algs = [CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256];
        assert!(matches!(
            verify_jws("a.b", &jwks, &algs),
            Err(TokenRejection::Malformed(_))
        ));
        assert!(matches!(
            verify_jws("a.b.c.d", &jwks, &algs),
            Err(TokenRejection::Malformed(_))
        ));
        let none_header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#);
        let claims = URL_SAFE_NO_PAD.encode(br#"{"sub":"x"}"#);
        assert!(matches!(
            verify_jws(&format!("{none_header}.{claims}."), &jwks, &algs),
            Err(TokenRejection::Algorithm(_))
        ));
        let hs_header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256"}"#);
        assert!(matches!(
            verify_jws(&format!("{hs_header}.{claims}.AAAA"), &jwks, &algs),
            Err(TokenRejection::Algorithm(_))
        ));
        let rs_header = URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256","kid":"k1"}"#);
        assert_eq!(
            verify_jws(&format!("{rs_header}.{claims}.AAAA"), &jwks, &algs).unwrap_err(),
            TokenRejection::UnknownKey
        );
    }
}
