//! From verified ID token claims to the identity a session keeps.
//!
//! Roles and groups come from configurable claims (`roles_claim`,
//! `groups_claim`, dot paths allowed for nested claims); a claim may hold a
//! list of strings or one string.

use openidconnect::LocalizedClaim;

use super::types::PorticoIdTokenClaims;
use crate::config::OidcConfig;
use crate::session::Identity;

pub fn identity_from_claims(claims: &PorticoIdTokenClaims, settings: &OidcConfig) -> Identity {
    let other = &claims.additional_claims().claims;
    Identity {
        sub: claims.subject().to_string(),
        email: claims.email().map(|email| email.to_string()),
        name: claims.name().and_then(default_localized),
        preferred_username: claims
            .preferred_username()
            .map(|username| username.to_string()),
        roles: string_list(claim_at(other, &settings.roles_claim)),
        groups: string_list(claim_at(other, &settings.groups_claim)),
        provider_sid: other
            .get("sid")
            .and_then(|value| value.as_str())
            .map(str::to_string),
        access_token_expires_at: None,
    }
}

fn default_localized<T: std::ops::Deref<Target = String>>(
    claim: &LocalizedClaim<T>,
) -> Option<String> {
    claim.get(None).map(|value| value.to_string())
}

/// The claim at a dot path ("realm_access.roles") in the extra claims.
pub fn claim_at<'a>(
    claims: &'a serde_json::Map<String, serde_json::Value>,
    path: &str,
) -> Option<&'a serde_json::Value> {
    if let Some(value) = claims.get(path) {
        return Some(value);
    }
    let mut parts = path.split('.');
    let mut current = claims.get(parts.next()?)?;
    for part in parts {
        current = current.as_object()?.get(part)?;
    }
    Some(current)
}

/// A list of strings from a claim holding a list or one string (space or
/// comma separated strings are not split: a claim says what it says).
pub fn string_list(value: Option<&serde_json::Value>) -> Vec<String> {
    match value {
        Some(serde_json::Value::Array(items)) => items
            .iter()
            .filter_map(|item| item.as_str().map(str::to_string))
            .collect(),
        Some(serde_json::Value::String(single)) => vec![single.clone()],
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn nested_claims_are_found_by_dot_path() {
        let claims = json!({"realm_access": {"roles": ["a", "b"]}, "roles": ["top"]});
        let map = claims.as_object().unwrap();
        assert_eq!(
            string_list(claim_at(map, "realm_access.roles")),
            vec!["a", "b"]
        );
        assert_eq!(string_list(claim_at(map, "roles")), vec!["top"]);
        assert!(claim_at(map, "missing.path").is_none());
    }

    #[test]
    fn a_single_string_claim_is_a_one_item_list() {
        assert_eq!(string_list(Some(&json!("admin"))), vec!["admin"]);
        assert!(string_list(Some(&json!(42))).is_empty());
    }
}
