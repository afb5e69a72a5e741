//! Authorization codes and refresh tokens: the dev OP's memory of what it has handed out.
//!
//! These are plain data structures with the current time passed in, so the rules the relying
//! party depends on (codes are single use and short-lived, PKCE binds the code to its verifier,
//! refresh tokens rotate and a reused one is refused) are unit-tested without a server.

use std::collections::HashMap;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use rand::RngCore as _;
use sha2::{Digest as _, Sha256};

/// Seconds an authorization code stays valid.
pub(crate) const CODE_LIFETIME_SECONDS: u64 = 60;

/// How the user proved who they are at the dev OP (the ID token's `amr`, RFC 8176).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AuthMethod {
    /// The username form: `amr = ["pwd"]`.
    Password,
    /// A WebAuthn assertion with a passkey: `amr = ["webauthn"]`.
    Passkey,
}

impl AuthMethod {
    /// The RFC 8176 method reference.
    pub fn amr(self) -> &'static str {
        match self {
            AuthMethod::Password => "pwd",
            AuthMethod::Passkey => "webauthn",
        }
    }
}

/// Everything an authorization code stands for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct CodeGrant {
    pub client_id: String,
    pub redirect_uri: String,
    pub code_challenge: String,
    pub nonce: Option<String>,
    pub sub: String,
    pub scope: String,
    pub auth_time: u64,
    /// The OP session this login belongs to (the `sid` claim).
    pub sid: String,
    pub method: AuthMethod,
}

/// Everything a refresh token stands for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RefreshGrant {
    pub client_id: String,
    pub sub: String,
    pub scope: String,
    pub auth_time: u64,
    pub sid: String,
    pub method: AuthMethod,
}

/// Why a grant was refused; the text goes into `error_description`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum GrantError {
    #[error("unknown or already used authorization code")]
    UnknownCode,
    #[error("authorization code expired")]
    ExpiredCode,
    #[error("authorization code was issued to another client")]
    ClientMismatch,
    #[error("redirect_uri differs from the authorization request")]
    RedirectUriMismatch,
    #[error("code_verifier missing or does not match the code_challenge")]
    PkceMismatch,
    #[error("unknown or already used refresh token")]
    UnknownRefreshToken,
    #[error("refresh token was issued to another client")]
    RefreshClientMismatch,
}

/// A fresh random token: 32 bytes, base64url.
pub(crate) fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// RFC 7636 §4.6: BASE64URL(SHA256(ASCII(code_verifier))) == code_challenge.
pub(crate) fn pkce_s256_matches(code_verifier: &str, code_challenge: &str) -> bool {
    let valid_verifier = (43..=128).contains(&code_verifier.len())
        && code_verifier
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || b"-._~".contains(&byte));
    valid_verifier
        && URL_SAFE_NO_PAD.encode(Sha256::digest(code_verifier.as_bytes())) == code_challenge
}

/// Outstanding authorization codes.
#[derive(Debug, Default)]
pub(crate) struct CodeStore {
    codes: HashMap<String, (CodeGrant, u64)>,
}

impl CodeStore {
    /// Stores `grant` under a new code valid for [`CODE_LIFETIME_SECONDS`] from `now`.
    pub fn issue(&mut self, grant: CodeGrant, now: u64) -> String {
        self.codes.retain(|_, (_, expires_at)| *expires_at > now);
        let code = random_token();
        self.codes
            .insert(code.clone(), (grant, now + CODE_LIFETIME_SECONDS));
        code
    }

    /// Redeems `code`. The code is consumed by the attempt, successful or not.
    pub fn redeem(
        &mut self,
        code: &str,
        client_id: &str,
        redirect_uri: Option<&str>,
        code_verifier: Option<&str>,
        now: u64,
    ) -> Result<CodeGrant, GrantError> {
        let (grant, expires_at) = self.codes.remove(code).ok_or(GrantError::UnknownCode)?;
        if expires_at <= now {
            return Err(GrantError::ExpiredCode);
        }
        if grant.client_id != client_id {
            return Err(GrantError::ClientMismatch);
        }
        if redirect_uri != Some(grant.redirect_uri.as_str()) {
            return Err(GrantError::RedirectUriMismatch);
        }
        match code_verifier {
            Some(verifier) if pkce_s256_matches(verifier, &grant.code_challenge) => Ok(grant),
            _ => Err(GrantError::PkceMismatch),
        }
    }
}

/// Outstanding refresh tokens; each works once.
#[derive(Debug, Default)]
pub(crate) struct RefreshStore {
    tokens: HashMap<String, RefreshGrant>,
}

impl RefreshStore {
    pub fn issue(&mut self, grant: RefreshGrant) -> String {
        let token = random_token();
        self.tokens.insert(token.clone(), grant);
        token
    }

    /// Redeems `token`, which is then spent (rotation: the caller issues a new one).
    pub fn redeem(&mut self, token: &str, client_id: &str) -> Result<RefreshGrant, GrantError> {
        let grant = self
            .tokens
            .remove(token)
            .ok_or(GrantError::UnknownRefreshToken)?;
        if grant.client_id != client_id {
            return Err(GrantError::RefreshClientMismatch);
        }
        Ok(grant)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly
mod tests {
    use super::*;

    // RFC 7636 appendix B.
    const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

    fn grant() -> CodeGrant {
        CodeGrant {
            client_id: "portico-test".to_owned(),
            redirect_uri: "http://127.0.0.1:4180/oauth2/callback".to_owned(),
            code_challenge: CHALLENGE.to_owned(),
            nonce: Some("n-0S6_WzA2Mj".to_owned()),
            sub: "alice".to_owned(),
            scope: "openid profile".to_owned(),
            auth_time: 1_000,
            sid: "sid-1".to_owned(),
            method: AuthMethod::Password,
        }
    }

    fn redeem(
        store: &mut CodeStore,
        code: &str,
        verifier: &str,
        now: u64,
    ) -> Result<CodeGrant, GrantError> {
        let redirect_uri = "http://127.0.0.1:4180/oauth2/callback";
        store.redeem(
            code,
            "portico-test",
            Some(redirect_uri),
            Some(verifier),
            now,
        )
    }

    #[test]
    fn pkce_matches_the_rfc7636_example_only() {
        assert!(pkce_s256_matches(VERIFIER, CHALLENGE));
        assert!(!pkce_s256_matches(
            "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXj",
            CHALLENGE
        ));
        assert!(!pkce_s256_matches(CHALLENGE, CHALLENGE));
        assert!(!pkce_s256_matches("short", "short"));
    }

    #[test]
    fn code_redeems_once_with_the_right_verifier() {
        let mut store = CodeStore::default();
        let code = store.issue(grant(), 1_000);
        assert_eq!(redeem(&mut store, &code, VERIFIER, 1_010), Ok(grant()));
        assert_eq!(
            redeem(&mut store, &code, VERIFIER, 1_011),
            Err(GrantError::UnknownCode)
        );
    }

    #[test]
    fn code_is_refused_with_a_wrong_verifier_and_is_then_spent() {
        let mut store = CodeStore::default();
        let code = store.issue(grant(), 1_000);
        let wrong = "x".repeat(43);
        assert_eq!(
            redeem(&mut store, &code, &wrong, 1_001),
            Err(GrantError::PkceMismatch)
        );
        assert_eq!(
            redeem(&mut store, &code, VERIFIER, 1_002),
            Err(GrantError::UnknownCode)
        );
    }

    #[test]
    fn code_expires_after_sixty_seconds() {
        let mut store = CodeStore::default();
        let code = store.issue(grant(), 1_000);
        assert_eq!(
            redeem(&mut store, &code, VERIFIER, 1_060),
            Err(GrantError::ExpiredCode)
        );
    }

    #[test]
    fn code_is_bound_to_client_redirect_uri_and_verifier_presence() {
        let mut store = CodeStore::default();
        let code = store.issue(grant(), 1_000);
        let redirect_uri = Some("http://127.0.0.1:4180/oauth2/callback");
        assert_eq!(
            store.redeem(&code, "other", redirect_uri, Some(VERIFIER), 1_001),
            Err(GrantError::ClientMismatch)
        );
        let code = store.issue(grant(), 1_000);
        assert_eq!(
            store.redeem(
                &code,
                "portico-test",
                Some("http://127.0.0.1:4180/x"),
                Some(VERIFIER),
                1_001
            ),
            Err(GrantError::RedirectUriMismatch)
        );
        let code = store.issue(grant(), 1_000);
        assert_eq!(
            store.redeem(&code, "portico-test", redirect_uri, None, 1_001),
            Err(GrantError::PkceMismatch)
        );
    }

    #[test]
    fn refresh_tokens_rotate_and_reuse_is_refused() {
        let mut store = RefreshStore::default();
        let refresh_grant = RefreshGrant {
            client_id: "portico-test".to_owned(),
            sub: "alice".to_owned(),
            scope: "openid".to_owned(),
            auth_time: 1_000,
            sid: "sid-1".to_owned(),
            method: AuthMethod::Passkey,
        };
        let first = store.issue(refresh_grant.clone());
        assert_eq!(
            store.redeem(&first, "portico-test"),
            Ok(refresh_grant.clone())
        );
        let second = store.issue(refresh_grant.clone());
        assert_ne!(first, second);
        assert_eq!(
            store.redeem(&first, "portico-test"),
            Err(GrantError::UnknownRefreshToken)
        );
        assert_eq!(
            store.redeem(&second, "other"),
            Err(GrantError::RefreshClientMismatch)
        );
    }
}
