//! From verified claims (an ID token's or a bearer JWT's) to the identity
//! portico keeps and judges.
//!
//! Roles, groups and permissions come from configurable claims (dot paths
//! allowed for nested claims); a claim may hold a list of strings or one
//! string. Only the extra claims some route rule reads are kept
//! (`oidc.kept_claims`), so records stay small. For Descope, `dsub` (when
//! present) names the user instead of `sub`.

use serde_json::{Map, Value};

use super::types::PorticoIdTokenClaims;
use crate::config::{OidcConfig, ProviderKind};
use crate::session::Identity;

/// The identity in a verified ID token.
pub fn identity_from_claims(claims: &PorticoIdTokenClaims, settings: &OidcConfig) -> Identity {
    match serde_json::to_value(claims) {
        Ok(Value::Object(map)) => identity_from_json(&map, settings),
        _ => Identity {
            sub: claims.subject().to_string(),
            ..Identity::default()
        },
    }
}

/// The identity in a verified JWT's claims.
pub fn identity_from_json(claims: &Map<String, Value>, settings: &OidcConfig) -> Identity {
    let text = |name: &str| claims.get(name).and_then(Value::as_str).map(str::to_string);
    let mut sub = text("sub").unwrap_or_default();
    if settings.provider == ProviderKind::Descope {
        if let Some(descope_subject) = text("dsub").filter(|value| !value.is_empty()) {
            sub = descope_subject;
        }
    }
    let kept = settings
        .kept_claims
        .iter()
        .filter_map(|name| claims.get(name).map(|value| (name.clone(), value.clone())))
        .collect();
    Identity {
        sub,
        email: text("email"),
        name: text("name"),
        preferred_username: text("preferred_username"),
        roles: string_list(claim_at(claims, &settings.roles_claim)),
        groups: string_list(claim_at(claims, &settings.groups_claim)),
        permissions: string_list(claim_at(claims, &settings.permissions_claim)),
        amr: string_list(claims.get("amr")),
        email_verified: claims.get("email_verified").and_then(|value| match value {
            Value::Bool(flag) => Some(*flag),
            Value::String(text) => Some(text == "true"),
            _ => None,
        }),
        claims: kept,
        provider_sid: text("sid"),
        access_token_expires_at: None,
    }
}

/// The claim at a dot path ("realm_access.roles"); a literal key with dots wins.
pub fn claim_at<'a>(claims: &'a Map<String, Value>, path: &str) -> Option<&'a Value> {
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

/// A list of strings from a claim holding a list or one string (a claim says
/// what it says: space- or comma-separated strings are not split).
pub fn string_list(value: Option<&Value>) -> Vec<String> {
    match value {
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|item| item.as_str().map(str::to_string))
            .collect(),
        Some(Value::String(single)) => vec![single.clone()],
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
