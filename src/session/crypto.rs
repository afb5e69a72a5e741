//! Keys derived once from `cookie_secret`, and sealing of values at rest.
//!
//! One secret feeds two independent keys through HKDF-SHA256: the cookie key
//! (AES-GCM via the `cookie` crate's private jar, which also authenticates the
//! cookie name) and the key that seals tokens inside the session record, so a
//! Redis dump reveals no token. Deriving happens once, in `build()`, never per
//! request.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hkdf::Hkdf;
use rand::RngCore;
use sha2::Sha256;

const TOKEN_AAD: &[u8] = b"portico tokens v1";

/// The keys portico uses, derived from the configured secret.
#[derive(Clone)]
pub struct Keys {
    pub cookie: cookie::Key,
    sealing: Aes256Gcm,
    csrf: [u8; 32],
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SealError {
    #[error("sealed value is not valid base64")]
    Encoding,
    #[error("sealed value is too short")]
    Truncated,
    #[error("sealed value failed authentication (wrong key or tampered)")]
    Authentication,
}

impl Keys {
    /// Derives the keys. `secret` is at least 32 bytes (validated by config).
    pub fn derive(secret: &[u8]) -> Keys {
        let hkdf = Hkdf::<Sha256>::new(Some(b"portico"), secret);
        let mut cookie_bytes = [0u8; 64];
        let mut sealing_bytes = [0u8; 32];
        let mut csrf = [0u8; 32];
        // HKDF-SHA256 can produce up to 8160 bytes; 64 and 32 never fail.
        let _ = hkdf.expand(b"cookie encryption", &mut cookie_bytes);
        let _ = hkdf.expand(b"token sealing", &mut sealing_bytes);
        let _ = hkdf.expand(b"csrf tokens", &mut csrf);
        Keys {
            cookie: cookie::Key::from(&cookie_bytes),
            sealing: Aes256Gcm::new(&sealing_bytes.into()),
            csrf,
        }
    }

    /// The CSRF token for forms of the session `session_id`: an HMAC of the
    /// id, so it needs no storage and is worthless for any other session.
    pub fn csrf_token(&self, session_id: &str) -> String {
        use hmac::Mac;
        let mut mac = match <hmac::Hmac<Sha256> as Mac>::new_from_slice(&self.csrf) {
            Ok(mac) => mac,
            Err(_) => return String::new(),
        };
        mac.update(session_id.as_bytes());
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    }

    /// Compares a submitted CSRF token with the expected one in constant time.
    pub fn csrf_matches(&self, session_id: &str, submitted: &str) -> bool {
        let expected = self.csrf_token(session_id);
        expected.len() == submitted.len()
            && expected
                .bytes()
                .zip(submitted.bytes())
                .fold(0u8, |difference, (left, right)| difference | (left ^ right))
                == 0
    }

    /// Encrypts and authenticates `plaintext`; returns base64url(nonce ‖ ciphertext).
    pub fn seal(&self, plaintext: &[u8]) -> String {
        let mut nonce = [0u8; 12];
        rand::thread_rng().fill_bytes(&mut nonce);
        let payload = Payload {
            msg: plaintext,
            aad: TOKEN_AAD,
        };
        // AES-GCM encryption only fails for inputs over 64 GiB.
        let ciphertext = self
            .sealing
            .encrypt(Nonce::from_slice(&nonce), payload)
            .unwrap_or_default();
        let mut out = Vec::with_capacity(12 + ciphertext.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ciphertext);
        URL_SAFE_NO_PAD.encode(out)
    }

    pub fn open(&self, sealed: &str) -> Result<Vec<u8>, SealError> {
        let bytes = URL_SAFE_NO_PAD
            .decode(sealed)
            .map_err(|_| SealError::Encoding)?;
        if bytes.len() < 12 + 16 {
            return Err(SealError::Truncated);
        }
        let (nonce, ciphertext) = bytes.split_at(12);
        self.sealing
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: TOKEN_AAD,
                },
            )
            .map_err(|_| SealError::Authentication)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_value_opens_with_the_same_secret_only() {
        let keys = Keys::derive(&[7u8; 32]);
        let sealed = keys.seal(b"refresh-token-value");
        assert!(!sealed.contains("refresh"));
        assert_eq!(keys.open(&sealed).unwrap(), b"refresh-token-value");
        let other = Keys::derive(&[8u8; 32]);
        assert_eq!(other.open(&sealed), Err(SealError::Authentication));
    }

    #[test]
    fn tampered_or_garbage_sealed_values_are_refused() {
        let keys = Keys::derive(&[7u8; 32]);
        let sealed = keys.seal(b"abc");
        let mut bytes = URL_SAFE_NO_PAD.decode(&sealed).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        assert_eq!(
            keys.open(&URL_SAFE_NO_PAD.encode(bytes)),
            Err(SealError::Authentication)
        );
        assert_eq!(keys.open("%%%"), Err(SealError::Encoding));
        assert_eq!(keys.open("AAAA"), Err(SealError::Truncated));
    }

    #[test]
    fn csrf_tokens_are_bound_to_the_session() {
        let keys = Keys::derive(&[1u8; 32]);
        let token = keys.csrf_token("session-a");
        assert!(keys.csrf_matches("session-a", &token));
        assert!(!keys.csrf_matches("session-b", &token));
        assert!(!keys.csrf_matches("session-a", ""));
    }

    #[test]
    fn each_seal_uses_a_fresh_nonce() {
        let keys = Keys::derive(&[1u8; 32]);
        assert_ne!(keys.seal(b"same"), keys.seal(b"same"));
    }
}
