//! Keys derived once from `cookie_secret`, and sealing of values at rest.
//!
//! One secret, one key per use: HKDF-SHA256 (RFC 5869) with a distinct
//! `info` string for each, so a value made for one use never opens, verifies
//! or means anything in another (domain separation, RFC 5869 §3.2):
//!
//! | use                                   | HKDF info                  | AEAD associated data         |
//! |---------------------------------------|----------------------------|------------------------------|
//! | session cookie (holds the session id) | `cookie encryption`        | the cookie name (cookie crate) |
//! | login-state cookies                   | `login state cookie v1`    | the cookie name (cookie crate) |
//! | provider tokens in the session record | `token sealing`            | `portico tokens v1`          |
//! | sign-out `state` (round trip via OP)  | `sign-out state v1`        | `portico sign-out state v1`  |
//! | identity-JWT key kept in the store    | `identity key storage v1`  | `portico identity key v1`    |
//! | CSRF tokens (HMAC)                    | `csrf tokens`              | —                            |
//!
//! The session cookie and token-sealing keys keep the info strings they had
//! before this separation, so sessions survive an upgrade. Deriving happens
//! once, in `build()`, never per request.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hkdf::Hkdf;
use rand::RngCore;
use sha2::Sha256;

/// What a sealed value is for. Each purpose has its own key and associated
/// data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SealPurpose {
    /// The provider's tokens inside a session record in the store.
    SessionTokens,
    /// The sign-out `state` that travels through the provider and back.
    SignOutState,
    /// The identity-JWT signing key, kept in the store for every replica.
    IdentityKey,
}

impl SealPurpose {
    const ALL: [SealPurpose; 3] = [
        SealPurpose::SessionTokens,
        SealPurpose::SignOutState,
        SealPurpose::IdentityKey,
    ];

    fn info(self) -> &'static [u8] {
        match self {
            SealPurpose::SessionTokens => b"token sealing",
            SealPurpose::SignOutState => b"sign-out state v1",
            SealPurpose::IdentityKey => b"identity key storage v1",
        }
    }

    fn associated_data(self) -> &'static [u8] {
        match self {
            SealPurpose::SessionTokens => b"portico tokens v1",
            SealPurpose::SignOutState => b"portico sign-out state v1",
            SealPurpose::IdentityKey => b"portico identity key v1",
        }
    }

    fn index(self) -> usize {
        match self {
            SealPurpose::SessionTokens => 0,
            SealPurpose::SignOutState => 1,
            SealPurpose::IdentityKey => 2,
        }
    }
}

/// The keys portico uses, derived from the configured secret.
#[derive(Clone)]
pub struct Keys {
    /// The session cookie's key.
    pub cookie: cookie::Key,
    /// The login-state cookies' key.
    pub login_cookie: cookie::Key,
    sealing: [Aes256Gcm; 3],
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
        // HKDF-SHA256 can produce up to 8160 bytes; 64 and 32 never fail.
        let expand64 = |info: &[u8]| {
            let mut bytes = [0u8; 64];
            let _ = hkdf.expand(info, &mut bytes);
            bytes
        };
        let expand32 = |info: &[u8]| {
            let mut bytes = [0u8; 32];
            let _ = hkdf.expand(info, &mut bytes);
            bytes
        };
        let sealing =
            SealPurpose::ALL.map(|purpose| Aes256Gcm::new(&expand32(purpose.info()).into()));
        Keys {
            cookie: cookie::Key::from(&expand64(b"cookie encryption")),
            login_cookie: cookie::Key::from(&expand64(b"login state cookie v1")),
            sealing,
            csrf: expand32(b"csrf tokens"),
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

    /// Encrypts and authenticates `plaintext` for `purpose`; returns
    /// base64url(nonce ‖ ciphertext).
    pub fn seal(&self, purpose: SealPurpose, plaintext: &[u8]) -> String {
        let mut nonce = [0u8; 12];
        rand::thread_rng().fill_bytes(&mut nonce);
        let payload = Payload {
            msg: plaintext,
            aad: purpose.associated_data(),
        };
        // AES-GCM encryption only fails for inputs over 64 GiB.
        let ciphertext = self.sealing[purpose.index()]
            .encrypt(Nonce::from_slice(&nonce), payload)
            .unwrap_or_default();
        let mut out = Vec::with_capacity(12 + ciphertext.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ciphertext);
        URL_SAFE_NO_PAD.encode(out)
    }

    /// Opens a value sealed for `purpose`; one sealed for another purpose
    /// fails authentication.
    pub fn open(&self, purpose: SealPurpose, sealed: &str) -> Result<Vec<u8>, SealError> {
        let bytes = URL_SAFE_NO_PAD
            .decode(sealed)
            .map_err(|_| SealError::Encoding)?;
        if bytes.len() < 12 + 16 {
            return Err(SealError::Truncated);
        }
        let (nonce, ciphertext) = bytes.split_at(12);
        self.sealing[purpose.index()]
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: purpose.associated_data(),
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
        let sealed = keys.seal(SealPurpose::SessionTokens, b"refresh-token-value");
        assert!(!sealed.contains("refresh"));
        assert_eq!(
            keys.open(SealPurpose::SessionTokens, &sealed).unwrap(),
            b"refresh-token-value"
        );
        let other = Keys::derive(&[8u8; 32]);
        assert_eq!(
            other.open(SealPurpose::SessionTokens, &sealed),
            Err(SealError::Authentication)
        );
    }

    #[test]
    fn tampered_or_garbage_sealed_values_are_refused() {
        let keys = Keys::derive(&[7u8; 32]);
        let sealed = keys.seal(SealPurpose::SessionTokens, b"abc");
        let mut bytes = URL_SAFE_NO_PAD.decode(&sealed).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        assert_eq!(
            keys.open(SealPurpose::SessionTokens, &URL_SAFE_NO_PAD.encode(bytes)),
            Err(SealError::Authentication)
        );
        assert_eq!(
            keys.open(SealPurpose::SessionTokens, "%%%"),
            Err(SealError::Encoding)
        );
        assert_eq!(
            keys.open(SealPurpose::SessionTokens, "AAAA"),
            Err(SealError::Truncated)
        );
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
        assert_ne!(
            keys.seal(SealPurpose::SessionTokens, b"same"),
            keys.seal(SealPurpose::SessionTokens, b"same")
        );
    }

    #[test]
    fn a_value_sealed_for_one_use_opens_in_no_other() {
        let keys = Keys::derive(&[5u8; 32]);
        for sealed_for in SealPurpose::ALL {
            let sealed = keys.seal(sealed_for, b"value");
            for opened_as in SealPurpose::ALL {
                let opened = keys.open(opened_as, &sealed);
                if opened_as == sealed_for {
                    assert_eq!(opened.as_deref(), Ok(&b"value"[..]));
                } else {
                    assert_eq!(
                        opened,
                        Err(SealError::Authentication),
                        "{sealed_for:?} as {opened_as:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn session_and_login_cookies_have_their_own_keys() {
        let keys = Keys::derive(&[5u8; 32]);
        let session = crate::session::CookieRules::new("s", true, None, keys.cookie.clone());
        let login = crate::session::CookieRules::new("s", true, None, keys.login_cookie.clone());
        // The same name and plaintext under each key: neither opens the other's.
        let sealed = session.session_cookie("id-1", time::Duration::hours(1));
        assert_eq!(
            session.open_session_value(sealed.value()).as_deref(),
            Some("id-1")
        );
        assert_eq!(login.open_session_value(sealed.value()), None);
        assert_ne!(keys.cookie.master(), keys.login_cookie.master());
    }

    #[test]
    fn keys_kept_across_the_upgrade_still_open_what_older_versions_sealed() {
        // Sealed before domain separation: HKDF info "token sealing", AAD
        // "portico tokens v1" — exactly what SessionTokens still uses, so
        // sessions stored by an older version keep their tokens.
        let secret = [9u8; 32];
        let hkdf = Hkdf::<Sha256>::new(Some(b"portico"), &secret);
        let mut legacy = [0u8; 32];
        hkdf.expand(b"token sealing", &mut legacy).unwrap();
        let nonce = [1u8; 12];
        let ciphertext = Aes256Gcm::new(&legacy.into())
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: b"old tokens",
                    aad: b"portico tokens v1",
                },
            )
            .unwrap();
        let sealed = URL_SAFE_NO_PAD.encode([&nonce[..], &ciphertext].concat());
        let keys = Keys::derive(&secret);
        assert_eq!(
            keys.open(SealPurpose::SessionTokens, &sealed).unwrap(),
            b"old tokens"
        );
        assert!(keys.open(SealPurpose::SignOutState, &sealed).is_err());
    }
}
