//! Back-Channel Logout tokens (OpenID Connect Back-Channel Logout 1.0 §2.4),
//! well-formed or with one chosen defect, for the relying party's tests.

use rand::RngCore;
use serde_json::{json, Map, Value};

use super::jwt::{self, Signing};
use super::state::SharedState;

pub const BACKCHANNEL_LOGOUT_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

/// What one logout token says, and what is wrong with it.
#[derive(Clone, Debug, Default)]
pub struct LogoutTokenSpec {
    pub sub: Option<String>,
    pub sid: Option<String>,
    pub defect: Option<LogoutDefect>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LogoutDefect {
    BadSignature,
    Unsigned,
    NoncePresent,
    EventsMissing,
    WrongEvent,
    WrongAudience,
    WrongIssuer,
    IssuedLongAgo,
    NoSubjectOrSession,
    NoJti,
}

fn random_jti() -> String {
    let mut bytes = [0u8; 12];
    rand::thread_rng().fill_bytes(&mut bytes);
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

pub(crate) fn logout_token(shared: &SharedState, spec: &LogoutTokenSpec) -> String {
    let now = shared.now();
    let defect = spec.defect.clone();
    let mut claims = Map::new();
    let issuer = if defect == Some(LogoutDefect::WrongIssuer) {
        format!("{}/other", shared.issuer)
    } else {
        shared.issuer.clone()
    };
    claims.insert("iss".into(), json!(issuer));
    let audience = if defect == Some(LogoutDefect::WrongAudience) {
        "someone-else".to_string()
    } else {
        shared.options.client_id.clone()
    };
    claims.insert("aud".into(), json!(audience));
    let issued = if defect == Some(LogoutDefect::IssuedLongAgo) {
        now.saturating_sub(3600)
    } else {
        now
    };
    claims.insert("iat".into(), json!(issued));
    claims.insert("exp".into(), json!(issued + 120));
    if defect != Some(LogoutDefect::NoJti) {
        claims.insert("jti".into(), json!(random_jti()));
    }
    match defect {
        Some(LogoutDefect::EventsMissing) => {}
        Some(LogoutDefect::WrongEvent) => {
            claims.insert(
                "events".into(),
                json!({"http://example.com/other-event": {}}),
            );
        }
        _ => {
            claims.insert("events".into(), json!({ BACKCHANNEL_LOGOUT_EVENT: {} }));
        }
    }
    if defect != Some(LogoutDefect::NoSubjectOrSession) {
        if let Some(sub) = &spec.sub {
            claims.insert("sub".into(), Value::String(sub.clone()));
            // Descope with the JWT template's subject override: `sub` is the
            // login id and `dsub` the user id, as in its ID tokens.
            let overridden = shared
                .descope()
                .is_some_and(|descope| descope.override_subject);
            let user = overridden.then(|| shared.lock().user(sub)).flatten();
            if let Some(user) = user {
                claims.insert("dsub".into(), Value::String(sub.clone()));
                claims.insert("sub".into(), Value::String(user.email));
            }
        }
        if let Some(sid) = &spec.sid {
            claims.insert("sid".into(), Value::String(sid.clone()));
        }
    }
    if defect == Some(LogoutDefect::NoncePresent) {
        claims.insert("nonce".into(), json!("not-allowed-here"));
    }
    let key = shared.lock().current_key.clone();
    let signing = match defect {
        Some(LogoutDefect::BadSignature) => Signing::Rs256Corrupted(&key),
        Some(LogoutDefect::Unsigned) => Signing::Unsigned,
        _ => Signing::Rs256(&key),
    };
    jwt::encode(&claims, "logout+jwt", signing).unwrap_or_default()
}
