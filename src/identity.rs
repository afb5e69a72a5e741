//! `X-Portico-Identity`: who the user is, signed by portico, so an upstream
//! can trust the identity without trusting the network.
//!
//! An ES256 JWT, 60 seconds long, `iss` = portico's public URL, `aud` = the
//! route's upstream origin, with the user's claims. The public key is at
//! `/.well-known/portico/jwks.json`. The private key comes from
//! `[server] identity_key_file` (32 random bytes, base64), or is generated
//! once and stored in Redis, sealed with the cookie secret, so every replica
//! signs with the same key. Tokens are cached per caller and audience until
//! shortly before they expire, so signing is not per request.

use std::collections::HashMap;
use std::sync::Mutex;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey};
use rand::RngCore;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::session::SessionData;

/// A list (roles) as one comma-separated header value
/// (`X-Forwarded-Groups`, `X-Auth-Request-Groups`) that splits back into
/// exactly the items it was made of.
///
/// Upstreams split such headers on `,` and usually trim the pieces, so an
/// item holding a comma would become two (a role `"x,admin"` would read as
/// `admin`), and an item with a leading space would lose it. In each item,
/// `%`, `,` and whitespace or control characters are therefore
/// percent-encoded (`%25`, `%2C`, `%20` …, RFC 3986 §2.1); every other
/// character, UTF-8 included, is sent as it is, so ordinary role names are
/// unchanged. An upstream that wants the exact name percent-decodes each
/// piece after splitting; one that does not sees a name it does not know,
/// never another role.
pub fn header_list(items: &[String]) -> String {
    let mut joined = String::new();
    for (index, item) in items.iter().enumerate() {
        if index > 0 {
            joined.push(',');
        }
        for character in item.chars() {
            if character == '%'
                || character == ','
                || character.is_ascii_whitespace()
                || character.is_control()
            {
                let mut buffer = [0u8; 4];
                for byte in character.encode_utf8(&mut buffer).bytes() {
                    joined.push_str(&format!("%{byte:02X}"));
                }
            } else {
                joined.push(character);
            }
        }
    }
    joined
}

/// How long an identity token lives.
pub const IDENTITY_TOKEN_LIFETIME: i64 = 60;
/// A cached token is replaced this long before it expires.
const RENEW_BEFORE: i64 = 15;
const CACHE_LIMIT: usize = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum IdentityKeyError {
    #[error("identity key is not 32 bytes of base64: {0}")]
    Malformed(String),
    #[error("identity key store: {0}")]
    Store(String),
}

pub struct IdentitySigner {
    key: SigningKey,
    kid: String,
    jwk: serde_json::Value,
    issuer: String,
    cache: Mutex<HashMap<(String, String), (String, i64)>>,
}

/// 32 random bytes that make a valid P-256 secret scalar.
pub fn generate_key_bytes() -> [u8; 32] {
    loop {
        let mut bytes = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut bytes);
        if SigningKey::from_slice(&bytes).is_ok() {
            return bytes;
        }
    }
}

impl IdentitySigner {
    pub fn from_base64(text: &str, issuer: &str) -> Result<Self, IdentityKeyError> {
        let bytes = STANDARD
            .decode(text.trim())
            .or_else(|_| URL_SAFE_NO_PAD.decode(text.trim().trim_end_matches('=')))
            .map_err(|error| IdentityKeyError::Malformed(error.to_string()))?;
        Self::from_bytes(&bytes, issuer)
    }

    pub fn from_bytes(bytes: &[u8], issuer: &str) -> Result<Self, IdentityKeyError> {
        let key = SigningKey::from_slice(bytes)
            .map_err(|error| IdentityKeyError::Malformed(error.to_string()))?;
        let point = key.verifying_key().to_sec1_point(false);
        let encoded = point.as_bytes();
        let (x, y) = encoded
            .get(1..33)
            .zip(encoded.get(33..65))
            .ok_or_else(|| IdentityKeyError::Malformed("public point".into()))?;
        let kid = URL_SAFE_NO_PAD.encode(&Sha256::digest(encoded)[..12]);
        let jwk = json!({
            "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": kid,
            "x": URL_SAFE_NO_PAD.encode(x), "y": URL_SAFE_NO_PAD.encode(y),
        });
        Ok(IdentitySigner {
            key,
            kid,
            jwk,
            issuer: issuer.trim_end_matches('/').to_string(),
            cache: Mutex::new(HashMap::new()),
        })
    }

    pub fn jwks(&self) -> serde_json::Value {
        json!({ "keys": [self.jwk.clone()] })
    }

    /// The identity token for `who` and `audience` at `now`, from the cache
    /// while it has more than 15 s to live. `caller` names the session or
    /// bearer token it is cached under.
    pub fn token_for(&self, caller: &str, audience: &str, who: &SessionData, now: i64) -> String {
        let cache_key = (caller.to_string(), audience.to_string());
        let mut cache = self
            .cache
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some((token, expires_at)) = cache.get(&cache_key) {
            if expires_at - now > RENEW_BEFORE {
                return token.clone();
            }
        }
        let expires_at = now + IDENTITY_TOKEN_LIFETIME;
        let token = self.sign(audience, who, now, expires_at);
        if cache.len() >= CACHE_LIMIT {
            cache.retain(|_, (_, expiry)| *expiry - now > RENEW_BEFORE);
            if cache.len() >= CACHE_LIMIT {
                cache.clear();
            }
        }
        cache.insert(cache_key, (token.clone(), expires_at));
        token
    }

    fn sign(&self, audience: &str, who: &SessionData, now: i64, expires_at: i64) -> String {
        let header = json!({"alg": "ES256", "typ": "JWT", "kid": self.kid});
        let claims = json!({
            "iss": self.issuer,
            "aud": audience,
            "sub": who.sub,
            "email": who.email,
            "name": who.name,
            "preferred_username": who.preferred_username,
            "roles": who.roles,
            "groups": who.groups,
            "amr": who.amr,
            "iat": now,
            "exp": expires_at,
        });
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature: Signature = self.key.sign(signing_input.as_bytes());
        format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(signature.to_bytes())
        )
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn header_lists_split_back_into_exactly_their_items() {
        let roles = |items: &[&str]| {
            items
                .iter()
                .map(|item| item.to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(header_list(&roles(&["admin", "ops"])), "admin,ops");
        assert_eq!(
            header_list(&roles(&["tenant:T1/admin", "docs.read"])),
            "tenant:T1/admin,docs.read"
        );
        // A role holding a comma never becomes two roles.
        let tricky = roles(&["viewer,admin", " admin", "100%", "é"]);
        let header = header_list(&tricky);
        assert_eq!(header, "viewer%2Cadmin,%20admin,100%25,é");
        let pieces: Vec<&str> = header.split(',').map(str::trim).collect();
        assert_eq!(pieces.len(), tricky.len());
        assert!(!pieces.contains(&"admin"), "{pieces:?}");
        assert!(header_list(&roles(&["a\tb"])).contains("%09"));
        assert_eq!(header_list(&[]), "");
    }
    use super::*;

    fn who() -> SessionData {
        SessionData::for_bearer(crate::session::Identity {
            sub: "alice".into(),
            roles: vec!["admin".into()],
            ..Default::default()
        })
    }

    #[test]
    fn tokens_verify_with_the_published_key() {
        let signer =
            IdentitySigner::from_bytes(&generate_key_bytes(), "https://app.example.com/").unwrap();
        let token = signer.token_for("s1", "http://upstream:9100", &who(), 1000);
        let jwks: openidconnect::core::CoreJsonWebKeySet =
            serde_json::from_value(signer.jwks()).unwrap();
        let verified = crate::oidc::verify_jws(
            &token,
            &crate::oidc::KeySet::new(jwks),
            &[openidconnect::core::CoreJwsSigningAlgorithm::EcdsaP256Sha256],
        )
        .unwrap();
        assert_eq!(verified.claims["iss"], "https://app.example.com");
        assert_eq!(verified.claims["aud"], "http://upstream:9100");
        assert_eq!(verified.claims["sub"], "alice");
        assert_eq!(verified.claims["exp"], 1060);
    }

    #[test]
    fn tokens_are_reused_until_shortly_before_expiry() {
        let signer = IdentitySigner::from_bytes(&generate_key_bytes(), "https://a").unwrap();
        let first = signer.token_for("s1", "aud", &who(), 1000);
        assert_eq!(signer.token_for("s1", "aud", &who(), 1040), first);
        assert_ne!(signer.token_for("s1", "aud", &who(), 1046), first);
        // Another audience gets its own token.
        assert_ne!(signer.token_for("s1", "other-aud", &who(), 1000), first);
    }

    #[test]
    fn malformed_keys_are_refused() {
        assert!(IdentitySigner::from_base64("not base64!", "https://a").is_err());
        assert!(IdentitySigner::from_base64("AAAA", "https://a").is_err());
    }
}
