//! Keeping a session's tokens fresh: one refresh per session at a time,
//! across every replica.
//!
//! When the access token is within `refresh_before` of expiry, the request
//! that notices takes the session's lock (SET NX PX in Redis), re-reads the
//! record (another replica may have just refreshed), calls the token
//! endpoint with the refresh token, verifies the new ID token, and writes
//! the record from that fresh copy. Requests that find the lock taken wait
//! briefly for the new record instead of refreshing again, so a rotating
//! refresh token is never used twice.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use openidconnect::{OAuth2TokenResponse, RefreshToken, RequestTokenError};

use serde_json::{Map, Value};

use super::claims::identity_from_json;
use super::login::unix_seconds;
use super::provider::{Provider, ProviderHandle};
use super::userinfo::{complete_claims, stored_id_token_claims, UserinfoError};
use super::verify::{verify_id_token, NonceCheck, TokenRejection};
use crate::config::OidcConfig;
use crate::error::error_chain;
use crate::session::{
    lock_name, ActiveSession, Identity, SessionData, SessionError, Sessions, TokenSet,
    LOCK_LIFETIME,
};

/// How long a request waits for another replica's refresh.
const WAIT_FOR_REFRESH: Duration = Duration::from_secs(3);
const POLL_INTERVAL: Duration = Duration::from_millis(25);

/// Whether the session's access token is due for a refresh at `now`.
pub fn needs_refresh(data: &SessionData, now: i64, refresh_before: Duration) -> bool {
    let margin = i64::try_from(refresh_before.as_secs()).unwrap_or(i64::MAX / 4);
    data.access_token_expires_at
        .is_some_and(|expires_at| expires_at - now <= margin)
}

#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    /// The provider refused the refresh token (`invalid_grant`): the
    /// session is over and has been deleted.
    #[error("the provider ended the session: {0}")]
    Ended(String),
    /// The provider could not refresh now and the access token has expired.
    #[error("the provider could not refresh the session: {0}")]
    Unavailable(String),
    #[error("{0}")]
    Store(#[from] SessionError),
}

enum Attempt {
    Refreshed(Box<ActiveSession>),
    Refused(String),
    Failed(String),
}

/// Returns the session with fresh tokens (or as it was, when no refresh is
/// due or possible yet while its access token is still valid).
pub async fn ensure_fresh(
    sessions: &Sessions,
    handle: &ProviderHandle,
    settings: &OidcConfig,
    refresh_before: Duration,
    active: ActiveSession,
    now: SystemTime,
) -> Result<ActiveSession, RefreshError> {
    if !needs_refresh(&active.data, unix_seconds(now), refresh_before) {
        return Ok(active);
    }
    // Boxed: the refresh (provider call, locks) is a large future that only
    // this rare path needs; every request awaits this function.
    Box::pin(refresh_session(
        sessions,
        handle,
        settings,
        refresh_before,
        active,
        now,
    ))
    .await
}

async fn refresh_session(
    sessions: &Sessions,
    handle: &ProviderHandle,
    settings: &OidcConfig,
    refresh_before: Duration,
    active: ActiveSession,
    now: SystemTime,
) -> Result<ActiveSession, RefreshError> {
    let now_seconds = unix_seconds(now);
    let Some(tokens) = sessions.open_tokens(&active.data) else {
        return Ok(active);
    };
    if tokens.refresh_token.is_none() {
        return Ok(active);
    }
    let still_valid = |data: &SessionData| {
        data.access_token_expires_at
            .is_some_and(|expires_at| expires_at > now_seconds)
    };
    let coordination = sessions.coordination();
    let Some(lock) = coordination
        .try_lock(&lock_name(active.id), LOCK_LIFETIME)
        .await?
    else {
        sessions.metrics().refresh("waited_for_other");
        return wait_for_other_refresh(sessions, active, now_seconds, refresh_before, still_valid)
            .await;
    };
    let attempt = async {
        // Under the lock, start from the stored record, not our copy.
        let Some(current) = sessions.reload(active.id).await? else {
            return Ok::<_, SessionError>(Attempt::Refused("session record is gone".into()));
        };
        if !needs_refresh(&current.data, now_seconds, refresh_before) {
            return Ok(Attempt::Refreshed(Box::new(current)));
        }
        let Some(tokens) = sessions.open_tokens(&current.data) else {
            return Ok(Attempt::Failed("sealed tokens unreadable".into()));
        };
        Ok(refresh_with_provider(sessions, handle, settings, current, tokens, now).await)
    }
    .await;
    let metrics = sessions.metrics();
    let outcome = match attempt {
        Ok(Attempt::Refreshed(session)) => {
            metrics.refresh("refreshed");
            Ok(*session)
        }
        Ok(Attempt::Refused(reason)) => {
            metrics.refresh("refused");
            tracing::info!(target: "portico::auth", reason = %reason, "refresh refused; ending the session");
            if let Err(error) = sessions.end(&active).await {
                tracing::warn!(%error, "could not delete the ended session");
            }
            Err(RefreshError::Ended(reason))
        }
        Ok(Attempt::Failed(reason)) if still_valid(&active.data) => {
            metrics.refresh("failed_token_still_valid");
            tracing::warn!(target: "portico::auth", reason = %reason, "refresh failed; the access token is still valid");
            Ok(active)
        }
        Ok(Attempt::Failed(reason)) => {
            metrics.refresh("failed");
            tracing::warn!(target: "portico::auth", reason = %reason, "refresh failed and the access token has expired");
            Err(RefreshError::Unavailable(reason))
        }
        Err(error) => {
            metrics.refresh("store_unavailable");
            Err(RefreshError::Store(error))
        }
    };
    coordination.unlock(&lock).await;
    outcome
}

async fn wait_for_other_refresh(
    sessions: &Sessions,
    active: ActiveSession,
    now_seconds: i64,
    refresh_before: Duration,
    still_valid: impl Fn(&SessionData) -> bool,
) -> Result<ActiveSession, RefreshError> {
    let deadline = Instant::now() + WAIT_FOR_REFRESH;
    while Instant::now() < deadline {
        tokio::time::sleep(POLL_INTERVAL).await;
        match sessions.reload(active.id).await? {
            None => return Err(RefreshError::Ended("session ended during refresh".into())),
            Some(current) if !needs_refresh(&current.data, now_seconds, refresh_before) => {
                return Ok(current)
            }
            Some(_) => {}
        }
    }
    if still_valid(&active.data) {
        Ok(active)
    } else {
        Err(RefreshError::Unavailable(
            "another replica's refresh did not finish".into(),
        ))
    }
}

async fn refresh_with_provider(
    sessions: &Sessions,
    handle: &ProviderHandle,
    settings: &OidcConfig,
    mut current: ActiveSession,
    tokens: TokenSet,
    now: SystemTime,
) -> Attempt {
    let Some(provider) = handle.get() else {
        return Attempt::Failed("provider metadata not loaded".into());
    };
    let Some(refresh_token) = tokens.refresh_token.clone() else {
        return Attempt::Failed("no refresh token".into());
    };
    let refresh_token = RefreshToken::new(refresh_token);
    let mut request = match provider.client.exchange_refresh_token(&refresh_token) {
        Ok(request) => request,
        Err(error) => return Attempt::Failed(error.to_string()),
    };
    match provider.client_assertion_params(settings, unix_seconds(now)) {
        Ok(params) => {
            for (name, value) in params {
                request = request.add_extra_param(name, value);
            }
        }
        Err(error) => return Attempt::Failed(error.to_string()),
    }
    let http = handle.http();
    let response = match crate::telemetry::traced(
        "oidc.refresh",
        request.request_async(&super::http::ProviderHttp(http)),
    )
    .await
    {
        Ok(response) => response,
        Err(RequestTokenError::ServerResponse(body)) => {
            let code = body.error().to_string();
            return if code == "invalid_grant" {
                Attempt::Refused(code)
            } else {
                Attempt::Failed(code)
            };
        }
        Err(other) => return Attempt::Failed(error_chain(&other)),
    };
    let now_seconds = unix_seconds(now);
    let mut fresh_claims = None;
    if let Some(id_token) = response.raw_id_token() {
        let verified = match verify_id_token(
            id_token,
            &provider.jwks(),
            &provider.expectations,
            NonceCheck::Skip,
            now,
        ) {
            Err(TokenRejection::UnknownKey)
                if handle
                    .refresh_jwks_for_provider_answer(
                        super::jws::unverified_kid(id_token).as_deref(),
                    )
                    .await =>
            {
                match handle.get() {
                    Some(provider) => verify_id_token(
                        id_token,
                        &provider.jwks(),
                        &provider.expectations,
                        NonceCheck::Skip,
                        now,
                    ),
                    None => Err(TokenRejection::UnknownKey),
                }
            }
            other => other,
        };
        match verified {
            Ok(map) => {
                // Checked here, before userinfo is asked or may fail.
                if identity_from_json(&map, settings).sub != current.data.sub {
                    return Attempt::Refused("refreshed ID token names another subject".into());
                }
                fresh_claims = Some(map);
            }
            Err(rejection) => {
                return Attempt::Failed(format!("refreshed ID token refused: {rejection}"))
            }
        }
    }
    let identity = match refreshed_identity(
        handle,
        &provider,
        settings,
        fresh_claims,
        &tokens.id_token,
        response.access_token().secret(),
    )
    .await
    {
        Ok(identity) => identity,
        Err(refusal) => return Attempt::Refused(refusal),
    };
    let new_tokens = TokenSet {
        access_token: response.access_token().secret().clone(),
        refresh_token: response
            .refresh_token()
            .map(|token| token.secret().clone())
            .or(tokens.refresh_token),
        id_token: response
            .raw_id_token()
            .map(str::to_string)
            .unwrap_or(tokens.id_token),
    };
    let data = Arc::make_mut(&mut current.data);
    data.sealed_tokens = sessions.seal_tokens(&new_tokens);
    data.access_token_expires_at = response
        .expires_in()
        .map(|lifetime| now_seconds + i64::try_from(lifetime.as_secs()).unwrap_or(i64::MAX / 4));
    if let Some(identity) = identity {
        data.identity_headers.clear();
        data.email = identity.email;
        data.name = identity.name;
        data.preferred_username = identity.preferred_username;
        data.roles = identity.roles;
        data.groups = identity.groups;
        data.permissions = identity.permissions;
        data.email_verified = identity.email_verified;
        data.claims = identity.claims;
    }
    sessions.touch(data, now_seconds);
    match sessions.write(&current).await {
        Ok(()) => {
            tracing::info!(target: "portico::auth", sub = %current.data.sub, "session refreshed");
            Attempt::Refreshed(Box::new(current))
        }
        Err(error) => Attempt::Failed(error.to_string()),
    }
}

/// The identity after a refresh: from the refreshed ID token's claims
/// (or, when the provider sent none, the stored ID token's), completed from
/// userinfo when `settings.userinfo` says so. `Ok(None)`: keep the session's
/// claims as they are (nothing new, or userinfo failed — logged; the next
/// refresh asks again). `Err`: the provider named another subject.
async fn refreshed_identity(
    handle: &ProviderHandle,
    provider: &Provider,
    settings: &OidcConfig,
    fresh_claims: Option<Map<String, Value>>,
    stored_id_token: &str,
    access_token: &str,
) -> Result<Option<Identity>, String> {
    let fresh = fresh_claims.is_some();
    let Some(base) = fresh_claims.or_else(|| stored_id_token_claims(stored_id_token)) else {
        return Ok(None);
    };
    match complete_claims(handle, provider, settings, base, access_token).await {
        Ok((claims, asked)) if fresh || asked => Ok(Some(identity_from_json(&claims, settings))),
        Ok(_) => Ok(None),
        Err(UserinfoError::SubjectMismatch) => {
            Err("userinfo names another subject than the ID token".into())
        }
        Err(error) => {
            tracing::warn!(
                target: "portico::auth",
                reason = error.label(),
                error = %error,
                "userinfo failed at refresh; the session keeps its claims until the next refresh"
            );
            Ok(None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(access_expires: Option<i64>) -> SessionData {
        SessionData {
            expires_at: 10_000,
            ..SessionData::for_bearer(Identity {
                sub: "s".into(),
                access_token_expires_at: access_expires,
                ..Identity::default()
            })
        }
    }

    #[test]
    fn refresh_is_due_within_the_margin_only() {
        let margin = Duration::from_secs(60);
        assert!(!needs_refresh(&data(Some(1000)), 900, margin));
        assert!(needs_refresh(&data(Some(1000)), 940, margin));
        assert!(needs_refresh(&data(Some(1000)), 2000, margin));
        assert!(!needs_refresh(&data(None), 2000, margin));
    }
}
