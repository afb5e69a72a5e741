//! Who is asking: a bearer JWT (header, or the route's token cookie) or a
//! session cookie, with the session's tokens kept fresh.
//!
//! A request that presents a bearer token is judged on that token alone: a
//! bad token is a 401, never a fall-back to the session or a login redirect.

use http::header::AUTHORIZATION;
use std::sync::Arc;

use http::HeaderMap;
use tower_sessions::session::Id;

use crate::config::RouteConfig;
use crate::error::GatewayError;
use crate::oidc::{ensure_fresh, RefreshError};
use crate::request_id::RequestId;
use crate::session::{freshness, request_cookies, ActiveSession, Freshness, SessionData};
use crate::AppState;

/// An authenticated caller.
pub enum Principal {
    Session {
        id: Id,
        data: Arc<SessionData>,
    },
    Bearer {
        token: String,
        data: Arc<SessionData>,
    },
}

impl Principal {
    pub fn data(&self) -> &SessionData {
        match self {
            Principal::Session { data, .. } | Principal::Bearer { data, .. } => data,
        }
    }

    /// The access token to pass upstream when a route asks for it.
    pub fn access_token(&self, app: &AppState) -> Option<String> {
        match self {
            Principal::Bearer { token, .. } => Some(token.clone()),
            Principal::Session { data, .. } => app
                .sessions
                .open_tokens(data)
                .map(|tokens| tokens.access_token),
        }
    }
}

/// The bearer token of the request: `Authorization: Bearer …`, else the
/// route's `token_cookie`.
pub fn bearer_token(headers: &HeaderMap, route: Option<&RouteConfig>) -> Option<String> {
    let from_header = headers
        .get(AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| {
            let (scheme, token) = value.trim().split_once(' ')?;
            scheme
                .eq_ignore_ascii_case("bearer")
                .then(|| token.trim().to_string())
        })
        .filter(|token| !token.is_empty());
    from_header.or_else(|| {
        let cookie_name = route?.token_cookie.as_deref()?;
        request_cookies(headers)
            .find(|(name, _)| name == cookie_name)
            .map(|(_, value)| value)
            .filter(|value| !value.is_empty())
    })
}

/// The caller, if any. `Ok(None)`: nobody signed in (no token, no session,
/// or a session that has ended).
pub async fn authenticate(
    app: &AppState,
    headers: &HeaderMap,
    route: Option<&RouteConfig>,
    request_id: &RequestId,
) -> Result<Option<Principal>, GatewayError> {
    if let Some(token) = bearer_token(headers, route) {
        let verified = app.bearer.verify(&token, app.now()).await;
        app.metrics.bearer_validation(match &verified {
            Ok(_) => "accepted",
            Err(rejection) => rejection.label(),
        });
        return match verified {
            Ok(identity) => Ok(Some(Principal::Bearer {
                token,
                data: Arc::new(SessionData::for_bearer(identity)),
            })),
            Err(rejection) => {
                tracing::info!(reason = rejection.label(), "bearer token refused");
                Err(GatewayError::InvalidBearer(rejection.to_string()))
            }
        };
    }
    let Some(active) = signed_in(app, headers, request_id).await? else {
        return Ok(None);
    };
    match ensure_fresh(
        &app.sessions,
        &app.provider,
        &app.config.oidc,
        app.config.session.refresh_before,
        active,
        app.now(),
    )
    .await
    {
        Ok(active) => Ok(Some(Principal::Session {
            id: active.id,
            data: active.data,
        })),
        Err(RefreshError::Ended(_)) => Ok(None),
        Err(error) => {
            tracing::warn!(%error, "session refresh failed");
            Err(error.into())
        }
    }
}

/// The signed-in session of the request: one store read, and a guarded
/// write when the idle expiry is due for extension.
async fn signed_in(
    app: &AppState,
    headers: &HeaderMap,
    request_id: &RequestId,
) -> Result<Option<ActiveSession>, GatewayError> {
    let Some(active) = app.sessions.load(headers).await.map_err(|error| {
        tracing::warn!(%error, "session lookup failed");
        GatewayError::from(error)
    })?
    else {
        return Ok(None);
    };
    let now = app.now_seconds();
    match freshness(&active.data, now, app.sessions.idle_timeout_seconds()) {
        Freshness::Expired => {
            tracing::info!(request_id = request_id.as_str(), "session expired");
            Ok(None)
        }
        Freshness::Extend => {
            // Boxed: a rare path whose future would otherwise enlarge every request's.
            if let Err(error) = Box::pin(app.sessions.extend(&active, now)).await {
                // The read worked; a failed extension only shortens the idle window.
                tracing::warn!(%error, "could not extend the session's idle expiry");
            }
            Ok(Some(active))
        }
        Freshness::Live => Ok(Some(active)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn bearer_tokens_come_from_the_header_then_the_route_cookie() {
        let mut headers = HeaderMap::new();
        headers.insert(
            AUTHORIZATION,
            HeaderValue::from_static("bearer abc.def.ghi"),
        );
        assert_eq!(bearer_token(&headers, None).as_deref(), Some("abc.def.ghi"));
        let mut basic = HeaderMap::new();
        basic.insert(
            AUTHORIZATION,
            HeaderValue::from_static("Basic dXNlcjpwdw=="),
        );
        assert_eq!(bearer_token(&basic, None), None);
        let mut route = RouteConfig::new("/", url::Url::parse("http://127.0.0.1:1").unwrap());
        route.token_cookie = Some("DS".into());
        let mut cookies = HeaderMap::new();
        cookies.insert(
            http::header::COOKIE,
            HeaderValue::from_static("a=1; DS=tok.en.x"),
        );
        assert_eq!(
            bearer_token(&cookies, Some(&route)).as_deref(),
            Some("tok.en.x")
        );
        assert_eq!(bearer_token(&cookies, None), None);
    }
}
