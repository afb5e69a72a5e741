//! Signing keys for every asymmetric JWS algorithm (RFC 7518 §3.1), so tests can
//! show portico verifies what real providers sign with: RS256/384/512 and
//! PS256/384/512 with the pool's RSA key, ES256/ES384 and EdDSA with ring, ES512
//! (P-521, which ring lacks) with the RustCrypto `p521` crate.
//!
//! Descope's own SDK tests sign with ES384 on P-384 (descope/go-sdk
//! `descope/internal/auth/auth_test.go`), and its SDKs take the algorithm from the
//! key's `alg` member (go-sdk `descope/internal/auth/jwt.go`, `selectKey`), so a
//! published key always names its algorithm here too.

use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use rand::RngCore as _;
use ring::signature::{self as ring_sig, KeyPair as _};
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};

use super::keys::{self, KeyPair};

/// An asymmetric JWS algorithm the dev OP can sign with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SigningAlg {
    Rs256,
    Rs384,
    Rs512,
    Ps256,
    Ps384,
    Ps512,
    Es256,
    Es384,
    Es512,
    EdDsa,
}

impl SigningAlg {
    pub const ALL: [SigningAlg; 10] = [
        SigningAlg::Rs256,
        SigningAlg::Rs384,
        SigningAlg::Rs512,
        SigningAlg::Ps256,
        SigningAlg::Ps384,
        SigningAlg::Ps512,
        SigningAlg::Es256,
        SigningAlg::Es384,
        SigningAlg::Es512,
        SigningAlg::EdDsa,
    ];

    /// The JOSE name ("RS256", "EdDSA", …).
    pub fn name(self) -> &'static str {
        match self {
            SigningAlg::Rs256 => "RS256",
            SigningAlg::Rs384 => "RS384",
            SigningAlg::Rs512 => "RS512",
            SigningAlg::Ps256 => "PS256",
            SigningAlg::Ps384 => "PS384",
            SigningAlg::Ps512 => "PS512",
            SigningAlg::Es256 => "ES256",
            SigningAlg::Es384 => "ES384",
            SigningAlg::Es512 => "ES512",
            SigningAlg::EdDsa => "EdDSA",
        }
    }
}

/// Why a key could not be made or used.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SignerError(String);

enum Secret {
    Rsa(Arc<KeyPair>, &'static dyn ring_sig::RsaEncoding),
    /// ring's ECDSA signer (P-256 or P-384, fixed-size R || S signatures).
    Ecdsa(ring_sig::EcdsaKeyPair),
    P521(Box<p521::ecdsa::SigningKey>),
    Ed25519(ring_sig::Ed25519KeyPair),
}

/// A signing key for one algorithm, with its public JWK.
pub struct AlgKey {
    alg: SigningAlg,
    kid: String,
    secret: Secret,
    public_jwk: Value,
}

impl std::fmt::Debug for AlgKey {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("AlgKey")
            .field("alg", &self.alg)
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A kid derived from the public key bytes, prefixed with the algorithm.
fn kid_for(alg: SigningAlg, public: &[u8]) -> String {
    let mut digest = b64(&Sha256::digest(public));
    digest.truncate(12);
    format!("{}-{digest}", alg.name().to_ascii_lowercase())
}

fn ec_jwk(alg: SigningAlg, curve: &str, point: &[u8], kid: &str) -> Value {
    // An uncompressed SEC1 point: 0x04 || X || Y, both of the same length.
    let coordinates = point.get(1..).unwrap_or_default();
    let (x, y) = coordinates.split_at(coordinates.len() / 2);
    json!({"kty": "EC", "crv": curve, "use": "sig", "alg": alg.name(), "kid": kid,
           "x": b64(x), "y": b64(y)})
}

impl AlgKey {
    /// A new key for `alg` (the RSA ones reuse the process-wide RSA key, so
    /// this may block while it is generated).
    pub fn new(alg: SigningAlg) -> Result<AlgKey, SignerError> {
        let rng = ring::rand::SystemRandom::new();
        let failed = |what: &str| SignerError(format!("{}: {what}", alg.name()));
        let ecdsa = |signing: &'static ring_sig::EcdsaSigningAlgorithm, curve: &str| {
            let document = ring_sig::EcdsaKeyPair::generate_pkcs8(signing, &rng)
                .map_err(|_| failed("key generation"))?;
            let pair = ring_sig::EcdsaKeyPair::from_pkcs8(signing, document.as_ref(), &rng)
                .map_err(|_| failed("key parsing"))?;
            let point = pair.public_key().as_ref().to_vec();
            let kid = kid_for(alg, &point);
            Ok::<_, SignerError>((
                kid.clone(),
                Secret::Ecdsa(pair),
                ec_jwk(alg, curve, &point, &kid),
            ))
        };
        let (kid, secret, public_jwk) = match alg {
            SigningAlg::Rs256
            | SigningAlg::Rs384
            | SigningAlg::Rs512
            | SigningAlg::Ps256
            | SigningAlg::Ps384
            | SigningAlg::Ps512 => {
                let pair = keys::key_at(0).map_err(|error| failed(&error.to_string()))?;
                let padding: &'static dyn ring_sig::RsaEncoding = match alg {
                    SigningAlg::Rs256 => &ring_sig::RSA_PKCS1_SHA256,
                    SigningAlg::Rs384 => &ring_sig::RSA_PKCS1_SHA384,
                    SigningAlg::Rs512 => &ring_sig::RSA_PKCS1_SHA512,
                    SigningAlg::Ps256 => &ring_sig::RSA_PSS_SHA256,
                    SigningAlg::Ps384 => &ring_sig::RSA_PSS_SHA384,
                    _ => &ring_sig::RSA_PSS_SHA512,
                };
                let kid = format!("{}-{}", pair.kid, alg.name().to_ascii_lowercase());
                let mut jwk = pair.public_jwk();
                jwk["alg"] = json!(alg.name());
                jwk["kid"] = json!(kid);
                (kid, Secret::Rsa(pair, padding), jwk)
            }
            SigningAlg::Es256 => ecdsa(&ring_sig::ECDSA_P256_SHA256_FIXED_SIGNING, "P-256")?,
            SigningAlg::Es384 => ecdsa(&ring_sig::ECDSA_P384_SHA384_FIXED_SIGNING, "P-384")?,
            SigningAlg::Es512 => {
                let key = loop {
                    // A P-521 scalar is 66 bytes below the group order; a top
                    // byte of 0 or 1 makes almost every draw valid.
                    let mut bytes = [0u8; 66];
                    rand::rngs::OsRng.fill_bytes(&mut bytes);
                    bytes[0] &= 0x01;
                    if let Ok(key) = p521::ecdsa::SigningKey::from_slice(&bytes) {
                        break key;
                    }
                };
                let point = key.verifying_key().to_sec1_point(false);
                let point = point.as_bytes().to_vec();
                let kid = kid_for(alg, &point);
                let jwk = ec_jwk(alg, "P-521", &point, &kid);
                (kid, Secret::P521(Box::new(key)), jwk)
            }
            SigningAlg::EdDsa => {
                let document = ring_sig::Ed25519KeyPair::generate_pkcs8(&rng)
                    .map_err(|_| failed("key generation"))?;
                let pair = ring_sig::Ed25519KeyPair::from_pkcs8(document.as_ref())
                    .map_err(|_| failed("key parsing"))?;
                let public = pair.public_key().as_ref().to_vec();
                let kid = kid_for(alg, &public);
                let jwk = json!({"kty": "OKP", "crv": "Ed25519", "use": "sig", "alg": "EdDSA",
                                 "kid": kid, "x": b64(&public)});
                (kid, Secret::Ed25519(pair), jwk)
            }
        };
        Ok(AlgKey {
            alg,
            kid,
            secret,
            public_jwk,
        })
    }

    pub fn alg(&self) -> SigningAlg {
        self.alg
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public key as an RFC 7517 JWK naming its `alg`.
    pub fn public_jwk(&self) -> Value {
        self.public_jwk.clone()
    }

    /// The JWS signature of `message` (RFC 7518 §3: ECDSA as R || S).
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, SignerError> {
        let rng = ring::rand::SystemRandom::new();
        let failed = || SignerError(format!("{}: signing failed", self.alg.name()));
        match &self.secret {
            Secret::Rsa(pair, padding) => pair.sign_with(*padding, message).map_err(|_| failed()),
            Secret::Ecdsa(pair) => pair
                .sign(&rng, message)
                .map(|signature| signature.as_ref().to_vec())
                .map_err(|_| failed()),
            Secret::P521(key) => {
                use p521::ecdsa::signature::Signer as _;
                let signature: p521::ecdsa::Signature = key.sign(message);
                Ok(signature.to_bytes().to_vec())
            }
            Secret::Ed25519(pair) => Ok(pair.sign(message).as_ref().to_vec()),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn each_key_names_its_algorithm_and_a_distinct_kid() {
        let keys: Vec<AlgKey> = SigningAlg::ALL
            .iter()
            .map(|alg| AlgKey::new(*alg).unwrap())
            .collect();
        let kids: std::collections::BTreeSet<_> = keys.iter().map(|key| key.kid()).collect();
        assert_eq!(kids.len(), keys.len());
        for key in &keys {
            assert_eq!(key.public_jwk()["alg"], key.alg().name());
            assert_eq!(key.public_jwk()["kid"], key.kid());
            assert_eq!(key.public_jwk()["use"], "sig");
        }
        let p521 = AlgKey::new(SigningAlg::Es512).unwrap();
        assert_eq!(p521.sign(b"m").unwrap().len(), 132);
        let p384 = AlgKey::new(SigningAlg::Es384).unwrap();
        assert_eq!(p384.sign(b"m").unwrap().len(), 96);
    }
}
