//! Compact JWS verification against the provider's JWKS, for tokens that
//! are not ID tokens (logout tokens now; bearer access tokens later).
//!
//! The algorithm comes from an allow-list (asymmetric only: never `none`,
//! never HMAC), the key is chosen by `kid` and must fit the algorithm's key
//! type and curve, and the signature is checked by `algorithms`. ID tokens
//! go through here too, so every token portico takes is checked one way.
//! Claims are returned as JSON for the caller to judge.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use openidconnect::core::{CoreJsonWebKeySet, CoreJwsSigningAlgorithm};
use openidconnect::JsonWebKey;

use super::algorithms::{key_fits, signature_verifies, ASYMMETRIC_ALGORITHMS};
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

/// An ID token without `kid` when more than one key of the JWK Set fits its
/// algorithm: refused as ambiguous. OpenID Connect Core §10.1 requires a
/// `kid` whenever the set holds several keys, and the RP certification case
/// `rp-id_token-kid-absent-multiple-jwks` allows refusing; portico does not
/// try each key in turn. With one fitting key, or a `kid`, this passes.
pub fn refuse_ambiguous_missing_kid(
    token: &str,
    jwks: &CoreJsonWebKeySet,
) -> Result<(), TokenRejection> {
    let Some(header) = token
        .split('.')
        .next()
        .and_then(|part| decode_json(part).ok())
    else {
        return Ok(()); // malformed: verify_jws says so
    };
    if header.get("kid").is_some() {
        return Ok(());
    }
    let Some(alg_name) = header.get("alg").and_then(|value| value.as_str()) else {
        return Ok(());
    };
    let fitting = jwks
        .keys()
        .iter()
        .filter_map(|key| match serde_json::to_value(key) {
            Ok(serde_json::Value::Object(jwk)) => Some(jwk),
            _ => None,
        })
        .filter(|jwk| key_fits(jwk, alg_name))
        .count();
    if fitting > 1 {
        return Err(TokenRejection::AmbiguousKey);
    }
    Ok(())
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
    // `none` and HMAC are never checked with a provider's (public) keys,
    // whatever the allow-list says.
    if !ASYMMETRIC_ALGORITHMS.contains(&alg_name) || !allowed_algs.contains(&alg) {
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
    let verified = candidates
        .iter()
        .any(|key| key_verifies(key, alg_name, &alg, signing_input.as_bytes(), &signature));
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

/// Whether `key` checks `signature` under `alg`: only a key whose type and
/// curve fit the algorithm (see `algorithms`). RSA keys under 2048 bits, which
/// ring refuses, are still checked by openidconnect's own RSA code.
fn key_verifies(
    key: &openidconnect::core::CoreJsonWebKey,
    alg_name: &str,
    alg: &CoreJwsSigningAlgorithm,
    message: &[u8],
    signature: &[u8],
) -> bool {
    let Ok(serde_json::Value::Object(jwk)) = serde_json::to_value(key) else {
        return false;
    };
    if !key_fits(&jwk, alg_name) {
        return false;
    }
    signature_verifies(&jwk, alg_name, message, signature)
        || (jwk.get("kty").and_then(|kty| kty.as_str()) == Some("RSA")
            && key.verify_signature(alg, message, signature).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

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
