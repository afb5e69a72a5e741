//! The session record: what a signed-in request needs, and when it is due
//! for an extension or over.

use serde::{Deserialize, Serialize};

/// Idle expiry is extended at most this often per session.
pub const EXTEND_INTERVAL_SECONDS: i64 = 60;

/// What a signed-in request needs, stored in the session record.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SessionData {
    pub sub: String,
    pub email: Option<String>,
    pub name: Option<String>,
    pub preferred_username: Option<String>,
    pub roles: Vec<String>,
    pub groups: Vec<String>,
    #[serde(default)]
    pub permissions: Vec<String>,
    /// How the user authenticated (`amr`), e.g. ["webauthn"].
    #[serde(default)]
    pub amr: Vec<String>,
    #[serde(default)]
    pub email_verified: Option<bool>,
    /// The claims route rules read (`oidc.kept_claims`), as the provider sent them.
    #[serde(default)]
    pub claims: serde_json::Map<String, serde_json::Value>,
    /// The provider's session id (`sid`), for back-channel logout.
    pub provider_sid: Option<String>,
    /// Unix seconds.
    pub created_at: i64,
    pub last_active_at: i64,
    /// When the record ends: min(created_at + ttl, last_active_at + idle_timeout).
    pub expires_at: i64,
    /// When the access token expires, if the provider said.
    pub access_token_expires_at: Option<i64>,
    /// `TokenSet` as JSON, sealed.
    pub sealed_tokens: String,
    /// The identity headers built from this record, once per shared copy
    /// (never stored; see [`HeaderMemo`]).
    #[serde(skip)]
    pub identity_headers: HeaderMemo,
}

/// Headers built from a record, kept with it so that a record shared by the
/// local cache builds them once rather than on every request. A clone
/// starts empty (a copy may be changed, and then builds its own), and code
/// that changes identity fields in place calls [`HeaderMemo::clear`].
#[derive(Default)]
pub struct HeaderMemo(std::sync::OnceLock<Vec<(http::HeaderName, http::HeaderValue)>>);

impl HeaderMemo {
    pub fn get_or_init(
        &self,
        build: impl FnOnce() -> Vec<(http::HeaderName, http::HeaderValue)>,
    ) -> &[(http::HeaderName, http::HeaderValue)] {
        self.0.get_or_init(build)
    }

    pub fn clear(&mut self) {
        self.0 = std::sync::OnceLock::new();
    }
}

impl Clone for HeaderMemo {
    fn clone(&self) -> Self {
        HeaderMemo::default()
    }
}

/// Derived data: never part of what makes two records equal.
impl PartialEq for HeaderMemo {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl std::fmt::Debug for HeaderMemo {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("HeaderMemo")
    }
}

/// The provider's tokens for a session. Never logged, never sent to a browser.
#[derive(Clone, Serialize, Deserialize)]
pub struct TokenSet {
    pub access_token: String,
    pub refresh_token: Option<String>,
    pub id_token: String,
}

impl std::fmt::Debug for TokenSet {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("TokenSet { *** }")
    }
}

/// What a session's timestamps say at a given moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// Valid; nothing to write.
    Live,
    /// Valid, and the idle expiry should be pushed forward (one write).
    Extend,
    /// Past its absolute or idle end.
    Expired,
}

/// Decides whether a session is live, due for an idle extension, or over.
pub fn freshness(data: &SessionData, now: i64, idle_timeout_seconds: i64) -> Freshness {
    if now >= data.expires_at || now >= data.last_active_at + idle_timeout_seconds {
        return Freshness::Expired;
    }
    if now - data.last_active_at >= EXTEND_INTERVAL_SECONDS {
        return Freshness::Extend;
    }
    Freshness::Live
}

/// Who signed in, as the ID token (or a bearer JWT) said.
#[derive(Debug, Clone, Default)]
pub struct Identity {
    pub sub: String,
    pub email: Option<String>,
    pub name: Option<String>,
    pub preferred_username: Option<String>,
    pub roles: Vec<String>,
    pub groups: Vec<String>,
    pub permissions: Vec<String>,
    pub amr: Vec<String>,
    pub email_verified: Option<bool>,
    pub claims: serde_json::Map<String, serde_json::Value>,
    pub provider_sid: Option<String>,
    pub access_token_expires_at: Option<i64>,
}

impl SessionData {
    /// A record-shaped view of a principal that has no session (a bearer
    /// token): the same rules and headers apply to it.
    pub fn for_bearer(identity: Identity) -> SessionData {
        SessionData {
            sub: identity.sub,
            email: identity.email,
            name: identity.name,
            preferred_username: identity.preferred_username,
            roles: identity.roles,
            groups: identity.groups,
            permissions: identity.permissions,
            amr: identity.amr,
            email_verified: identity.email_verified,
            claims: identity.claims,
            provider_sid: None,
            created_at: 0,
            last_active_at: 0,
            expires_at: 0,
            access_token_expires_at: identity.access_token_expires_at,
            sealed_tokens: String::new(),
            identity_headers: HeaderMemo::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(created: i64, last_active: i64, expires: i64) -> SessionData {
        SessionData {
            created_at: created,
            last_active_at: last_active,
            expires_at: expires,
            ..SessionData::for_bearer(Identity {
                sub: "alice".into(),
                ..Identity::default()
            })
        }
    }

    #[test]
    fn a_fresh_session_needs_no_write() {
        assert_eq!(
            freshness(&record(1000, 1000, 4600), 1030, 3600),
            Freshness::Live
        );
    }

    #[test]
    fn idle_expiry_is_extended_at_most_once_a_minute() {
        let data = record(1000, 1000, 4600);
        assert_eq!(freshness(&data, 1059, 3600), Freshness::Live);
        assert_eq!(freshness(&data, 1060, 3600), Freshness::Extend);
    }

    #[test]
    fn a_session_idle_too_long_is_expired() {
        assert_eq!(
            freshness(&record(1000, 1000, 9000), 4600, 3600),
            Freshness::Expired
        );
    }

    #[test]
    fn a_session_past_its_absolute_end_is_expired() {
        assert_eq!(
            freshness(&record(1000, 2000, 2500), 2500, 3600),
            Freshness::Expired
        );
    }
}
