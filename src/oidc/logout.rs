//! Back-Channel Logout (OpenID Connect Back-Channel Logout 1.0): is this
//! logout token from our provider, for us, fresh, and well-formed?
//!
//! A valid token names a provider session (`sid`) and/or a user (`sub`);
//! the endpoint then ends every matching session on every replica. Replays
//! are refused by the caller with a replay cache keyed on `jti`.

use std::time::{Duration, SystemTime};

use super::jws::verify_jws;
use super::login::unix_seconds;
use super::verify::{Expectations, TokenRejection};

pub const BACKCHANNEL_LOGOUT_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";
/// A logout token older than this is refused (and the replay cache keeps
/// jtis at least this long).
pub const LOGOUT_TOKEN_MAX_AGE: Duration = Duration::from_secs(600);

/// Whom to sign out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogoutRequest {
    pub sid: Option<String>,
    pub sub: Option<String>,
    /// Descope's user id when its JWT template overrides `sub` (the same
    /// claim sessions are keyed by, see `claims`).
    pub dsub: Option<String>,
    pub jti: String,
}

impl LogoutRequest {
    /// The subject whose sessions end: `dsub` for Descope when present
    /// (as at sign-in and refresh), else `sub`.
    pub fn subject(&self, descope: bool) -> Option<&str> {
        match (&self.dsub, &self.sub) {
            (Some(dsub), _) if descope => Some(dsub),
            (_, sub) => sub.as_deref(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LogoutTokenError {
    #[error("{0}")]
    Token(#[from] TokenRejection),
    #[error("the events claim does not carry the back-channel logout event")]
    MissingEvent,
    #[error("a logout token must not carry a nonce")]
    NoncePresent,
    #[error("the token names neither sid nor sub")]
    NoSubject,
    #[error("the token has no jti")]
    NoJti,
    #[error("the token was already used")]
    Replayed,
}

/// Validates a logout token's signature and claims at `now`.
pub fn validate_logout_token(
    token: &str,
    jwks: &super::keyset::KeySet,
    expectations: &Expectations,
    now: SystemTime,
) -> Result<LogoutRequest, LogoutTokenError> {
    let verified = verify_jws(token, jwks, &expectations.allowed_algs)?;
    let claims = verified.claims;
    let text = |name: &str| {
        claims
            .get(name)
            .and_then(|value| value.as_str())
            .map(str::to_string)
    };
    let number = |name: &str| claims.get(name).and_then(|value| value.as_i64());

    if text("iss").as_deref() != Some(expectations.issuer.as_str()) {
        return Err(TokenRejection::Issuer(text("iss").unwrap_or_default()).into());
    }
    let audiences: Vec<String> = match claims.get("aud") {
        Some(serde_json::Value::String(single)) => vec![single.clone()],
        Some(serde_json::Value::Array(items)) => items
            .iter()
            .filter_map(|item| item.as_str().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    };
    let ours = audiences
        .iter()
        .any(|audience| audience == expectations.client_id.as_str());
    let others_known = audiences.iter().all(|audience| {
        audience == expectations.client_id.as_str()
            || expectations.extra_audiences.contains(audience)
    });
    if !ours || !others_known {
        return Err(TokenRejection::Audience(audiences.join(" ")).into());
    }
    let now_seconds = unix_seconds(now);
    let skew = i64::try_from(expectations.clock_skew.as_secs()).unwrap_or(0);
    let max_age = i64::try_from(LOGOUT_TOKEN_MAX_AGE.as_secs()).unwrap_or(600);
    let issued_at = number("iat").ok_or_else(|| TokenRejection::Malformed("no iat".into()))?;
    if issued_at > now_seconds + skew {
        return Err(TokenRejection::IssuedInFuture(issued_at.to_string()).into());
    }
    if issued_at < now_seconds - max_age - skew {
        return Err(TokenRejection::Expired(format!("issued at {issued_at}, too old")).into());
    }
    if let Some(expires_at) = number("exp") {
        if now_seconds >= expires_at + skew {
            return Err(TokenRejection::Expired(format!("exp {expires_at}")).into());
        }
    }
    let has_event = claims
        .get("events")
        .and_then(|events| events.as_object())
        .and_then(|events| events.get(BACKCHANNEL_LOGOUT_EVENT))
        .is_some_and(|event| event.is_object());
    if !has_event {
        return Err(LogoutTokenError::MissingEvent);
    }
    if claims.contains_key("nonce") {
        return Err(LogoutTokenError::NoncePresent);
    }
    let (sid, sub) = (text("sid"), text("sub"));
    if sid.is_none() && sub.is_none() && text("dsub").is_none() {
        return Err(LogoutTokenError::NoSubject);
    }
    let jti = text("jti")
        .filter(|jti| !jti.is_empty())
        .ok_or(LogoutTokenError::NoJti)?;
    let dsub = text("dsub").filter(|dsub| !dsub.is_empty());
    Ok(LogoutRequest {
        sid,
        sub,
        dsub,
        jti,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descope_logouts_end_the_sessions_of_dsub_and_others_of_sub() {
        let request = LogoutRequest {
            sid: None,
            sub: Some("erin@example.test".into()),
            dsub: Some("U2erin".into()),
            jti: "j".into(),
        };
        assert_eq!(request.subject(true), Some("U2erin"));
        assert_eq!(request.subject(false), Some("erin@example.test"));
        let plain = LogoutRequest {
            dsub: None,
            ..request
        };
        assert_eq!(plain.subject(true), Some("erin@example.test"));
    }
}
