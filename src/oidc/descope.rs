//! Descope session JWTs as bearer tokens: which issuers name the project,
//! and the audience rule for them.
//!
//! A Descope session JWT (the hosted flow's session, the `DS` cookie, and the
//! `sessionJwt` that `POST /v1/auth/accesskey/exchange` returns) carries no
//! `aud` unless the project's JWT template adds one, and its `iss` is the
//! bare project id on older projects, `{base}/{project id}` when the
//! template's conformance issuer is on, `{base}/v1/apps/{project id}` for
//! access-key exchanges (Descope's Terraform provider docs, resource
//! `descope_access_key`, "Token Issuer Mismatch"), or a federated app's
//! `{base}/{project id}/{app id}` (descope/descope-js web-js-sdk `createOidc`
//! with `applicationId`). Descope's SDKs bind such a token to the project by
//! its keys (`/v2/keys/{project id}`, descope/go-sdk
//! `descope/internal/auth/jwt.go`) and issuer, not by `aud`.
//!
//! So portico accepts one without `aud` when its issuer is one of the
//! project's forms and the project's keys signed it, and refuses one whose
//! `aud` names only others: a token minted for another application stays
//! out. This is one decision, apart from the generic audience check.

use serde_json::{Map, Value};
use url::Url;

use super::verify::TokenRejection;

/// Whether `iss` is one of this project's session-token issuers.
pub fn is_project_session_issuer(
    iss: &str,
    project_id: &str,
    base_url: &Url,
    configured_issuer: &str,
) -> bool {
    if iss == project_id || iss == configured_issuer {
        return true;
    }
    let base = base_url.as_str().trim_end_matches('/');
    if iss == format!("{base}/{project_id}") || iss == format!("{base}/v1/apps/{project_id}") {
        return true;
    }
    // A federated app: exactly one more path segment under the project.
    iss.strip_prefix(&format!("{base}/{project_id}/"))
        .is_some_and(|app| {
            !app.is_empty()
                && app
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        })
}

/// The audience rule for a project session token: no `aud` (or an empty
/// one) is accepted; an `aud` must name one of `accepted`; an `azp`, when
/// present, too.
pub fn check_session_audience(
    claims: &Map<String, Value>,
    accepted: &[String],
) -> Result<(), TokenRejection> {
    let audiences: Vec<&str> = match claims.get("aud") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(single)) => vec![single.as_str()],
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).collect(),
        Some(_) => {
            return Err(TokenRejection::Audience(
                "aud is not a string or list".into(),
            ))
        }
    };
    let ours = |audience: &str| accepted.iter().any(|accepted| accepted == audience);
    if !audiences.is_empty() && !audiences.iter().any(|audience| ours(audience)) {
        return Err(TokenRejection::Audience(audiences.join(" ")));
    }
    if let Some(party) = claims.get("azp").and_then(Value::as_str) {
        if !ours(party) {
            return Err(TokenRejection::AuthorizedParty(party.to_string()));
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_project_s_issuer_forms_are_recognised_and_others_are_not() {
        let base = Url::parse("https://auth.example.com").unwrap();
        let configured = "https://auth.example.com/P2abc";
        let check = |iss: &str| is_project_session_issuer(iss, "P2abc", &base, configured);
        assert!(check("P2abc"));
        assert!(check("https://auth.example.com/P2abc"));
        assert!(check("https://auth.example.com/v1/apps/P2abc"));
        assert!(check("https://auth.example.com/P2abc/my-app"));
        assert!(!check("P2other"));
        assert!(!check("https://auth.example.com/P2other"));
        assert!(!check("https://evil.example/P2abc"));
        assert!(!check("https://auth.example.com/P2abc/"));
        assert!(!check("https://auth.example.com/P2abc/a/b"));
        assert!(!check("https://auth.example.com/P2abcd"));
    }

    #[test]
    fn no_audience_passes_and_a_foreign_one_does_not() {
        let accepted = vec!["P2abc".to_string()];
        let claims = |value: Value| value.as_object().unwrap().clone();
        assert!(check_session_audience(&claims(json!({"sub": "k"})), &accepted).is_ok());
        assert!(check_session_audience(&claims(json!({"aud": []})), &accepted).is_ok());
        assert!(check_session_audience(&claims(json!({"aud": "P2abc"})), &accepted).is_ok());
        assert!(check_session_audience(&claims(json!({"aud": ["x", "P2abc"]})), &accepted).is_ok());
        assert!(matches!(
            check_session_audience(&claims(json!({"aud": "other-app"})), &accepted),
            Err(TokenRejection::Audience(_))
        ));
        assert!(matches!(
            check_session_audience(&claims(json!({"azp": "other-app"})), &accepted),
            Err(TokenRejection::AuthorizedParty(_))
        ));
        assert!(check_session_audience(&claims(json!({"aud": 7})), &accepted).is_err());
    }
}
