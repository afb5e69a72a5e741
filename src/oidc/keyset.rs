//! A JWK Set as portico checks signatures with it: parsed once, when it is
//! fetched, never per token.
//!
//! Each key's JSON members (for [`key_fits`]), the algorithms it may check
//! and its public numbers ([`KeyMaterial`]) are worked out here, so that a
//! sign-in, a bearer request or a logout token only compares a `kid` and
//! runs the signature check. The set as openidconnect parsed it stays
//! available ([`KeySet::set`]) for what openidconnect itself needs.

use openidconnect::core::{CoreJsonWebKey, CoreJsonWebKeySet};
use openidconnect::JsonWebKey;
use serde_json::{Map, Value};

use super::algorithms::{key_fits, KeyMaterial, ASYMMETRIC_ALGORITHMS};

/// One key of the set, ready to check signatures.
#[derive(Debug)]
pub(crate) struct ParsedKey {
    pub(crate) kid: Option<String>,
    /// Which of [`ASYMMETRIC_ALGORITHMS`] this key may check (bit i: the
    /// i-th), by its type, curve, `use` and `alg` ([`key_fits`]).
    fits: u16,
    pub(crate) material: KeyMaterial,
    /// The key as openidconnect reads it (RSA keys under 2048 bits, which
    /// ring refuses, are still checked with it).
    pub(crate) source: CoreJsonWebKey,
    /// An RSA key: the one type openidconnect's own check is tried for.
    pub(crate) is_rsa: bool,
}

impl ParsedKey {
    fn new(key: &CoreJsonWebKey) -> ParsedKey {
        let jwk = match serde_json::to_value(key) {
            Ok(Value::Object(map)) => map,
            _ => Map::new(),
        };
        let fits = ASYMMETRIC_ALGORITHMS
            .iter()
            .enumerate()
            .filter(|(_, alg)| key_fits(&jwk, alg))
            .fold(0u16, |bits, (index, _)| bits | (1 << index));
        ParsedKey {
            kid: key.key_id().map(|kid| kid.as_str().to_string()),
            fits,
            material: KeyMaterial::from_jwk(&jwk),
            source: key.clone(),
            is_rsa: jwk.get("kty").and_then(Value::as_str) == Some("RSA"),
        }
    }

    /// Whether this key may check a signature made with `alg` (see [`key_fits`]).
    pub(crate) fn fits(&self, alg: &str) -> bool {
        ASYMMETRIC_ALGORITHMS
            .iter()
            .position(|known| *known == alg)
            .is_some_and(|index| self.fits & (1 << index) != 0)
    }
}

/// A provider's (or another issuer's) JWK Set, parsed.
#[derive(Debug)]
pub struct KeySet {
    set: CoreJsonWebKeySet,
    keys: Vec<ParsedKey>,
}

impl KeySet {
    pub fn new(set: CoreJsonWebKeySet) -> KeySet {
        let keys = set.keys().iter().map(ParsedKey::new).collect();
        KeySet { set, keys }
    }

    /// The set as openidconnect parsed it.
    pub fn set(&self) -> &CoreJsonWebKeySet {
        &self.set
    }

    /// Whether the set holds a key with this id.
    pub fn has_kid(&self, kid: &str) -> bool {
        self.keys.iter().any(|key| key.kid.as_deref() == Some(kid))
    }

    /// The keys a token naming `kid` (or none) may have been signed with:
    /// with a kid, only keys with that id; without one, every key.
    pub(crate) fn candidates<'a>(
        &'a self,
        kid: Option<&'a str>,
    ) -> impl Iterator<Item = &'a ParsedKey> + 'a {
        self.keys.iter().filter(move |key| match (kid, &key.kid) {
            (Some(kid), Some(key_id)) => key_id == kid,
            (Some(_), None) => false,
            (None, _) => true,
        })
    }

    /// How many keys may check a signature made with `alg`.
    pub(crate) fn fitting(&self, alg: &str) -> usize {
        self.keys.iter().filter(|key| key.fits(alg)).count()
    }
}

impl From<CoreJsonWebKeySet> for KeySet {
    fn from(set: CoreJsonWebKeySet) -> KeySet {
        KeySet::new(set)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::devop::{AlgKey, SigningAlg};
    use serde_json::json;

    fn set(keys: Vec<Value>) -> KeySet {
        let set: CoreJsonWebKeySet = serde_json::from_value(json!({ "keys": keys })).unwrap();
        KeySet::new(set)
    }

    #[test]
    fn each_key_fits_exactly_the_algorithms_key_fits_allows() {
        let keys: Vec<Value> = SigningAlg::ALL
            .iter()
            .map(|alg| AlgKey::new(*alg).unwrap().public_jwk())
            .collect();
        let parsed = set(keys.clone());
        for (key, jwk) in parsed.keys.iter().zip(&keys) {
            let jwk = jwk.as_object().unwrap();
            for alg in ASYMMETRIC_ALGORITHMS
                .iter()
                .chain(&["HS256", "none", "RS1"])
            {
                assert_eq!(key.fits(alg), key_fits(jwk, alg), "{jwk:?} {alg}");
            }
            assert_eq!(key.material, KeyMaterial::from_jwk(jwk));
            assert_ne!(key.material, KeyMaterial::Unusable);
        }
    }

    #[test]
    fn candidates_follow_the_kid() {
        let rsa = AlgKey::new(SigningAlg::Rs256).unwrap().public_jwk();
        let mut first = rsa.clone();
        first["kid"] = json!("one");
        let mut second = rsa.clone();
        second["kid"] = json!("two");
        let mut unnamed = rsa;
        unnamed.as_object_mut().unwrap().remove("kid");
        let parsed = set(vec![first, second, unnamed]);
        assert!(parsed.has_kid("one") && parsed.has_kid("two"));
        assert!(!parsed.has_kid("three"));
        let named: Vec<_> = parsed.candidates(Some("two")).collect();
        assert_eq!(named.len(), 1);
        assert_eq!(named[0].kid.as_deref(), Some("two"));
        assert_eq!(parsed.candidates(Some("three")).count(), 0);
        assert_eq!(parsed.candidates(None).count(), 3);
        assert_eq!(parsed.fitting("RS256"), 3);
        assert_eq!(parsed.fitting("ES256"), 0);
    }

    #[test]
    fn a_key_with_undecodable_numbers_is_unusable_and_verifies_nothing() {
        let parsed = set(vec![
            json!({"kty": "EC", "crv": "P-256", "x": "!!", "y": "!!"}),
        ]);
        // openidconnect may refuse such a key outright; if it keeps it, it
        // must be unusable.
        for key in &parsed.keys {
            assert_eq!(key.material, KeyMaterial::Unusable);
            assert!(!key.material.verifies("ES256", b"m", b"s"));
        }
    }
}
