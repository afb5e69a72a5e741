//! Claims where providers put them: the userinfo endpoint.
//!
//! Many conforming providers answer the authorization-code flow with an ID
//! token that carries little more than `sub`, and serve the End-User claims
//! the scopes asked for (email, name, roles …) at the userinfo endpoint
//! (OpenID Connect Core 1.0 §5.4: "the Claims requested by the profile,
//! email, address, and phone scope values are returned from the UserInfo
//! Endpoint … when a response_type value is used that results in an Access
//! Token being issued"). So, with `[oidc] userinfo = "auto"`, portico asks
//! userinfo when the ID token lacks a claim portico reads
//! (`OidcConfig::wanted_claims`); `"always"` asks every time, `"never"` never.
//!
//! The request is a GET with the access token as a Bearer header (Core
//! §5.3.1, RFC 6750 §2.1), within the provider timeout, and the answer is
//! read up to `MAX_USERINFO_BYTES`. It may be JSON or a signed JWT
//! (`application/jwt`, Core §5.3.2); a signed one is verified with the
//! provider's keys like an ID token, and its `iss` and `aud`, when present,
//! must be the issuer and our client (Core §5.3.2: "If signed, the UserInfo
//! Response SHOULD contain the Claims iss (issuer) and aud (audience) …").
//! Encrypted answers are not supported and are refused as malformed.
//!
//! Core §5.3.2: "The sub Claim in the UserInfo Response MUST be verified to
//! exactly match the sub Claim in the ID Token; if they do not match, the
//! UserInfo Response values MUST NOT be used." — the RP certification case
//! `rp-userinfo-bad-sub-claim`. portico refuses the sign-in then.
//!
//! The ID token stays authoritative for who signed in and when: `sub`,
//! `iss`, `aud`, the time claims and the other protocol claims are never
//! taken from userinfo (`ID_TOKEN_CLAIMS`). Userinfo fills in, and being
//! the fresher source, replaces, End-User claims only.
//!
//! Written over reqwest rather than openidconnect's `UserInfoRequest`: that
//! one parses the answer into typed standard claims (one odd value, such as
//! `email_verified: "true"`, refuses the whole answer), reads bodies without
//! a limit and cannot refetch the JWKS on an unknown kid; portico reads
//! claims as JSON everywhere else (`identity_from_json`) and verifies JWS
//! with the same allow-list as ID tokens (`verify_jws`).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{Map, Value};
use url::Url;

use super::claims::claim_at;
use super::jws::verify_jws;
use super::provider::{Provider, ProviderHandle};
use super::verify::TokenRejection;
use crate::config::{OidcConfig, UserinfoMode};
use crate::error::error_chain;

/// The largest userinfo answer portico reads.
pub const MAX_USERINFO_BYTES: usize = 64 * 1024;

/// Claims only the ID token may set: the subject, issuer, audience, time
/// claims and the rest of the protocol claims (Core §2, §3.1.3.7), plus
/// Descope's `dsub`, which names the user for that provider.
const ID_TOKEN_CLAIMS: &[&str] = &[
    "iss",
    "sub",
    "aud",
    "exp",
    "iat",
    "nbf",
    "auth_time",
    "nonce",
    "azp",
    "acr",
    "amr",
    "sid",
    "at_hash",
    "c_hash",
    "jti",
    "dsub",
];

/// Why the userinfo answer could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserinfoError {
    #[error("the userinfo endpoint could not be reached: {0}")]
    Unreachable(String),
    #[error("the userinfo endpoint refused the access token (HTTP {0})")]
    Refused(u16),
    #[error("the userinfo answer is not usable: {0}")]
    Malformed(String),
    #[error("the signed userinfo answer was refused: {0}")]
    Signature(TokenRejection),
    #[error("the signed userinfo answer names another issuer")]
    WrongIssuer,
    #[error("the signed userinfo answer is meant for another client")]
    WrongAudience,
    #[error("the userinfo answer has no sub")]
    MissingSubject,
    #[error("the userinfo answer is about another subject than the ID token")]
    SubjectMismatch,
}

impl UserinfoError {
    /// A short, stable name for logs and metrics.
    pub fn label(&self) -> &'static str {
        match self {
            UserinfoError::Unreachable(_) => "userinfo_unreachable",
            UserinfoError::Refused(_) => "userinfo_refused",
            UserinfoError::Malformed(_) => "userinfo_malformed",
            UserinfoError::Signature(_) => "userinfo_bad_signature",
            UserinfoError::WrongIssuer => "userinfo_wrong_iss",
            UserinfoError::WrongAudience => "userinfo_wrong_aud",
            UserinfoError::MissingSubject => "userinfo_missing_sub",
            UserinfoError::SubjectMismatch => "userinfo_sub_mismatch",
        }
    }
}

/// Whether to ask userinfo, given the claims the ID token carries.
pub fn wants_userinfo(
    mode: UserinfoMode,
    id_token_claims: &Map<String, Value>,
    wanted: &[String],
) -> bool {
    match mode {
        UserinfoMode::Never => false,
        UserinfoMode::Always => true,
        UserinfoMode::Auto => wanted
            .iter()
            .any(|path| claim_at(id_token_claims, path).is_none_or(Value::is_null)),
    }
}

/// The ID token's claims completed by userinfo: End-User claims from
/// userinfo win (they are the fresher), the ID token's own claims stay.
pub fn merge_claims(
    id_token_claims: &Map<String, Value>,
    userinfo: &Map<String, Value>,
) -> Map<String, Value> {
    let mut merged = id_token_claims.clone();
    for (name, value) in userinfo {
        if !ID_TOKEN_CLAIMS.contains(&name.as_str()) && !value.is_null() {
            merged.insert(name.clone(), value.clone());
        }
    }
    merged
}

/// Core §5.3.2 and `rp-userinfo-bad-sub-claim`: userinfo's `sub` must be
/// exactly the ID token's.
pub fn check_subject(
    id_token_subject: &str,
    userinfo: &Map<String, Value>,
) -> Result<(), UserinfoError> {
    match userinfo.get("sub").and_then(Value::as_str) {
        None => Err(UserinfoError::MissingSubject),
        Some(subject) if subject == id_token_subject => Ok(()),
        Some(_) => Err(UserinfoError::SubjectMismatch),
    }
}

/// A signed answer's `iss` and `aud`, when present, must be the provider's
/// issuer and our client id (Core §5.3.2).
pub fn check_signed_claims(
    claims: &Map<String, Value>,
    issuer: &str,
    client_id: &str,
) -> Result<(), UserinfoError> {
    if let Some(iss) = claims.get("iss") {
        if iss.as_str() != Some(issuer) {
            return Err(UserinfoError::WrongIssuer);
        }
    }
    match claims.get("aud") {
        None => Ok(()),
        Some(Value::String(audience)) if audience == client_id => Ok(()),
        Some(Value::Array(audiences))
            if audiences
                .iter()
                .any(|audience| audience.as_str() == Some(client_id)) =>
        {
            Ok(())
        }
        Some(_) => Err(UserinfoError::WrongAudience),
    }
}

/// How the body of a userinfo answer is to be read.
#[derive(Debug, PartialEq, Eq)]
enum AnswerKind {
    Json,
    Jwt,
}

/// From the `Content-Type` (parameters ignored, case-insensitive).
fn answer_kind(content_type: Option<&str>) -> Result<AnswerKind, UserinfoError> {
    let essence = content_type
        .and_then(|text| text.split(';').next())
        .map(|text| text.trim().to_ascii_lowercase())
        .unwrap_or_default();
    match essence.as_str() {
        "application/json" => Ok(AnswerKind::Json),
        "application/jwt" => Ok(AnswerKind::Jwt),
        other => Err(UserinfoError::Malformed(format!(
            "content type {:?} is neither application/json nor application/jwt",
            other.chars().take(64).collect::<String>()
        ))),
    }
}

fn json_object(bytes: &[u8]) -> Result<Map<String, Value>, UserinfoError> {
    match serde_json::from_slice(bytes) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(UserinfoError::Malformed("not a JSON object".into())),
        Err(error) => Err(UserinfoError::Malformed(format!("not JSON: {error}"))),
    }
}

/// Asks the userinfo endpoint with `access_token`; returns its claims
/// (verified when signed; `sub` not yet compared).
pub async fn fetch_userinfo(
    handle: &ProviderHandle,
    provider: &Provider,
    endpoint: &Url,
    access_token: &str,
) -> Result<Map<String, Value>, UserinfoError> {
    let mut response = handle
        .http()
        .get(endpoint.clone())
        .bearer_auth(access_token)
        .header(http::header::ACCEPT, "application/json, application/jwt")
        .send()
        .await
        .map_err(|error| UserinfoError::Unreachable(error_chain(&error)))?;
    let status = response.status();
    if status.is_server_error() {
        return Err(UserinfoError::Unreachable(format!(
            "the provider answered {status}"
        )));
    }
    if !status.is_success() {
        return Err(UserinfoError::Refused(status.as_u16()));
    }
    let kind = answer_kind(
        response
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok()),
    )?;
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|error| UserinfoError::Unreachable(error_chain(&error)))?
    {
        if body.len() + chunk.len() > MAX_USERINFO_BYTES {
            return Err(UserinfoError::Malformed(format!(
                "longer than {MAX_USERINFO_BYTES} bytes"
            )));
        }
        body.extend_from_slice(&chunk);
    }
    match kind {
        AnswerKind::Json => json_object(&body),
        AnswerKind::Jwt => {
            let token = std::str::from_utf8(&body)
                .map_err(|_| UserinfoError::Malformed("signed answer is not text".into()))?
                .trim();
            let claims = verify_signed(handle, provider, token).await?;
            check_signed_claims(
                &claims,
                provider.expectations.issuer.as_str(),
                provider.expectations.client_id.as_str(),
            )?;
            Ok(claims)
        }
    }
}

/// Verifies a signed answer with the provider's keys, refetching the JWKS
/// at once when its kid is unknown, as for ID tokens: the answer came from
/// the provider itself, so a junk kid from a client cannot be behind it.
async fn verify_signed(
    handle: &ProviderHandle,
    provider: &Provider,
    token: &str,
) -> Result<Map<String, Value>, UserinfoError> {
    let algorithms = &provider.expectations.allowed_algs;
    let verified = match verify_jws(token, &provider.jwks(), algorithms) {
        Err(TokenRejection::UnknownKey)
            if handle
                .refresh_jwks_for_provider_answer(super::jws::unverified_kid(token).as_deref())
                .await =>
        {
            let current = handle.get();
            let jwks = current
                .as_ref()
                .map_or_else(|| provider.jwks(), |fresh| fresh.jwks());
            verify_jws(token, &jwks, algorithms)
        }
        other => other,
    };
    verified
        .map(|jws| jws.claims)
        .map_err(UserinfoError::Signature)
}

/// The claims to build the identity from: the ID token's, completed from
/// userinfo when `settings.userinfo` says so and the provider has a
/// userinfo endpoint. Returns whether userinfo was asked, too.
pub async fn complete_claims(
    handle: &ProviderHandle,
    provider: &Provider,
    settings: &OidcConfig,
    id_token_claims: Map<String, Value>,
    access_token: &str,
) -> Result<(Map<String, Value>, bool), UserinfoError> {
    let Some(endpoint) = provider.client.user_info_url() else {
        return Ok((id_token_claims, false));
    };
    if !wants_userinfo(settings.userinfo, &id_token_claims, &settings.wanted_claims) {
        return Ok((id_token_claims, false));
    }
    let answer = fetch_userinfo(handle, provider, endpoint.url(), access_token).await?;
    let subject = id_token_claims
        .get("sub")
        .and_then(Value::as_str)
        .unwrap_or_default();
    check_subject(subject, &answer)?;
    Ok((merge_claims(&id_token_claims, &answer), true))
}

/// The claims of an ID token portico verified earlier and kept sealed in
/// the session (read again on a refresh that brings no new ID token).
pub fn stored_id_token_claims(id_token: &str) -> Option<Map<String, Value>> {
    let payload = id_token.split('.').nth(1)?;
    let bytes = URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    match serde_json::from_slice(&bytes).ok()? {
        Value::Object(map) => Some(map),
        _ => None,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => Map::new(),
        }
    }

    fn wanted() -> Vec<String> {
        ["email", "name", "preferred_username", "realm.roles"]
            .iter()
            .map(|name| (*name).to_string())
            .collect()
    }

    #[test]
    fn auto_asks_only_when_a_wanted_claim_is_missing() {
        let full = map(json!({
            "sub": "a", "email": "a@x", "name": "A", "preferred_username": "a",
            "realm": {"roles": []}
        }));
        assert!(!wants_userinfo(UserinfoMode::Auto, &full, &wanted()));
        let mut no_roles = full.clone();
        no_roles.insert("realm".into(), json!({}));
        assert!(wants_userinfo(UserinfoMode::Auto, &no_roles, &wanted()));
        let mut null_email = full.clone();
        null_email.insert("email".into(), Value::Null);
        assert!(wants_userinfo(UserinfoMode::Auto, &null_email, &wanted()));
        let only_sub = map(json!({"sub": "a"}));
        assert!(wants_userinfo(UserinfoMode::Auto, &only_sub, &wanted()));
    }

    #[test]
    fn always_and_never_ignore_the_claims() {
        let only_sub = map(json!({"sub": "a"}));
        let full = map(json!({"sub": "a", "email": "a@x"}));
        assert!(!wants_userinfo(UserinfoMode::Never, &only_sub, &wanted()));
        assert!(wants_userinfo(UserinfoMode::Always, &full, &[]));
    }

    #[test]
    fn userinfo_fills_end_user_claims_but_never_the_id_tokens_own() {
        let id_token = map(json!({
            "iss": "https://op", "sub": "alice", "aud": "portico", "exp": 100, "iat": 50,
            "auth_time": 40, "nonce": "n", "amr": ["pwd"], "sid": "s1", "roles": ["admin"]
        }));
        let userinfo = map(json!({
            "iss": "https://evil", "sub": "mallory", "aud": "other", "exp": 999999,
            "iat": 1, "auth_time": 1, "nonce": "x", "amr": ["none"], "sid": "s2",
            "dsub": "mallory", "email": "alice@x", "roles": [], "name": null,
            "org": {"id": "acme"}
        }));
        let merged = merge_claims(&id_token, &userinfo);
        for name in [
            "iss",
            "sub",
            "aud",
            "exp",
            "iat",
            "auth_time",
            "nonce",
            "amr",
            "sid",
        ] {
            assert_eq!(merged[name], id_token[name], "{name}");
        }
        assert!(!merged.contains_key("dsub"));
        assert_eq!(merged["email"], "alice@x");
        assert_eq!(merged["roles"], json!([]), "the fresher roles win");
        assert!(!merged.contains_key("name"), "a null fills nothing");
        assert_eq!(merged["org"]["id"], "acme");
    }

    #[test]
    fn a_userinfo_sub_must_equal_the_id_tokens() {
        assert_eq!(
            check_subject("alice", &map(json!({"sub": "alice"}))),
            Ok(())
        );
        assert_eq!(
            check_subject("alice", &map(json!({"sub": "mallory"}))),
            Err(UserinfoError::SubjectMismatch)
        );
        assert_eq!(
            check_subject("alice", &map(json!({"sub": "Alice"}))),
            Err(UserinfoError::SubjectMismatch),
            "compared exactly"
        );
        assert_eq!(
            check_subject("alice", &map(json!({"email": "a@x"}))),
            Err(UserinfoError::MissingSubject)
        );
        assert_eq!(
            check_subject("alice", &map(json!({"sub": 7}))),
            Err(UserinfoError::MissingSubject)
        );
    }

    #[test]
    fn signed_answers_must_name_our_issuer_and_client_when_they_name_any() {
        let check = |claims: Value| check_signed_claims(&map(claims), "https://op", "portico");
        assert_eq!(check(json!({"sub": "a"})), Ok(()));
        assert_eq!(
            check(json!({"iss": "https://op", "aud": "portico"})),
            Ok(())
        );
        assert_eq!(check(json!({"aud": ["api", "portico"]})), Ok(()));
        assert_eq!(
            check(json!({"iss": "https://op/"})),
            Err(UserinfoError::WrongIssuer)
        );
        assert_eq!(check(json!({"iss": 1})), Err(UserinfoError::WrongIssuer));
        assert_eq!(
            check(json!({"aud": "api"})),
            Err(UserinfoError::WrongAudience)
        );
        assert_eq!(
            check(json!({"aud": ["api"]})),
            Err(UserinfoError::WrongAudience)
        );
    }

    #[test]
    fn answers_are_json_or_jwt_by_content_type() {
        assert_eq!(answer_kind(Some("application/json")), Ok(AnswerKind::Json));
        assert_eq!(
            answer_kind(Some("Application/JSON; charset=utf-8")),
            Ok(AnswerKind::Json)
        );
        assert_eq!(answer_kind(Some("application/jwt")), Ok(AnswerKind::Jwt));
        assert!(matches!(
            answer_kind(Some("text/html")),
            Err(UserinfoError::Malformed(_))
        ));
        assert!(matches!(
            answer_kind(None),
            Err(UserinfoError::Malformed(_))
        ));
        assert!(matches!(
            json_object(b"[1]"),
            Err(UserinfoError::Malformed(_))
        ));
        assert!(matches!(
            json_object(b"{"),
            Err(UserinfoError::Malformed(_))
        ));
    }

    #[test]
    fn error_labels_are_distinct() {
        let all = [
            UserinfoError::Unreachable(String::new()),
            UserinfoError::Refused(401),
            UserinfoError::Malformed(String::new()),
            UserinfoError::Signature(TokenRejection::UnknownKey),
            UserinfoError::WrongIssuer,
            UserinfoError::WrongAudience,
            UserinfoError::MissingSubject,
            UserinfoError::SubjectMismatch,
        ];
        let labels: std::collections::BTreeSet<_> = all.iter().map(UserinfoError::label).collect();
        assert_eq!(labels.len(), all.len());
    }

    #[test]
    fn a_stored_id_tokens_claims_are_read_back() {
        let payload = URL_SAFE_NO_PAD.encode(br#"{"sub":"alice","roles":["a"]}"#);
        let claims = stored_id_token_claims(&format!("e30.{payload}.sig")).unwrap();
        assert_eq!(claims["sub"], "alice");
        assert!(stored_id_token_claims("garbage").is_none());
    }
}
