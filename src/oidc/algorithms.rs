//! Which key may check which signature, and the check itself.
//!
//! Every asymmetric JWS algorithm of RFC 7518 §3.1 is supported: RS256/384/512
//! (RSASSA-PKCS1-v1_5), PS256/384/512 (RSASSA-PSS), ES256/384/512 (ECDSA on
//! P-256, P-384 and P-521) and EdDSA (Ed25519, RFC 8037). A key is used only
//! for the algorithm its type and curve fit (an RSA key never checks an ES256
//! signature, a P-256 key never an ES384 one), only when it is a signing key
//! (`use` absent or "sig") and only when its own `alg`, if it names one, is the
//! token's. HMAC and `none` are never checked here: a provider's published keys
//! are public, so an HMAC "key" from a JWKS would let anyone sign.
//!
//! RSA is aws-lc-rs, with each key parsed once and kept ([`RsaVerifiers`]):
//! ring 0.17 offers no way to keep a parsed RSA public key, and setting up the
//! modulus again for every signature was a third of ring's RSA check. ring does
//! P-256, P-384 and Ed25519; P-521, which ring lacks, is the RustCrypto `p521`
//! crate.

use std::sync::OnceLock;

use aws_lc_rs::signature::{self as aws_sig, ParsedPublicKey, RsaParameters};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{Map, Value};

/// The JOSE names of every algorithm portico verifies with a provider's keys.
pub const ASYMMETRIC_ALGORITHMS: &[&str] = &[
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA",
];

/// The key type (and curve) an algorithm needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyShape {
    Rsa,
    Ec(&'static str),
    Okp(&'static str),
}

fn shape_for(alg: &str) -> Option<KeyShape> {
    Some(match alg {
        "RS256" | "RS384" | "RS512" | "PS256" | "PS384" | "PS512" => KeyShape::Rsa,
        "ES256" => KeyShape::Ec("P-256"),
        "ES384" => KeyShape::Ec("P-384"),
        "ES512" => KeyShape::Ec("P-521"),
        "EdDSA" => KeyShape::Okp("Ed25519"),
        _ => return None,
    })
}

fn text<'a>(jwk: &'a Map<String, Value>, name: &str) -> Option<&'a str> {
    jwk.get(name).and_then(Value::as_str)
}

fn bytes(jwk: &Map<String, Value>, name: &str) -> Option<Vec<u8>> {
    text(jwk, name).and_then(|text| URL_SAFE_NO_PAD.decode(text.trim_end_matches('=')).ok())
}

/// Whether `jwk` may check a signature made with `alg`: a signing key of the
/// type and curve the algorithm needs, whose own `alg` (when given) is `alg`.
pub fn key_fits(jwk: &Map<String, Value>, alg: &str) -> bool {
    let Some(shape) = shape_for(alg) else {
        return false;
    };
    if text(jwk, "use").is_some_and(|key_use| key_use != "sig")
        || text(jwk, "alg").is_some_and(|key_alg| key_alg != alg)
    {
        return false;
    }
    match shape {
        KeyShape::Rsa => text(jwk, "kty") == Some("RSA"),
        KeyShape::Ec(curve) => text(jwk, "kty") == Some("EC") && text(jwk, "crv") == Some(curve),
        KeyShape::Okp(curve) => text(jwk, "kty") == Some("OKP") && text(jwk, "crv") == Some(curve),
    }
}

/// Whether `signature` over `message` checks out with `jwk` under `alg`.
/// False for any key that does not fit the algorithm (see [`key_fits`]).
pub fn signature_verifies(
    jwk: &Map<String, Value>,
    alg: &str,
    message: &[u8],
    signature: &[u8],
) -> bool {
    key_fits(jwk, alg) && KeyMaterial::from_jwk(jwk).verifies(alg, message, signature)
}

/// A key's public numbers, decoded from its JWK once (when the JWK Set is
/// fetched, see `keyset`), so that checking a signature decodes nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum KeyMaterial {
    /// RSA modulus and exponent, big-endian, and the key as aws-lc-rs parses
    /// them (built on first use, for each algorithm).
    Rsa {
        n: Vec<u8>,
        e: Vec<u8>,
        parsed: Box<RsaVerifiers>,
    },
    /// An uncompressed EC point (0x04 || x || y).
    EcPoint(Vec<u8>),
    /// An OKP public key (Ed25519's `x`).
    Okp(Vec<u8>),
    /// Not a key type portico verifies with, or its numbers do not decode.
    Unusable,
}

impl KeyMaterial {
    pub(crate) fn from_jwk(jwk: &Map<String, Value>) -> KeyMaterial {
        let decoded = match text(jwk, "kty") {
            Some("RSA") => bytes(jwk, "n")
                .zip(bytes(jwk, "e"))
                .map(|(n, e)| KeyMaterial::Rsa {
                    n,
                    e,
                    parsed: Box::default(),
                }),
            Some("EC") => bytes(jwk, "x").zip(bytes(jwk, "y")).map(|(x, y)| {
                let mut point = Vec::with_capacity(1 + x.len() + y.len());
                point.push(0x04);
                point.extend_from_slice(&x);
                point.extend_from_slice(&y);
                KeyMaterial::EcPoint(point)
            }),
            Some("OKP") => bytes(jwk, "x").map(KeyMaterial::Okp),
            _ => None,
        };
        decoded.unwrap_or(KeyMaterial::Unusable)
    }

    /// Whether `signature` over `message` checks out under `alg` with these
    /// numbers. The caller has checked that the key fits `alg`
    /// ([`key_fits`]); numbers of another shape never verify.
    pub(crate) fn verifies(&self, alg: &str, message: &[u8], signature: &[u8]) -> bool {
        use ring::signature as ring_sig;
        let rsa = |index: usize| match self {
            KeyMaterial::Rsa { n, e, parsed } => parsed.verifies(index, n, e, message, signature),
            _ => false,
        };
        let ring_key = |algorithm: &'static dyn ring_sig::VerificationAlgorithm,
                        key: Option<&[u8]>| {
            key.is_some_and(|key| {
                ring_sig::UnparsedPublicKey::new(algorithm, key)
                    .verify(message, signature)
                    .is_ok()
            })
        };
        let ec_point = || match self {
            KeyMaterial::EcPoint(point) => Some(point.as_slice()),
            _ => None,
        };
        match alg {
            "RS256" => rsa(0),
            "RS384" => rsa(1),
            "RS512" => rsa(2),
            "PS256" => rsa(3),
            "PS384" => rsa(4),
            "PS512" => rsa(5),
            "ES256" => ring_key(&ring_sig::ECDSA_P256_SHA256_FIXED, ec_point()),
            "ES384" => ring_key(&ring_sig::ECDSA_P384_SHA384_FIXED, ec_point()),
            "ES512" => p521_verifies(ec_point(), message, signature),
            "EdDSA" => match self {
                KeyMaterial::Okp(x) => ring_key(&ring_sig::ED25519, Some(x)),
                _ => false,
            },
            _ => false,
        }
    }
}

/// The RSA algorithms, in the order of [`ASYMMETRIC_ALGORITHMS`]: PKCS#1
/// v1.5 and PSS (salt as long as the digest, RFC 7518 §3.5), keys of 2048 to
/// 8192 bits.
const RSA_PARAMETERS: [&RsaParameters; 6] = [
    &aws_sig::RSA_PKCS1_2048_8192_SHA256,
    &aws_sig::RSA_PKCS1_2048_8192_SHA384,
    &aws_sig::RSA_PKCS1_2048_8192_SHA512,
    &aws_sig::RSA_PSS_2048_8192_SHA256,
    &aws_sig::RSA_PSS_2048_8192_SHA384,
    &aws_sig::RSA_PSS_2048_8192_SHA512,
];

/// An RSA key as aws-lc-rs parsed it, once per algorithm (an aws-lc-rs key
/// is bound to one), on the first signature checked with it; the parsed key
/// keeps the modulus' Montgomery constants from one signature to the next.
/// None: aws-lc-rs refused the numbers, and they verify nothing.
#[derive(Clone, Default)]
pub(crate) struct RsaVerifiers([OnceLock<Option<ParsedPublicKey>>; 6]);

impl RsaVerifiers {
    fn verifies(&self, index: usize, n: &[u8], e: &[u8], message: &[u8], signature: &[u8]) -> bool {
        let (Some(slot), Some(parameters)) = (self.0.get(index), RSA_PARAMETERS.get(index)) else {
            return false;
        };
        slot.get_or_init(|| {
            aws_sig::RsaPublicKeyComponents { n, e }
                .to_parsed_public_key(parameters)
                .ok()
        })
        .as_ref()
        .is_some_and(|key| key.verify_sig(message, signature).is_ok())
    }
}

/// What is parsed follows from `n` and `e`: two keys with the same numbers
/// are the same key, whatever either has parsed so far.
impl PartialEq for RsaVerifiers {
    fn eq(&self, _: &RsaVerifiers) -> bool {
        true
    }
}
impl Eq for RsaVerifiers {}

impl std::fmt::Debug for RsaVerifiers {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("RsaVerifiers")
            .finish_non_exhaustive()
    }
}

/// ES512: ECDSA on P-521 with SHA-512, the signature as R || S (RFC 7518 §3.4).
fn p521_verifies(point: Option<&[u8]>, message: &[u8], signature: &[u8]) -> bool {
    use p521::ecdsa::signature::Verifier as _;
    let Some(point) = point else {
        return false;
    };
    let (Ok(key), Ok(signature)) = (
        p521::ecdsa::VerifyingKey::from_sec1_bytes(point),
        p521::ecdsa::Signature::from_slice(signature),
    ) else {
        return false;
    };
    key.verify(message, &signature).is_ok()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::devop::{AlgKey, SigningAlg};
    use serde_json::json;

    fn object(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn every_algorithm_verifies_with_its_own_key_and_nothing_else() {
        let signers: Vec<AlgKey> = SigningAlg::ALL
            .iter()
            .map(|alg| AlgKey::new(*alg).unwrap())
            .collect();
        for signer in &signers {
            let alg = signer.alg().name();
            let message = b"header.claims";
            let signature = signer.sign(message).unwrap();
            let jwk = object(signer.public_jwk());
            assert!(signature_verifies(&jwk, alg, message, &signature), "{alg}");
            assert!(
                !signature_verifies(&jwk, alg, b"header.other", &signature),
                "{alg} accepted another message"
            );
            let mut tampered = signature.clone();
            tampered[4] ^= 1;
            assert!(!signature_verifies(&jwk, alg, message, &tampered), "{alg}");
            // No other algorithm's key checks this signature: keys of
            // another type or curve not even without their `alg` member; the
            // RSA keys (one key pair under six names here) by their `alg`.
            for other in &signers {
                if other.alg() == signer.alg() {
                    continue;
                }
                let mut other_jwk = object(other.public_jwk());
                let both_rsa = other_jwk["kty"] == "RSA" && jwk["kty"] == "RSA";
                if !both_rsa {
                    other_jwk.remove("alg");
                }
                assert!(
                    !signature_verifies(&other_jwk, alg, message, &signature),
                    "{alg} verified with a {} key",
                    other.alg().name()
                );
            }
        }
    }

    #[test]
    fn an_rsa_key_parsed_once_checks_signature_after_signature() {
        let signer = AlgKey::new(SigningAlg::Rs256).unwrap();
        let material = KeyMaterial::from_jwk(&object(signer.public_jwk()));
        for message in [&b"first.token"[..], b"second.token", b"first.token"] {
            let signature = signer.sign(message).unwrap();
            assert!(material.verifies("RS256", message, &signature));
            assert!(!material.verifies("RS256", b"other", &signature));
            // The same key under another algorithm is another parsed key.
            assert!(!material.verifies("PS256", message, &signature));
            assert!(!material.verifies("RS384", message, &signature));
            let mut tampered = signature.clone();
            tampered[10] ^= 1;
            assert!(!material.verifies("RS256", message, &tampered));
        }
        // A clone keeps what was parsed and still checks the same way.
        let copy = material.clone();
        let signature = signer.sign(b"third").unwrap();
        assert!(copy.verifies("RS256", b"third", &signature));
        assert_eq!(copy, material);
    }

    #[test]
    fn rsa_numbers_aws_lc_refuses_verify_nothing() {
        let signer = AlgKey::new(SigningAlg::Rs256).unwrap();
        let signature = signer.sign(b"m").unwrap();
        let KeyMaterial::Rsa { n, e, .. } = KeyMaterial::from_jwk(&object(signer.public_jwk()))
        else {
            panic!("an RSA key")
        };
        let mut padded = vec![0u8];
        padded.extend_from_slice(&n);
        for (n, e) in [(padded, e.clone()), (n[..128].to_vec(), e), (n, vec![])] {
            let material = KeyMaterial::Rsa {
                n,
                e,
                parsed: Box::default(),
            };
            assert!(!material.verifies("RS256", b"m", &signature));
            assert!(
                !material.verifies("RS256", b"m", &signature),
                "refused twice"
            );
        }
    }

    #[test]
    fn keys_fit_only_their_type_curve_use_and_alg() {
        let p256 = json!({"kty": "EC", "crv": "P-256", "x": "", "y": ""});
        assert!(key_fits(&object(p256.clone()), "ES256"));
        assert!(!key_fits(&object(p256.clone()), "ES384"));
        assert!(!key_fits(&object(p256), "RS256"));
        let rsa = json!({"kty": "RSA", "n": "", "e": "", "alg": "PS256"});
        assert!(key_fits(&object(rsa.clone()), "PS256"));
        assert!(!key_fits(&object(rsa), "RS256"));
        let encryption = json!({"kty": "RSA", "n": "", "e": "", "use": "enc"});
        assert!(!key_fits(&object(encryption), "RS256"));
        let ed448 = json!({"kty": "OKP", "crv": "Ed448", "x": ""});
        assert!(!key_fits(&object(ed448), "EdDSA"));
        let oct = json!({"kty": "oct", "k": "c2VjcmV0"});
        for alg in ["HS256", "HS384", "HS512", "none"] {
            assert!(!key_fits(&object(oct.clone()), alg));
        }
    }
}
