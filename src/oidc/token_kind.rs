//! Is this JWT an access token? A bearer token opens an API only if it was
//! made to be presented to one.
//!
//! A provider signs several kinds of JWT with the same keys: ID tokens (for
//! the client that signed the user in), logout tokens (for the client's
//! back-channel endpoint) and access tokens (for APIs). The first two also
//! travel where an attacker can pick them up — an ID token rides in the
//! sign-out redirect's `id_token_hint`, so it sits in browser history and
//! logs — and they stay valid after the session they belong to has ended.
//! Each kind says what it is, by header `typ` or by claims only it carries:
//!
//! - RFC 9068 §2.1: JWT access tokens carry `typ: at+jwt`
//!   (`application/at+jwt` in full, RFC 7515 §4.1.9 lets the `application/`
//!   prefix go). Many providers still send plain `JWT` or no `typ`.
//! - OpenID Connect Core §2 / §3.1.3.6 / §3.3.2.11: ID tokens carry `nonce`
//!   (when the request had one), `at_hash` and `c_hash`; none of these has a
//!   meaning in an access token.
//! - OpenID Connect Back-Channel Logout §2.4: logout tokens carry `events`
//!   and, since errata, `typ: logout+jwt`; RFC 8417 security event tokens
//!   carry `events` and `typ: secevent+jwt`.
//! - RFC 8725 §3.11 (JWT BCP): use explicit typing and refuse a JWT of one
//!   kind where another is expected.
//!
//! The audience is a second, separate check ([`bearer_audiences`]): an
//! operator can require an API audience that no ID token ever carries.

use serde_json::{Map, Value};

use super::verify::TokenRejection;

/// Header `typ` values that name an access token (compared without case, the
/// `application/` prefix optional) — plus plain `JWT` and no `typ` at all,
/// which say nothing either way.
const ACCESS_TOKEN_TYPES: [&str; 2] = ["at+jwt", "jwt"];

/// Claims that only an ID token or a security event (logout) token carries.
const FOREIGN_CLAIMS: [&str; 4] = ["nonce", "at_hash", "c_hash", "events"];

/// Refuses a JWT (header and claims, signature already verified) that says
/// it is something other than an access token.
pub fn check_access_token_kind(
    header: &Map<String, Value>,
    claims: &Map<String, Value>,
) -> Result<(), TokenRejection> {
    match header.get("typ") {
        None => {}
        Some(Value::String(typ)) => {
            let lower = typ.to_ascii_lowercase();
            let bare = lower.strip_prefix("application/").unwrap_or(&lower);
            if !ACCESS_TOKEN_TYPES.contains(&bare) {
                return Err(TokenRejection::NotAnAccessToken(format!("typ {typ}")));
            }
        }
        Some(_) => return Err(TokenRejection::Malformed("typ is not a string".into())),
    }
    if let Some(claim) = FOREIGN_CLAIMS
        .iter()
        .find(|name| claims.contains_key(**name))
    {
        return Err(TokenRejection::NotAnAccessToken(format!(
            "carries {claim}, a claim of ID or logout tokens"
        )));
    }
    Ok(())
}

/// The audiences a bearer token from the provider must carry one of: the
/// configured `bearer_audiences` when set (so a token whose audience is only
/// the client id — every ID token — is refused), else the ID-token audiences
/// (`client_id` and `extra_audiences`), as before `bearer_audiences` existed.
pub fn bearer_audiences(
    client_id: &str,
    extra_audiences: &[String],
    bearer_audiences: &[String],
) -> Vec<String> {
    if !bearer_audiences.is_empty() {
        return bearer_audiences.to_vec();
    }
    let mut audiences = vec![client_id.to_string()];
    audiences.extend(extra_audiences.iter().cloned());
    audiences
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => Map::new(),
        }
    }

    fn kind(header: Value, claims: Value) -> Result<(), TokenRejection> {
        check_access_token_kind(&map(header), &map(claims))
    }

    const ACCESS: fn() -> Value = || json!({"sub": "alice", "scope": "openid", "jti": "1"});

    #[test]
    fn access_token_types_and_untyped_tokens_are_accepted() {
        for typ in ["at+jwt", "AT+JWT", "application/at+jwt", "JWT", "jwt"] {
            assert_eq!(
                kind(json!({"alg": "RS256", "typ": typ}), ACCESS()),
                Ok(()),
                "{typ}"
            );
        }
        assert_eq!(kind(json!({"alg": "RS256"}), ACCESS()), Ok(()));
    }

    #[test]
    fn other_token_types_are_refused() {
        for typ in [
            "logout+jwt",
            "application/logout+jwt",
            "id_token+jwt",
            "secevent+jwt",
            "dpop+jwt",
            "JOSE",
            "",
        ] {
            assert!(
                matches!(
                    kind(json!({"alg": "RS256", "typ": typ}), ACCESS()),
                    Err(TokenRejection::NotAnAccessToken(_))
                ),
                "{typ}"
            );
        }
        assert!(matches!(
            kind(json!({"alg": "RS256", "typ": 7}), ACCESS()),
            Err(TokenRejection::Malformed(_))
        ));
    }

    #[test]
    fn id_and_logout_token_claims_are_refused_whatever_the_type() {
        for claim in ["nonce", "at_hash", "c_hash", "events"] {
            let mut claims = map(ACCESS());
            claims.insert(claim.into(), json!("x"));
            for header in [
                json!({"alg": "RS256", "typ": "JWT"}),
                json!({"alg": "RS256"}),
            ] {
                let refused = check_access_token_kind(&map(header), &claims);
                assert!(
                    matches!(&refused, Err(TokenRejection::NotAnAccessToken(text)) if text.contains(claim)),
                    "{claim}: {refused:?}"
                );
            }
        }
    }

    #[test]
    fn bearer_audiences_replace_the_client_id_when_set() {
        let extra = vec!["other".to_string()];
        assert_eq!(bearer_audiences("client", &extra, &[]), ["client", "other"]);
        let api = vec!["https://api.example.com".to_string()];
        assert_eq!(bearer_audiences("client", &extra, &api), api);
    }
}
