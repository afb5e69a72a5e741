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
use openidconnect::core::CoreJwsSigningAlgorithm;
use openidconnect::JsonWebKey;

use super::algorithms::ASYMMETRIC_ALGORITHMS;
use super::keyset::{KeySet, ParsedKey};
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

/// Whether `keys` holds a key with this id.
pub fn jwks_has_kid(keys: &KeySet, kid: &str) -> bool {
    keys.has_kid(kid)
}

/// A compact JWS split into its parts, its header decoded (once).
pub(crate) struct CompactJws<'t> {
    pub(crate) header: serde_json::Map<String, serde_json::Value>,
    claims_part: &'t str,
    signature_part: &'t str,
    /// `header.claims`, what the signature covers.
    signing_input: &'t str,
}

impl<'t> CompactJws<'t> {
    pub(crate) fn parse(token: &'t str) -> Result<CompactJws<'t>, TokenRejection> {
        let mut parts = token.split('.');
        let (Some(header_part), Some(claims_part), Some(signature_part), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenRejection::Malformed("not a compact JWS".into()));
        };
        Ok(CompactJws {
            header: decode_json(header_part)?,
            claims_part,
            signature_part,
            signing_input: &token[..header_part.len() + 1 + claims_part.len()],
        })
    }

    pub(crate) fn alg(&self) -> Option<&str> {
        self.header.get("alg").and_then(|value| value.as_str())
    }

    fn kid(&self) -> Option<&str> {
        self.header.get("kid").and_then(|value| value.as_str())
    }

    /// The claims, decoded (not verified by this call).
    pub(crate) fn claims(
        &self,
    ) -> Result<serde_json::Map<String, serde_json::Value>, TokenRejection> {
        decode_json(self.claims_part)
    }
}

/// An ID token without `kid` when more than one key of the JWK Set fits its
/// algorithm: refused as ambiguous. OpenID Connect Core §10.1 requires a
/// `kid` whenever the set holds several keys, and the RP certification case
/// `rp-id_token-kid-absent-multiple-jwks` allows refusing; portico does not
/// try each key in turn. With one fitting key, or a `kid`, this passes.
pub(crate) fn refuse_ambiguous_missing_kid(
    jws: &CompactJws<'_>,
    keys: &KeySet,
) -> Result<(), TokenRejection> {
    if jws.header.get("kid").is_some() {
        return Ok(());
    }
    let Some(alg_name) = jws.alg() else {
        return Ok(()); // malformed: the signature check says so
    };
    if keys.fitting(alg_name) > 1 {
        return Err(TokenRejection::AmbiguousKey);
    }
    Ok(())
}

pub fn verify_jws(
    token: &str,
    keys: &KeySet,
    allowed_algs: &[CoreJwsSigningAlgorithm],
) -> Result<VerifiedJws, TokenRejection> {
    let jws = CompactJws::parse(token)?;
    verify_signature(&jws, keys, allowed_algs)?;
    let claims = jws.claims()?;
    Ok(VerifiedJws {
        header: jws.header,
        claims,
    })
}

/// Checks the signature of a split JWS: an asymmetric algorithm on the
/// allow-list, a key chosen by `kid` that fits it, the signature valid.
pub(crate) fn verify_signature(
    jws: &CompactJws<'_>,
    keys: &KeySet,
    allowed_algs: &[CoreJwsSigningAlgorithm],
) -> Result<(), TokenRejection> {
    let alg_name = jws
        .alg()
        .ok_or_else(|| TokenRejection::Malformed("no alg".into()))?;
    // `none` and HMAC are never checked with a provider's (public) keys,
    // whatever the allow-list says.
    let alg = ASYMMETRIC_ALGORITHMS
        .contains(&alg_name)
        .then(|| parse_alg(alg_name))
        .flatten()
        .filter(|alg| allowed_algs.contains(alg))
        .ok_or_else(|| TokenRejection::Algorithm(alg_name.to_string()))?;
    let signature = URL_SAFE_NO_PAD
        .decode(jws.signature_part)
        .map_err(|_| TokenRejection::Malformed("signature not base64url".into()))?;
    let mut candidates = keys.candidates(jws.kid()).peekable();
    if candidates.peek().is_none() {
        return Err(TokenRejection::UnknownKey);
    }
    let message = jws.signing_input.as_bytes();
    let verified = candidates.any(|key| key_verifies(key, alg_name, &alg, message, &signature));
    if !verified {
        return Err(TokenRejection::Signature(
            "no key verifies the signature".into(),
        ));
    }
    Ok(())
}

/// The algorithm named `name` (a JOSE name), as openidconnect spells it.
fn parse_alg(name: &str) -> Option<CoreJwsSigningAlgorithm> {
    serde_json::from_value(serde_json::Value::String(name.to_string())).ok()
}

/// Whether `key` checks `signature` under `alg`: only a key whose type and
/// curve fit the algorithm (see `algorithms`). RSA keys under 2048 bits, which
/// ring refuses, are still checked by openidconnect's own RSA code.
fn key_verifies(
    key: &ParsedKey,
    alg_name: &str,
    alg: &CoreJwsSigningAlgorithm,
    message: &[u8],
    signature: &[u8],
) -> bool {
    if !key.fits(alg_name) {
        return false;
    }
    key.material.verifies(alg_name, message, signature)
        || (key.is_rsa && key.source.verify_signature(alg, message, signature).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_tokens_are_refused_before_any_key_is_tried() {
        let jwks = KeySet::new(openidconnect::core::CoreJsonWebKeySet::new(vec![]));
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
