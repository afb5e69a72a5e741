//! Route rules over the signed-in user's claims.
//!
//! `require_roles` is any-of over the roles claim: an empty list means any
//! signed-in user. More rule kinds (all-of roles, permissions, tenant roles,
//! emails, amr, any claim) join this module as plain functions.

use crate::config::RouteConfig;
use crate::session::SessionData;

/// Whether `session` passes every rule of `route`.
pub fn route_allows(route: &RouteConfig, session: &SessionData) -> bool {
    route.require_roles.is_empty()
        || route
            .require_roles
            .iter()
            .any(|required| session.roles.iter().any(|role| role == required))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(roles: &[&str]) -> RouteConfig {
        RouteConfig {
            path_prefix: "/".into(),
            host: None,
            upstream: url::Url::parse("http://127.0.0.1:1").unwrap(),
            public: false,
            api: false,
            require_roles: roles.iter().map(|role| role.to_string()).collect(),
        }
    }

    fn session(roles: &[&str]) -> SessionData {
        SessionData {
            sub: "u".into(),
            email: None,
            name: None,
            preferred_username: None,
            roles: roles.iter().map(|role| role.to_string()).collect(),
            groups: vec!["admin".into()],
            provider_sid: None,
            created_at: 0,
            last_active_at: 0,
            expires_at: 0,
            access_token_expires_at: None,
            sealed_tokens: String::new(),
        }
    }

    #[test]
    fn no_required_roles_admits_any_signed_in_user() {
        assert!(route_allows(&route(&[]), &session(&[])));
    }

    #[test]
    fn any_one_of_the_required_roles_is_enough() {
        assert!(route_allows(&route(&["admin", "ops"]), &session(&["ops"])));
    }

    #[test]
    fn missing_every_required_role_is_refused_even_with_a_matching_group() {
        assert!(!route_allows(&route(&["admin"]), &session(&["viewer"])));
    }
}
