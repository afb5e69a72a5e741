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
use crate::pages::{error_response, wants_json};
use crate::proxy::{authenticate, path_error, PathError, Principal};
use crate::request_id;
use crate::AppState;

/// Headers that say which request forward-auth is to judge.
const ORIGINAL_REQUEST_HEADERS: [&str; 3] =
    ["x-forwarded-uri", "x-original-uri", "x-forwarded-host"];

/// Why forward-auth cannot judge a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unjudgeable {
    /// An original-request header from a peer not in `trusted_proxies`.
    Untrusted(&'static str),
    /// An original URI that is not a path (`*`, an absolute URL, junk).
    NotAPath,
}

/// The original request's host and path (as sent, not yet canonical):
/// from `X-Forwarded-Uri` / `X-Original-URI` and `X-Forwarded-Host`, which
/// only a trusted proxy may send; `/` on any host when none is sent (a plain
/// "is anyone signed in" check). Sent by anyone else, they are an error: a
/// silent fallback to `/` would judge another request than the one asked
/// about.
fn original_target(
    headers: &HeaderMap,
    trusted: bool,
) -> Result<(Option<String>, String), Unjudgeable> {
    if !trusted {
        if let Some(name) = ORIGINAL_REQUEST_HEADERS
            .into_iter()
            .find(|name| headers.contains_key(*name))
        {
            return Err(Unjudgeable::Untrusted(name));
        }
        return Ok((None, "/".to_string()));
    }
    let text = |name: &str| {
        headers
            .get(name)
            .map(|value| value.to_str().map(str::to_string))
    };
    let uri = match text("x-forwarded-uri").or_else(|| text("x-original-uri")) {
        None => "/".to_string(),
        Some(Ok(uri)) => uri,
        Some(Err(_)) => return Err(Unjudgeable::NotAPath),
    };
    let path = uri.split(['?', '#']).next().unwrap_or_default();
    if !path.starts_with('/') {
        return Err(Unjudgeable::NotAPath);
    }
    let host = match text("x-forwarded-host") {
        None => None,
        Some(Ok(host)) => Some(host.to_ascii_lowercase()),
        Some(Err(_)) => return Err(Unjudgeable::NotAPath),
    };
    Ok((host, path.to_string()))
}

/// `GET /oauth2/auth`: judges the original request as the proxy would:
/// the same canonical path and route ([`crate::proxy::RouteTable::resolve`]),
/// and the same rules. No route is a denial (403), never an allow.
pub async fn forward_auth(State(app): State<Arc<AppState>>, request: Request) -> Response {
    let request_id = request_id::of(&request);
    let peer = request_id::peer_of(&request).map(|address| address.ip());
    let headers = request.headers();
    let json = wants_json(headers, false);
    let (host, path) = match original_target(headers, app.is_trusted_proxy(peer)) {
        Ok(target) => target,
        Err(Unjudgeable::Untrusted(header)) => {
            tracing::warn!(
                peer = ?peer,
                header,
                "forward-auth refused: the original-request header comes from a peer not in \
                 [server] trusted_proxies; add the proxy's address to trusted_proxies"
            );
            return error_response(
                &GatewayError::UntrustedForwardAuth,
                request_id.as_str(),
                json,
            );
        }
        Err(Unjudgeable::NotAPath) => {
            return error_response(
                &GatewayError::BadRequest("the original URI is not a path"),
                request_id.as_str(),
                json,
            )
        }
    };
    let route = match app.routes.resolve(host.as_deref(), &path) {
        Ok((_, route)) => route,
        Err(PathError::NoRoute) => {
            tracing::info!("forward-auth denied: no route covers the original URI");
            return error_response(&GatewayError::NoRouteToJudge, request_id.as_str(), json);
        }
        Err(error) => return error_response(&path_error(error), request_id.as_str(), json),
    };
    if route.public {
        return StatusCode::ACCEPTED.into_response();
    }
    let principal = match authenticate(&app, headers, Some(&route), &request_id).await {
        Ok(Some(principal)) => principal,
        Ok(None) => return error_response(&GatewayError::NotSignedIn, request_id.as_str(), true),
        Err(error) => return error_response(&error, request_id.as_str(), true),
    };
    if decide(&route, principal.data()) != Decision::Allow {
        return error_response(
            &GatewayError::Forbidden("route rules".into()),
            request_id.as_str(),
            true,
        );
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
    if route.pass_access_token {
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
            Ok((Some("app.example".to_string()), "/admin/x".to_string()))
        );
        let mut traefik = HeaderMap::new();
        traefik.insert("x-forwarded-uri", HeaderValue::from_static("/api"));
        assert_eq!(original_target(&traefik, true).unwrap().1, "/api");
    }

    #[test]
    fn an_original_url_from_an_untrusted_peer_is_an_error_not_a_fallback() {
        for name in ORIGINAL_REQUEST_HEADERS {
            let mut headers = HeaderMap::new();
            headers.insert(name, HeaderValue::from_static("/admin/x"));
            assert_eq!(
                original_target(&headers, false),
                Err(Unjudgeable::Untrusted(name))
            );
        }
        // Without any, a plain "is someone signed in" check of "/".
        assert_eq!(
            original_target(&HeaderMap::new(), false),
            Ok((None, "/".to_string()))
        );
        assert_eq!(
            original_target(&HeaderMap::new(), true),
            Ok((None, "/".to_string()))
        );
    }

    #[test]
    fn an_original_url_that_is_not_a_path_cannot_be_judged() {
        for uri in ["*", "http://evil.example/admin", "admin/x", ""] {
            let mut headers = HeaderMap::new();
            headers.insert("x-forwarded-uri", HeaderValue::from_str(uri).unwrap());
            assert_eq!(
                original_target(&headers, true),
                Err(Unjudgeable::NotAPath),
                "{uri}"
            );
        }
    }
}
