//! Client authentication at the token endpoint (OpenID Connect Core §9):
//! which method, and for `private_key_jwt` the signed assertion (RFC 7523).
//!
//! `token_auth_method` unset follows discovery: Basic unless the provider
//! lists only `client_secret_post`. Descope's own SDKs and the Kong Descope
//! tutorial send the client id and secret as form fields; whether Descope's
//! token endpoint also takes Basic is not documented, so both are kept
//! available and the setting names them.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use openidconnect::core::CoreClientAuthMethod;
use openidconnect::AuthType;
use rand::RngCore as _;
use ring::signature::{self as ring_sig};

use crate::config::TokenAuthMethod;

/// RFC 7523 §2.2.
pub const CLIENT_ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// How long a client assertion is valid.
const ASSERTION_LIFETIME_SECONDS: i64 = 60;

/// The method to use: the configured one, or Basic unless discovery lists
/// only `client_secret_post`.
pub fn choose_auth_method(
    configured: TokenAuthMethod,
    discovered: Option<&[CoreClientAuthMethod]>,
) -> TokenAuthMethod {
    match configured {
        TokenAuthMethod::FromDiscovery => {
            let post_only = discovered.is_some_and(|methods| {
                methods.contains(&CoreClientAuthMethod::ClientSecretPost)
                    && !methods.contains(&CoreClientAuthMethod::ClientSecretBasic)
            });
            if post_only {
                TokenAuthMethod::ClientSecretPost
            } else {
                TokenAuthMethod::ClientSecretBasic
            }
        }
        other => other,
    }
}

/// openidconnect's auth type for a chosen method (`private_key_jwt` sends
/// `client_id` in the body, with the assertion as extra parameters).
pub fn auth_type(method: TokenAuthMethod) -> AuthType {
    match method {
        TokenAuthMethod::ClientSecretBasic | TokenAuthMethod::FromDiscovery => AuthType::BasicAuth,
        TokenAuthMethod::ClientSecretPost | TokenAuthMethod::PrivateKeyJwt => AuthType::RequestBody,
    }
}

/// The JWS algorithm a PKCS#8 private key signs with: RS256 for RSA, ES256
/// for P-256, ES384 for P-384; None for anything else.
pub fn assertion_key_algorithm(der: &[u8]) -> Option<&'static str> {
    let rng = ring::rand::SystemRandom::new();
    if ring_sig::RsaKeyPair::from_pkcs8(der).is_ok() {
        Some("RS256")
    } else if ring_sig::EcdsaKeyPair::from_pkcs8(
        &ring_sig::ECDSA_P256_SHA256_FIXED_SIGNING,
        der,
        &rng,
    )
    .is_ok()
    {
        Some("ES256")
    } else if ring_sig::EcdsaKeyPair::from_pkcs8(
        &ring_sig::ECDSA_P384_SHA384_FIXED_SIGNING,
        der,
        &rng,
    )
    .is_ok()
    {
        Some("ES384")
    } else {
        None
    }
}

#[derive(Debug, thiserror::Error)]
#[error("could not sign the client assertion: {0}")]
pub struct AssertionError(&'static str);

/// A client assertion (RFC 7523 §3): `iss` = `sub` = the client id, `aud` =
/// the token endpoint, a fresh `jti`, valid for a minute from `now`.
pub fn client_assertion(
    key_der: &[u8],
    kid: Option<&str>,
    client_id: &str,
    token_endpoint: &str,
    now: i64,
) -> Result<String, AssertionError> {
    let alg = assertion_key_algorithm(key_der).ok_or(AssertionError("unusable key"))?;
    let mut jti = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut jti);
    let mut header = serde_json::json!({"alg": alg, "typ": "JWT"});
    if let Some(kid) = kid {
        header["kid"] = serde_json::json!(kid);
    }
    let claims = serde_json::json!({
        "iss": client_id, "sub": client_id, "aud": token_endpoint,
        "jti": URL_SAFE_NO_PAD.encode(jti), "iat": now,
        "exp": now + ASSERTION_LIFETIME_SECONDS,
    });
    let encode = |value: &serde_json::Value| URL_SAFE_NO_PAD.encode(value.to_string());
    let signing_input = format!("{}.{}", encode(&header), encode(&claims));
    let rng = ring::rand::SystemRandom::new();
    let signature = match alg {
        "RS256" => {
            let pair = ring_sig::RsaKeyPair::from_pkcs8(key_der)
                .map_err(|_| AssertionError("bad RSA key"))?;
            let mut signature = vec![0; pair.public().modulus_len()];
            pair.sign(
                &ring_sig::RSA_PKCS1_SHA256,
                &rng,
                signing_input.as_bytes(),
                &mut signature,
            )
            .map_err(|_| AssertionError("RSA signing failed"))?;
            signature
        }
        _ => {
            let signing = if alg == "ES256" {
                &ring_sig::ECDSA_P256_SHA256_FIXED_SIGNING
            } else {
                &ring_sig::ECDSA_P384_SHA384_FIXED_SIGNING
            };
            let pair = ring_sig::EcdsaKeyPair::from_pkcs8(signing, key_der, &rng)
                .map_err(|_| AssertionError("bad EC key"))?;
            pair.sign(&rng, signing_input.as_bytes())
                .map_err(|_| AssertionError("ECDSA signing failed"))?
                .as_ref()
                .to_vec()
        }
    };
    Ok(format!(
        "{signing_input}.{}",
        URL_SAFE_NO_PAD.encode(signature)
    ))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn discovery_decides_only_when_nothing_is_configured() {
        let post = [CoreClientAuthMethod::ClientSecretPost];
        let both = [
            CoreClientAuthMethod::ClientSecretBasic,
            CoreClientAuthMethod::ClientSecretPost,
        ];
        let from = TokenAuthMethod::FromDiscovery;
        assert_eq!(
            choose_auth_method(from, Some(&post)),
            TokenAuthMethod::ClientSecretPost
        );
        assert_eq!(
            choose_auth_method(from, Some(&both)),
            TokenAuthMethod::ClientSecretBasic
        );
        assert_eq!(
            choose_auth_method(from, None),
            TokenAuthMethod::ClientSecretBasic
        );
        assert_eq!(
            choose_auth_method(TokenAuthMethod::ClientSecretPost, Some(&both)),
            TokenAuthMethod::ClientSecretPost
        );
        assert_eq!(
            choose_auth_method(TokenAuthMethod::ClientSecretBasic, Some(&post)),
            TokenAuthMethod::ClientSecretBasic
        );
    }

    #[test]
    fn an_ec_assertion_verifies_with_its_public_key_and_names_the_endpoint() {
        let rng = ring::rand::SystemRandom::new();
        let document = ring_sig::EcdsaKeyPair::generate_pkcs8(
            &ring_sig::ECDSA_P256_SHA256_FIXED_SIGNING,
            &rng,
        )
        .unwrap();
        let pair = ring_sig::EcdsaKeyPair::from_pkcs8(
            &ring_sig::ECDSA_P256_SHA256_FIXED_SIGNING,
            document.as_ref(),
            &rng,
        )
        .unwrap();
        let assertion = client_assertion(
            document.as_ref(),
            Some("k1"),
            "client-1",
            "https://op.example/token",
            1_000,
        )
        .unwrap();
        let (signing_input, signature) = assertion.rsplit_once('.').unwrap();
        use ring_sig::KeyPair as _;
        ring_sig::UnparsedPublicKey::new(
            &ring_sig::ECDSA_P256_SHA256_FIXED,
            pair.public_key().as_ref(),
        )
        .verify(
            signing_input.as_bytes(),
            &URL_SAFE_NO_PAD.decode(signature).unwrap(),
        )
        .unwrap();
        let claims: serde_json::Value = serde_json::from_slice(
            &URL_SAFE_NO_PAD
                .decode(signing_input.split('.').nth(1).unwrap())
                .unwrap(),
        )
        .unwrap();
        assert_eq!(claims["iss"], "client-1");
        assert_eq!(claims["sub"], "client-1");
        assert_eq!(claims["aud"], "https://op.example/token");
        assert_eq!(claims["exp"], 1_060);
        assert_eq!(assertion_key_algorithm(b"not a key"), None);
    }
}
