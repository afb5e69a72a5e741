//! Answers for other proxies: forward-auth (`GET /oauth2/auth`, for nginx
//! `auth_request`, Traefik ForwardAuth, Caddy `forward_auth`) and the
//! signed-in user as JSON (`GET /oauth2/userinfo`).
//!
//! Forward-auth judges the original request: its URL comes from
//! `X-Forwarded-Uri` / `X-Original-URI` and `X-Forwarded-Host`, believed only
//! from trusted proxies, and that URL's route rules apply. 202 with
//! `X-Auth-Request-*` identity headers; 401 when nobody is signed in (the
//! proxy then sends the browser to `/oauth2/start`); 403 when rules fail.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use http::{HeaderMap, HeaderValue, StatusCode};

use crate::authz::{decide, Decision};
use crate::error::GatewayError;
use crate::pages::error_response;
use crate::proxy::{authenticate, Principal};
use crate::request_id;
use crate::AppState;

/// The original request's host and path, from a trusted proxy's headers.
fn original_target(headers: &HeaderMap, trusted: bool) -> (Option<String>, String) {
    if !trusted {
        return (None, "/".to_string());
    }
    let text = |name: &str| {
        headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .map(str::to_string)
    };
    let uri = text("x-forwarded-uri")
        .or_else(|| text("x-original-uri"))
        .unwrap_or_else(|| "/".to_string());
    let path = uri.split(['?', '#']).next().unwrap_or("/").to_string();
    let path = if path.starts_with('/') {
        path
    } else {
        "/".to_string()
    };
    let host = text("x-forwarded-host").map(|host| host.to_ascii_lowercase());
    (host, path)
}

pub async fn forward_auth(State(app): State<Arc<AppState>>, request: Request) -> Response {
    let request_id = request_id::of(&request);
    let peer = request_id::peer_of(&request).map(|address| address.ip());
    let headers = request.headers();
    let (host, path) = original_target(headers, app.is_trusted_proxy(peer));
    if crate::proxy::has_dot_segments(&path) {
        return error_response(
            &GatewayError::BadRequest("the path contains '.' or '..' segments"),
            request_id.as_str(),
            true,
        );
    }
    let route = app.routes.find(host.as_deref(), &path);
    if route.as_ref().is_some_and(|route| route.public) {
        return StatusCode::ACCEPTED.into_response();
    }
    let principal = match authenticate(&app, headers, route.as_deref(), &request_id).await {
        Ok(Some(principal)) => principal,
        Ok(None) => return error_response(&GatewayError::NotSignedIn, request_id.as_str(), true),
        Err(error) => return error_response(&error, request_id.as_str(), true),
    };
    if let Some(route) = &route {
        if decide(route, principal.data()) != Decision::Allow {
            return error_response(
                &GatewayError::Forbidden("route rules".into()),
                request_id.as_str(),
                true,
            );
        }
    }
    let mut response = StatusCode::ACCEPTED.into_response();
    let data = principal.data();
    let answer = response.headers_mut();
    let mut set = |name: &'static str, value: Option<&str>| {
        if let Some(value) = value.and_then(|value| HeaderValue::from_bytes(value.as_bytes()).ok())
        {
            answer.insert(name, value);
        }
    };
    set("x-auth-request-user", Some(&data.sub));
    set("x-auth-request-email", data.email.as_deref());
    if !data.roles.is_empty() {
        set(
            "x-auth-request-groups",
            Some(&crate::identity::header_list(&data.roles)),
        );
    }
    set(
        "x-auth-request-preferred-username",
        data.preferred_username.as_deref(),
    );
    if route.as_ref().is_some_and(|route| route.pass_access_token) {
        let token = principal.access_token(&app);
        set("x-auth-request-access-token", token.as_deref());
    }
    response
}

/// `GET /.well-known/portico/jwks.json`: the key upstreams verify
/// `X-Portico-Identity` with.
pub async fn identity_jwks(State(app): State<Arc<AppState>>, request: Request) -> Response {
    let request_id = request_id::of(&request);
    match app.identity_signer().await {
        Ok(signer) => {
            let mut response = Json(signer.jwks()).into_response();
            response.headers_mut().insert(
                http::header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=300"),
            );
            response
        }
        Err(error) => error_response(&error, request_id.as_str(), true),
    }
}

pub async fn userinfo(State(app): State<Arc<AppState>>, request: Request) -> Response {
    let request_id = request_id::of(&request);
    match authenticate(&app, request.headers(), None, &request_id).await {
        Ok(Some(principal)) => {
            let data = principal.data();
            let mut response = Json(serde_json::json!({
                "sub": data.sub,
                "email": data.email,
                "name": data.name,
                "preferred_username": data.preferred_username,
                "roles": data.roles,
                "groups": data.groups,
                "via": match principal {
                    Principal::Session { .. } => "session",
                    Principal::Bearer { .. } => "bearer",
                },
            }))
            .into_response();
            response.headers_mut().insert(
                http::header::CACHE_CONTROL,
                HeaderValue::from_static("no-store"),
            );
            response
        }
        Ok(None) => error_response(&GatewayError::NotSignedIn, request_id.as_str(), true),
        Err(error) => error_response(&error, request_id.as_str(), true),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_original_url_is_only_believed_from_trusted_proxies() {
        let mut headers = HeaderMap::new();
        headers.insert("x-original-uri", HeaderValue::from_static("/admin/x?y=1"));
        headers.insert("x-forwarded-host", HeaderValue::from_static("App.Example"));
        assert_eq!(
            original_target(&headers, true),
            (Some("app.example".to_string()), "/admin/x".to_string())
        );
        assert_eq!(original_target(&headers, false), (None, "/".to_string()));
        let mut traefik = HeaderMap::new();
        traefik.insert("x-forwarded-uri", HeaderValue::from_static("/api"));
        assert_eq!(original_target(&traefik, true).1, "/api");
    }
}
