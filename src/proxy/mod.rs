//! The authenticated reverse proxy: route → session → rules → upstream.

mod headers;
mod routes;
mod upstream;

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use http::header::{CONTENT_LENGTH, HOST, TRANSFER_ENCODING};
use http::HeaderValue;

pub use headers::{
    add_identity_headers, set_forwarded, strip_cookies, strip_hop_by_hop, strip_identity_headers,
    IDENTITY_HEADERS,
};
pub use routes::{has_dot_segments, RouteTable};
pub use upstream::{target_url, UpstreamError, Upstreams};

use crate::error::GatewayError;
use crate::oidc::{ensure_fresh, RefreshError};
use crate::pages::{error_response, forbidden, wants_json};
use crate::request_id::{self, RequestId};
use crate::session::{freshness, ActiveSession, Freshness};
use crate::{authz, endpoints, AppState};

/// Every request that is not one of portico's own endpoints.
pub async fn gateway(State(app): State<Arc<AppState>>, request: Request) -> Response {
    let request_id = request_id::of(&request);
    let peer = request_id::peer_of(&request);
    let (parts, body) = request.into_parts();
    let path = parts.uri.path();
    if has_dot_segments(path) {
        let json = wants_json(&parts.headers, false);
        return error_response(
            &GatewayError::BadRequest("the path contains '.' or '..' segments"),
            request_id.as_str(),
            json,
        );
    }
    let host = request_host(&parts);
    let Some(route) = app.routes.find(host.as_deref(), path) else {
        let json = wants_json(&parts.headers, false);
        return error_response(&GatewayError::NoRoute, request_id.as_str(), json);
    };
    crate::ops::note_route(&parts.extensions, &route.path_prefix);
    let json = wants_json(&parts.headers, route.api);
    let path_and_query = parts
        .uri
        .path_and_query()
        .map_or_else(|| path.to_string(), |value| value.as_str().to_string());

    let unauthenticated = |app: &AppState| {
        if json {
            return error_response(&GatewayError::NotSignedIn, request_id.as_str(), true);
        }
        let return_to = app
            .return_policy
            .check(&path_and_query)
            .unwrap_or_else(|| app.return_policy.default_target());
        endpoints::begin_login(app, &parts.headers, &return_to, &request_id)
    };
    let session = if route.public {
        None
    } else {
        let active = match signed_in(&app, &parts.headers, &request_id).await {
            Ok(Some(active)) => active,
            Ok(None) => return unauthenticated(&app),
            Err(error) => {
                tracing::warn!(%error, "session lookup failed");
                return error_response(&error, request_id.as_str(), json);
            }
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
            Ok(active) => Some((active.id.to_string(), active.data)),
            Err(RefreshError::Ended(_)) => return unauthenticated(&app),
            Err(error) => {
                tracing::warn!(%error, "session refresh failed");
                return error_response(&error.into(), request_id.as_str(), json);
            }
        }
    };
    if let Some((session_id, data)) = &session {
        crate::ops::note_user(&parts.extensions, &data.sub);
        if !authz::route_allows(&route, data) {
            tracing::info!(sub = %data.sub, route = %route.path_prefix, "route rules refused the user");
            let csrf = app.sessions.keys.csrf_token(session_id);
            let user = data.email.as_deref().or(Some(data.sub.as_str()));
            return forbidden(user, &csrf, request_id.as_str(), json);
        }
    }

    let mut headers = parts.headers.clone();
    strip_hop_by_hop(&mut headers);
    strip_identity_headers(&mut headers);
    strip_cookies(&mut headers, |name| {
        app.sessions.cookies.is_portico_cookie(name)
    });
    headers.remove(HOST);
    let client_ip = peer.map_or(std::net::IpAddr::from([127, 0, 0, 1]), |address| {
        address.ip()
    });
    set_forwarded(
        &mut headers,
        client_ip,
        app.config.server.public_url.scheme(),
        host.as_deref(),
        app.is_trusted_proxy(peer.map(|address| address.ip())),
    );
    if let Ok(value) = HeaderValue::from_str(request_id.as_str()) {
        headers.insert(request_id::HEADER, value);
    }
    if let Some((_, data)) = &session {
        add_identity_headers(&mut headers, data);
    }
    let has_body = parts.headers.contains_key(TRANSFER_ENCODING)
        || parts
            .headers
            .get(CONTENT_LENGTH)
            .is_some_and(|length| length != "0");
    let body = has_body.then_some(body);
    if has_body {
        if let Some(length) = parts.headers.get(CONTENT_LENGTH) {
            headers.insert(CONTENT_LENGTH, length.clone());
        }
    }
    let target = match target_url(&route.upstream, &path_and_query) {
        Ok(target) => target,
        Err(error) => return error_response(&error.into(), request_id.as_str(), json),
    };
    match app
        .upstreams
        .forward(parts.method.clone(), target, headers, body.map(Body::new))
        .await
    {
        Ok(response) => response.into_response(),
        Err(error) => {
            tracing::warn!(%error, upstream = %route.upstream, "upstream request failed");
            error_response(&error.into(), request_id.as_str(), json)
        }
    }
}

/// The signed-in session of the request: one store read, and one write when
/// the idle expiry is due for extension. `None`: not signed in (no cookie,
/// no record, or expired).
async fn signed_in(
    app: &AppState,
    headers: &http::HeaderMap,
    request_id: &RequestId,
) -> Result<Option<ActiveSession>, GatewayError> {
    let Some(active) = app.sessions.load(headers).await? else {
        return Ok(None);
    };
    let now = app.now_seconds();
    match freshness(&active.data, now, app.sessions.idle_timeout_seconds()) {
        Freshness::Expired => {
            tracing::info!(request_id = request_id.as_str(), "session expired");
            Ok(None)
        }
        Freshness::Extend => {
            if let Err(error) = app.sessions.extend(&active, now).await {
                // The read worked; a failed extension only shortens the idle window.
                tracing::warn!(%error, "could not extend the session's idle expiry");
            }
            Ok(Some(active))
        }
        Freshness::Live => Ok(Some(active)),
    }
}

/// The Host the client asked for, lower-case (HTTP/1 Host header or the
/// HTTP/2 authority).
fn request_host(parts: &http::request::Parts) -> Option<String> {
    parts
        .headers
        .get(HOST)
        .and_then(|value| value.to_str().ok())
        .map(str::to_string)
        .or_else(|| parts.uri.authority().map(|authority| authority.to_string()))
        .map(|host| host.to_ascii_lowercase())
}
