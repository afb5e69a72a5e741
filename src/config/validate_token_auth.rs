//! `oidc.token_auth_method` and, for `private_key_jwt`, the key that signs
//! client assertions (RFC 7523 §2.2): how portico proves who it is at the
//! token endpoint (OpenID Connect Core §9).
//!
//! Unset, the method comes from discovery (Basic unless the provider lists
//! only `client_secret_post`). Descope's API takes the client id and secret
//! as form fields (Kong's Descope tutorial forces `client_secret_post`), so a
//! provider that refuses Basic is answered with one key.

use base64::Engine as _;

use super::errors::{quoted, Problems};
use super::raw::RawOidc;
use super::types::{Secret, TokenAuthMethod};

pub(crate) struct TokenAuth {
    pub method: TokenAuthMethod,
    pub key: Option<Secret<Vec<u8>>>,
    pub kid: Option<String>,
}

const METHOD_FIX: &str =
    "use \"client_secret_basic\", \"client_secret_post\" or \"private_key_jwt\", or remove the key to follow discovery";

pub(crate) fn token_auth(
    problems: &mut Problems,
    raw: &RawOidc,
    has_secret: bool,
) -> Option<TokenAuth> {
    let method = match raw.token_auth_method.as_str() {
        "" => TokenAuthMethod::FromDiscovery,
        "client_secret_basic" => TokenAuthMethod::ClientSecretBasic,
        "client_secret_post" => TokenAuthMethod::ClientSecretPost,
        "private_key_jwt" => TokenAuthMethod::PrivateKeyJwt,
        other => {
            problems.report(
                "oidc.token_auth_method",
                quoted(other),
                "is not a client authentication method",
                METHOD_FIX,
            );
            return None;
        }
    };
    let kid = (!raw.client_assertion_kid.is_empty()).then(|| raw.client_assertion_kid.clone());
    match method {
        TokenAuthMethod::ClientSecretBasic | TokenAuthMethod::ClientSecretPost if !has_secret => {
            problems.report(
                "oidc.token_auth_method",
                quoted(method.name()),
                "sends the client secret, but no client secret is set",
                "set oidc.client_secret (or client_secret_file, or PORTICO_OIDC__CLIENT_SECRET)",
            );
            None
        }
        TokenAuthMethod::PrivateKeyJwt => {
            let key = private_key(problems, &raw.client_assertion_key_file)?;
            Some(TokenAuth {
                method,
                key: Some(Secret::new(key)),
                kid,
            })
        }
        _ if !raw.client_assertion_key_file.is_empty() => {
            problems.report(
                "oidc.client_assertion_key_file",
                quoted(&raw.client_assertion_key_file),
                "is only used with token_auth_method = \"private_key_jwt\"",
                "set oidc.token_auth_method = \"private_key_jwt\", or remove the key file",
            );
            None
        }
        _ => Some(TokenAuth {
            method,
            key: None,
            kid,
        }),
    }
}

/// The PKCS#8 DER in a PEM file, checked to be an RSA, P-256 or P-384 key.
fn private_key(problems: &mut Problems, path: &str) -> Option<Vec<u8>> {
    const KEY: &str = "oidc.client_assertion_key_file";
    const FIX: &str = "point it to a PEM file with a PKCS#8 private key (\"-----BEGIN PRIVATE KEY-----\"), RSA (2048+ bits) or EC P-256/P-384, e.g. from `openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256`";
    if path.is_empty() {
        problems.report(
            KEY,
            quoted(""),
            "is required when token_auth_method = \"private_key_jwt\"",
            FIX,
        );
        return None;
    }
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) => {
            problems.report(KEY, quoted(path), format!("cannot be read: {error}"), FIX);
            return None;
        }
    };
    let der = pem_pkcs8(&text);
    match der {
        Some(der) if crate::oidc::assertion_key_algorithm(&der).is_some() => Some(der),
        _ => {
            problems.report(KEY, quoted(path), "holds no usable PKCS#8 private key", FIX);
            None
        }
    }
}

/// The bytes between `-----BEGIN PRIVATE KEY-----` and its END line.
fn pem_pkcs8(text: &str) -> Option<Vec<u8>> {
    let start = text.find("-----BEGIN PRIVATE KEY-----")? + "-----BEGIN PRIVATE KEY-----".len();
    let end = text[start..].find("-----END PRIVATE KEY-----")? + start;
    let body: String = text[start..end]
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    base64::engine::general_purpose::STANDARD.decode(body).ok()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn pem_body_is_decoded_and_other_blocks_are_not_keys() {
        let pem = "-----BEGIN PRIVATE KEY-----\nAAEC\nAw==\n-----END PRIVATE KEY-----\n";
        assert_eq!(pem_pkcs8(pem), Some(vec![0, 1, 2, 3]));
        assert_eq!(pem_pkcs8("-----BEGIN CERTIFICATE-----\nAAEC\n"), None);
    }

    #[test]
    fn methods_are_named_and_secrets_required_where_sent() {
        let mut problems = Problems::default();
        let raw = RawOidc {
            token_auth_method: "client_secret_jwt".into(),
            ..RawOidc::default()
        };
        assert!(token_auth(&mut problems, &raw, true).is_none());
        let raw = RawOidc {
            token_auth_method: "client_secret_post".into(),
            ..RawOidc::default()
        };
        assert!(token_auth(&mut problems, &raw, false).is_none());
        assert_eq!(
            token_auth(&mut problems, &raw, true).unwrap().method,
            TokenAuthMethod::ClientSecretPost
        );
        let raw = RawOidc {
            token_auth_method: "private_key_jwt".into(),
            client_assertion_key_file: "/nonexistent/key.pem".into(),
            ..RawOidc::default()
        };
        assert!(token_auth(&mut problems, &raw, false).is_none());
        let errors = problems.into_errors();
        assert_eq!(errors.len(), 3);
        assert!(errors
            .iter()
            .all(|error| error.key.starts_with("oidc.token_auth_method")
                || error.key == "oidc.client_assertion_key_file"));
    }
}
