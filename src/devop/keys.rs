//! RSA signing keys for the dev OP.
//!
//! Generating a 2048-bit RSA key takes a noticeable fraction of a second even with an optimised
//! `rsa` build, and the test suite starts many dev OPs. So keys come from one process-wide pool:
//! every dev OP starts with key 0, and each key rotation moves that dev OP to the next index,
//! generating keys only when the pool is short. A separate "stranger" key, never published in
//! any JWKS, backs the `UnknownKid` misbehaviour.

use std::sync::{Arc, Mutex, OnceLock};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use rsa::pkcs1v15::{Signature, VerifyingKey};
use rsa::pkcs8::EncodePrivateKey as _;
use rsa::signature::Verifier as _;
use rsa::traits::PublicKeyParts as _;
use rsa::RsaPrivateKey;
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};

/// Bits of every generated key.
const KEY_BITS: usize = 2048;

/// One RSA key with everything the dev OP needs precomputed.
pub(crate) struct KeyPair {
    /// The `kid`: a short base64url SHA-256 of the modulus.
    pub kid: String,
    /// ring's RSA signer: the dev OP signs every token it issues, and ring's
    /// signing is several times faster than the pure-Rust `rsa` crate's,
    /// which decided the login benchmark's throughput.
    signing_key: ring::rsa::KeyPair,
    verifying_key: VerifyingKey<Sha256>,
    modulus: String,
    exponent: String,
}

impl std::fmt::Debug for KeyPair {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("KeyPair")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl KeyPair {
    /// Wraps a private key, deriving the kid from the modulus.
    pub fn from_private_key(private_key: RsaPrivateKey) -> Result<KeyPair, rsa::Error> {
        let modulus_bytes = private_key.n().to_bytes_be();
        let exponent_bytes = private_key.e().to_bytes_be();
        let digest = Sha256::digest(&modulus_bytes);
        let mut kid = URL_SAFE_NO_PAD.encode(digest);
        kid.truncate(16);
        let public_key = private_key.to_public_key();
        let der = private_key.to_pkcs8_der().map_err(rsa::Error::Pkcs8)?;
        let signing_key =
            ring::rsa::KeyPair::from_pkcs8(der.as_bytes()).map_err(|_| rsa::Error::Internal)?;
        Ok(KeyPair {
            kid,
            signing_key,
            verifying_key: VerifyingKey::<Sha256>::new(public_key),
            modulus: URL_SAFE_NO_PAD.encode(modulus_bytes),
            exponent: URL_SAFE_NO_PAD.encode(exponent_bytes),
        })
    }

    /// RS256 (RSASSA-PKCS1-v1_5 with SHA-256) signature over `message`.
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, rsa::signature::Error> {
        let mut signature = vec![0; self.signing_key.public().modulus_len()];
        self.signing_key
            .sign(
                &ring::signature::RSA_PKCS1_SHA256,
                &ring::rand::SystemRandom::new(),
                message,
                &mut signature,
            )
            .map_err(|_| rsa::signature::Error::new())?;
        Ok(signature)
    }

    /// An RSA signature of `message` with `padding` (PKCS#1 v1.5 or PSS, any SHA-2).
    pub fn sign_with(
        &self,
        padding: &'static dyn ring::signature::RsaEncoding,
        message: &[u8],
    ) -> Result<Vec<u8>, rsa::signature::Error> {
        let mut signature = vec![0; self.signing_key.public().modulus_len()];
        self.signing_key
            .sign(
                padding,
                &ring::rand::SystemRandom::new(),
                message,
                &mut signature,
            )
            .map_err(|_| rsa::signature::Error::new())?;
        Ok(signature)
    }

    /// Whether `signature` is a valid RS256 signature of `message` by this key.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        match Signature::try_from(signature) {
            Ok(signature) => self.verifying_key.verify(message, &signature).is_ok(),
            Err(_) => false,
        }
    }

    /// The public key as an RFC 7517 JSON Web Key.
    pub fn public_jwk(&self) -> Value {
        json!({
            "kty": "RSA",
            "use": "sig",
            "alg": "RS256",
            "kid": self.kid,
            "n": self.modulus,
            "e": self.exponent,
        })
    }
}

/// Keys generated so far, shared by every dev OP in the process.
fn pool() -> &'static Mutex<Vec<Arc<KeyPair>>> {
    static POOL: OnceLock<Mutex<Vec<Arc<KeyPair>>>> = OnceLock::new();
    POOL.get_or_init(|| Mutex::new(Vec::new()))
}

/// Held while a key is generated, so concurrent callers do not generate the same index twice.
fn generation_lock() -> &'static Mutex<()> {
    static LOCK: OnceLock<Mutex<()>> = OnceLock::new();
    LOCK.get_or_init(|| Mutex::new(()))
}

fn generate() -> Result<KeyPair, rsa::Error> {
    let private_key = RsaPrivateKey::new(&mut rand::thread_rng(), KEY_BITS)?;
    KeyPair::from_private_key(private_key)
}

fn pooled(index: usize) -> Option<Arc<KeyPair>> {
    pool()
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .get(index)
        .cloned()
}

/// The pool's key at `index`, generating keys until the pool is long enough. Blocking: call it
/// from `spawn_blocking` or a plain thread when the key may not exist yet.
pub(crate) fn key_at(index: usize) -> Result<Arc<KeyPair>, rsa::Error> {
    if let Some(key) = pooled(index) {
        return Ok(key);
    }
    let _generating = generation_lock()
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    loop {
        if let Some(key) = pooled(index) {
            return Ok(key);
        }
        let key = Arc::new(generate()?);
        tracing::debug!(kid = %key.kid, "dev OP generated a signing key");
        pool()
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(key);
    }
}

/// Generates the pool's key at `index` on a background thread, so a later `key_at` is quick.
pub(crate) fn prepare_in_background(index: usize) {
    if pooled(index).is_some() {
        return;
    }
    let spawned = std::thread::Builder::new()
        .name("devop-keygen".to_owned())
        .spawn(move || {
            if let Err(error) = key_at(index) {
                tracing::warn!(%error, "dev OP could not generate a signing key");
            }
        });
    if let Err(error) = spawned {
        tracing::warn!(%error, "dev OP could not start its key generation thread");
    }
}

/// A key that no dev OP ever publishes (for `Misbehavior::UnknownKid`). Blocking on first use.
pub(crate) fn stranger_key() -> Result<Arc<KeyPair>, rsa::Error> {
    static STRANGER: OnceLock<Arc<KeyPair>> = OnceLock::new();
    if let Some(key) = STRANGER.get() {
        return Ok(key.clone());
    }
    let _generating = generation_lock()
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(key) = STRANGER.get() {
        return Ok(key.clone());
    }
    let mut key = generate()?;
    key.kid = format!("unknown-{}", key.kid);
    Ok(STRANGER.get_or_init(|| Arc::new(key)).clone())
}

/// Starts generating the stranger key on a background thread.
pub(crate) fn prepare_stranger_in_background() {
    let spawned = std::thread::Builder::new()
        .name("devop-keygen".to_owned())
        .spawn(|| {
            if let Err(error) = stranger_key() {
                tracing::warn!(%error, "dev OP could not generate the stranger key");
            }
        });
    if let Err(error) = spawned {
        tracing::warn!(%error, "dev OP could not start its key generation thread");
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly
mod tests {
    use super::*;

    #[test]
    fn pool_returns_the_same_key_for_an_index_and_distinct_keys_across_indexes() {
        let first = key_at(0).unwrap();
        let again = key_at(0).unwrap();
        let second = key_at(1).unwrap();
        assert!(Arc::ptr_eq(&first, &again));
        assert_ne!(first.kid, second.kid);
        assert_eq!(first.kid.len(), 16);
    }

    #[test]
    fn signature_verifies_with_the_same_key_only() {
        let key = key_at(0).unwrap();
        let other = key_at(1).unwrap();
        let signature = key.sign(b"message").unwrap();
        assert_eq!(signature.len(), 256);
        assert!(key.verify(b"message", &signature));
        assert!(!key.verify(b"messagf", &signature));
        assert!(!other.verify(b"message", &signature));
    }

    #[test]
    fn public_jwk_has_the_rfc7517_members() {
        let key = key_at(0).unwrap();
        let jwk = key.public_jwk();
        assert_eq!(jwk["kty"], "RSA");
        assert_eq!(jwk["use"], "sig");
        assert_eq!(jwk["alg"], "RS256");
        assert_eq!(jwk["kid"], key.kid.as_str());
        assert_eq!(jwk["e"], "AQAB");
        let modulus = URL_SAFE_NO_PAD.decode(jwk["n"].as_str().unwrap()).unwrap();
        assert_eq!(modulus.len(), 256);
    }

    #[test]
    fn stranger_key_is_never_a_pool_key() {
        let stranger = stranger_key().unwrap();
        assert!(stranger.kid.starts_with("unknown-"));
        assert_ne!(stranger.kid, key_at(0).unwrap().kid);
    }
}
