//! Route rules over the signed-in user's claims.
//!
//! A request must pass every rule its route gives. Each rule is a plain
//! function of the claims, so the decision is testable without HTTP:
//! `require_roles` (any of), `require_all_roles`, `require_permissions` (all
//! of), `require_tenant_roles` (any of the roles in that Descope tenant),
//! `allowed_emails` / `allowed_email_domains` (verified addresses only),
//! `require_claims` (the claim holds one of the values), and `require_amr`
//! (every method, e.g. a passkey) — the one rule whose failure asks a
//! browser to sign in again (step-up) instead of refusing.

use serde_json::Value;

use crate::config::RouteConfig;
use crate::oidc::claim_at;
use crate::session::SessionData;

/// What a route's rules say about a user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allow,
    /// Refused; names the first rule that failed (for logs, never shown).
    Deny(&'static str),
    /// Everything passes but `require_amr`: a fresh sign-in may satisfy it.
    StepUp,
}

/// Whether `who` passes every rule of `route`.
pub fn decide(route: &RouteConfig, who: &SessionData) -> Decision {
    let rules = &route.rules;
    if !route.require_roles.is_empty()
        && !route.require_roles.iter().any(|role| has(&who.roles, role))
    {
        return Decision::Deny("require_roles");
    }
    if !rules
        .require_all_roles
        .iter()
        .all(|role| has(&who.roles, role))
    {
        return Decision::Deny("require_all_roles");
    }
    if !rules
        .require_permissions
        .iter()
        .all(|permission| has(&who.permissions, permission))
    {
        return Decision::Deny("require_permissions");
    }
    if let Some(tenant) = &rules.require_tenant_roles {
        let tenant_roles = crate::oidc::string_list(
            who.claims
                .get("tenants")
                .and_then(|tenants| tenants.get(&tenant.tenant))
                .and_then(|entry| entry.get("roles")),
        );
        if !tenant.roles.iter().any(|role| has(&tenant_roles, role)) {
            return Decision::Deny("require_tenant_roles");
        }
    }
    if !rules.allowed_emails.is_empty() || !rules.allowed_email_domains.is_empty() {
        let Some(email) = verified_email(who) else {
            return Decision::Deny("allowed_emails");
        };
        let listed = rules.allowed_emails.contains(&email);
        let domain_listed = email
            .split_once('@')
            .filter(|(_, domain)| !domain.contains('@'))
            .is_some_and(|(_, domain)| {
                rules
                    .allowed_email_domains
                    .iter()
                    .any(|allowed| allowed == domain)
            });
        if !listed && !domain_listed {
            return Decision::Deny("allowed_emails");
        }
    }
    for (path, accepted) in &rules.require_claims {
        let held = claim_values(claim_at(&who.claims, path));
        if !accepted.iter().any(|value| held.contains(value)) {
            return Decision::Deny("require_claims");
        }
    }
    if !rules.require_amr.iter().all(|method| has(&who.amr, method)) {
        return Decision::StepUp;
    }
    Decision::Allow
}

fn has(list: &[String], wanted: &str) -> bool {
    list.iter().any(|item| item == wanted)
}

/// The lower-cased email, if the provider did not say it is unverified and
/// it has exactly one '@'.
fn verified_email(who: &SessionData) -> Option<String> {
    if who.email_verified == Some(false) {
        return None;
    }
    let email = who.email.as_ref()?.to_ascii_lowercase();
    (email.matches('@').count() == 1).then_some(email)
}

/// A claim's values as strings: a string, a list, or a number/bool.
fn claim_values(value: Option<&Value>) -> Vec<String> {
    fn one(value: &Value) -> Option<String> {
        match value {
            Value::String(text) => Some(text.clone()),
            Value::Number(number) => Some(number.to_string()),
            Value::Bool(flag) => Some(flag.to_string()),
            _ => None,
        }
    }
    match value {
        Some(Value::Array(items)) => items.iter().filter_map(one).collect(),
        Some(other) => one(other).into_iter().collect(),
        None => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{RouteRules, TenantRoles};
    use serde_json::json;

    fn route(change: impl FnOnce(&mut RouteConfig)) -> RouteConfig {
        let mut route = RouteConfig::new("/", url::Url::parse("http://127.0.0.1:1").unwrap());
        change(&mut route);
        route
    }

    fn user() -> SessionData {
        let mut data = SessionData::for_bearer(crate::session::Identity {
            sub: "u".into(),
            email: Some("Ada@Example.com".into()),
            email_verified: Some(true),
            roles: vec!["viewer".into(), "ops".into()],
            groups: vec!["admin".into()],
            permissions: vec!["read".into(), "write".into()],
            amr: vec!["pwd".into()],
            ..Default::default()
        });
        data.claims = json!({
            "tenants": {"T1": {"roles": ["tenant-admin"]}, "T2": {"roles": ["member"]}},
            "org": {"team": "blue", "level": 3},
            "flags": ["beta", "staff"],
        })
        .as_object()
        .unwrap()
        .clone();
        data
    }

    fn rules(change: impl FnOnce(&mut RouteRules)) -> RouteConfig {
        route(|route| change(&mut route.rules))
    }

    #[test]
    fn no_rules_admit_any_signed_in_user() {
        assert_eq!(decide(&route(|_| {}), &user()), Decision::Allow);
    }

    #[test]
    fn require_roles_is_any_of_and_groups_do_not_count() {
        assert_eq!(
            decide(
                &route(|r| r.require_roles = vec!["x".into(), "ops".into()]),
                &user()
            ),
            Decision::Allow
        );
        assert_eq!(
            decide(&route(|r| r.require_roles = vec!["admin".into()]), &user()),
            Decision::Deny("require_roles")
        );
    }

    #[test]
    fn require_all_roles_needs_every_role() {
        assert_eq!(
            decide(
                &rules(|r| r.require_all_roles = vec!["viewer".into(), "ops".into()]),
                &user()
            ),
            Decision::Allow
        );
        assert_eq!(
            decide(
                &rules(|r| r.require_all_roles = vec!["viewer".into(), "root".into()]),
                &user()
            ),
            Decision::Deny("require_all_roles")
        );
    }

    #[test]
    fn require_permissions_needs_every_permission() {
        assert_eq!(
            decide(
                &rules(|r| r.require_permissions = vec!["read".into()]),
                &user()
            ),
            Decision::Allow
        );
        assert_eq!(
            decide(
                &rules(|r| r.require_permissions = vec!["read".into(), "delete".into()]),
                &user()
            ),
            Decision::Deny("require_permissions")
        );
    }

    #[test]
    fn tenant_roles_are_read_from_that_tenant_only() {
        let tenant = |name: &str, role: &str| {
            rules(|r| {
                r.require_tenant_roles = Some(TenantRoles {
                    tenant: name.into(),
                    roles: vec![role.into()],
                })
            })
        };
        assert_eq!(
            decide(&tenant("T1", "tenant-admin"), &user()),
            Decision::Allow
        );
        assert_eq!(
            decide(&tenant("T2", "tenant-admin"), &user()),
            Decision::Deny("require_tenant_roles")
        );
        assert_eq!(
            decide(&tenant("T9", "member"), &user()),
            Decision::Deny("require_tenant_roles")
        );
    }

    #[test]
    fn emails_and_domains_match_exactly_and_need_verification() {
        assert_eq!(
            decide(
                &rules(|r| r.allowed_emails = vec!["ada@example.com".into()]),
                &user()
            ),
            Decision::Allow
        );
        assert_eq!(
            decide(
                &rules(|r| r.allowed_email_domains = vec!["example.com".into()]),
                &user()
            ),
            Decision::Allow
        );
        assert_eq!(
            decide(
                &rules(|r| r.allowed_email_domains = vec!["ample.com".into()]),
                &user()
            ),
            Decision::Deny("allowed_emails")
        );
        let mut unverified = user();
        unverified.email_verified = Some(false);
        assert_eq!(
            decide(
                &rules(|r| r.allowed_email_domains = vec!["example.com".into()]),
                &unverified
            ),
            Decision::Deny("allowed_emails")
        );
        let mut tricky = user();
        tricky.email = Some("ada@evil.com@example.com".into());
        assert_eq!(
            decide(
                &rules(|r| r.allowed_email_domains = vec!["example.com".into()]),
                &tricky
            ),
            Decision::Deny("allowed_emails")
        );
    }

    #[test]
    fn required_claims_follow_dot_paths_and_accept_any_listed_value() {
        let claim = |path: &str, values: &[&str]| {
            rules(|r| {
                r.require_claims.insert(
                    path.into(),
                    values.iter().map(|value| value.to_string()).collect(),
                );
            })
        };
        assert_eq!(
            decide(&claim("org.team", &["red", "blue"]), &user()),
            Decision::Allow
        );
        assert_eq!(
            decide(&claim("org.level", &["3"]), &user()),
            Decision::Allow
        );
        assert_eq!(
            decide(&claim("flags", &["staff"]), &user()),
            Decision::Allow
        );
        assert_eq!(
            decide(&claim("org.team", &["red"]), &user()),
            Decision::Deny("require_claims")
        );
        assert_eq!(
            decide(&claim("org.missing", &["x"]), &user()),
            Decision::Deny("require_claims")
        );
    }

    #[test]
    fn missing_amr_asks_for_step_up_but_other_failures_deny_first() {
        let passkey = rules(|r| r.require_amr = vec!["webauthn".into()]);
        assert_eq!(decide(&passkey, &user()), Decision::StepUp);
        let mut with_passkey = user();
        with_passkey.amr = vec!["webauthn".into()];
        assert_eq!(decide(&passkey, &with_passkey), Decision::Allow);
        let both = rules(|r| {
            r.require_amr = vec!["webauthn".into()];
            r.require_permissions = vec!["delete".into()];
        });
        assert_eq!(
            decide(&both, &user()),
            Decision::Deny("require_permissions")
        );
    }
}
