//! Answers for other proxies: forward-auth (`GET /oauth2/auth`, for nginx
//! `auth_request`, Traefik ForwardAuth, Caddy `forward_auth`) and the
//! signed-in user as JSON (`GET /oauth2/userinfo`).
//!
//! Forward-auth judges the original request: its URL comes from
//! `X-Forwarded-Uri` / `X-Original-URI` and `X-Forwarded-Host`, believed only
//! from trusted proxies, and that URL's route rules apply. 200 with
//! `X-Auth-Request-*` identity headers; 401 when nobody is signed in (the
//! proxy then sends the browser to `/oauth2/start`), or with
//! `?mode=redirect` a 302 to the sign-in for page navigations (for proxies
//! that pass any non-2xx answer through: Caddy, Traefik); 403 when rules
//! fail. The judging itself lives in [`crate::edge`].

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};

use crate::edge::{is_page_navigation, judge, original_url, sign_in_location, Verdict};
use crate::error::GatewayError;
use crate::pages::{error_response, wants_json};
use crate::proxy::{authenticate, Principal};
use crate::request_id;
use crate::AppState;

/// Headers that say which request forward-auth is to judge.
const ORIGINAL_REQUEST_HEADERS: [&str; 5] = [
    "x-forwarded-uri",
    "x-original-uri",
    "x-original-url",
    "x-forwarded-host",
    "x-forwarded-proto",
];

/// The `X-Auth-Request-*` headers of an allow, by suffix.
const ANSWER_IDENTITY: [&str; 5] = [
    "user",
    "email",
    "groups",
    "preferred-username",
    "access-token",
];

/// Why forward-auth cannot judge a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unjudgeable {
    /// An original-request header from a peer not in `trusted_proxies`.
    Untrusted(&'static str),
    /// An original URI that is not a path (`*`, an absolute URL, junk).
    NotAPath,
}

/// The request forward-auth is asked about.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Original {
    /// `X-Forwarded-Host`, lower-case.
    host: Option<String>,
    /// The path as sent (not yet canonical), without query or fragment.
    path: String,
    /// Path and query as sent.
    uri: String,
    /// `X-Forwarded-Proto`.
    proto: Option<String>,
}

/// The original request's host and path (as sent, not yet canonical):
/// from `X-Forwarded-Uri` / `X-Original-URI`, `X-Forwarded-Host` and
/// `X-Forwarded-Proto`, which only a trusted proxy may send; `/` on any host
/// when none is sent (a plain "is anyone signed in" check). Sent by anyone
/// else, they are an error: a silent fallback to `/` would judge another
/// request than the one asked about.
fn original_target(headers: &HeaderMap, trusted: bool) -> Result<Original, Unjudgeable> {
    if !trusted {
        if let Some(name) = ORIGINAL_REQUEST_HEADERS
            .into_iter()
            .find(|name| headers.contains_key(*name))
        {
            return Err(Unjudgeable::Untrusted(name));
        }
        return Ok(Original {
            host: None,
            path: "/".to_string(),
            uri: "/".to_string(),
            proto: None,
        });
    }
    let text = |name: &str| {
        headers
            .get(name)
            .map(|value| value.to_str().map(str::to_string))
    };
    // ingress-nginx sends the whole URL as X-Original-URL (and no
    // X-Forwarded-Uri); its scheme and host count unless sent on their own.
    let whole_url = match text("x-original-url") {
        None => None,
        Some(Ok(url)) => Some(split_url(&url).ok_or(Unjudgeable::NotAPath)?),
        Some(Err(_)) => return Err(Unjudgeable::NotAPath),
    };
    let uri = match text("x-forwarded-uri").or_else(|| text("x-original-uri")) {
        None => whole_url
            .as_ref()
            .map_or_else(|| "/".to_string(), |(_, _, uri)| uri.clone()),
        Some(Ok(uri)) => uri,
        Some(Err(_)) => return Err(Unjudgeable::NotAPath),
    };
    let path = uri.split(['?', '#']).next().unwrap_or_default();
    if !path.starts_with('/') {
        return Err(Unjudgeable::NotAPath);
    }
    let host = match text("x-forwarded-host") {
        None => whole_url.as_ref().map(|(_, host, _)| host.clone()),
        Some(Ok(host)) => Some(host.to_ascii_lowercase()),
        Some(Err(_)) => return Err(Unjudgeable::NotAPath),
    };
    let proto = match text("x-forwarded-proto") {
        None => whole_url.as_ref().map(|(scheme, _, _)| scheme.clone()),
        Some(Ok(proto)) => Some(proto),
        Some(Err(_)) => return Err(Unjudgeable::NotAPath),
    };
    let uri = uri.split('#').next().unwrap_or_default().to_string();
    Ok(Original {
        host,
        path: path.to_string(),
        uri,
        proto,
    })
}

/// An absolute http(s) URL as (scheme, host[:port] lower-case, path and
/// query as sent). None when it is not one.
fn split_url(text: &str) -> Option<(String, String, String)> {
    let (scheme, rest) = text.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        return None;
    }
    let split = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, target) = rest.split_at(split);
    if authority.is_empty() || authority.contains('@') || !target.starts_with('/') {
        return None;
    }
    Some((scheme, authority.to_ascii_lowercase(), target.to_string()))
}

/// How forward-auth answers a caller without a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// 401 always: nginx turns it into a sign-in with `error_page`.
    Plain,
    /// 302 to the sign-in for page navigations, 401 for the rest: for Caddy,
    /// Traefik and Envoy, which pass any non-2xx answer to the client as is.
    Redirect,
}

/// `mode` from the query: absent, or `redirect`.
fn mode_of(query: Option<&str>) -> Result<Mode, GatewayError> {
    let mut mode = Mode::Plain;
    for (name, value) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        if name == "mode" {
            mode = match value.as_ref() {
                "redirect" => Mode::Redirect,
                _ => {
                    return Err(GatewayError::BadRequest(
                        "forward-auth mode must be \"redirect\" or left out",
                    ))
                }
            };
        }
    }
    Ok(mode)
}

/// `GET /oauth2/auth[?mode=redirect]`: judges the original request as the
/// proxy would: the same canonical path and route
/// ([`crate::proxy::RouteTable::resolve`]), and the same rules. No route is a
/// denial (403), never an allow. Allowed: 200 with `X-Auth-Request-*`.
pub async fn forward_auth(State(app): State<Arc<AppState>>, request: Request) -> Response {
    let request_id = request_id::of(&request);
    let peer = request_id::peer_of(&request).map(|address| address.ip());
    let headers = request.headers();
    let json = wants_json(headers, false);
    let mode = match mode_of(request.uri().query()) {
        Ok(mode) => mode,
        Err(error) => return error_response(&error, request_id.as_str(), json),
    };
    let original = match original_target(headers, app.is_trusted_proxy(peer)) {
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
    let navigation = mode == Mode::Redirect && is_page_navigation(headers);
    let verdict = judge(
        &app,
        headers,
        original.host.as_deref(),
        &original.path,
        &request_id,
    )
    .await;
    match verdict {
        Verdict::Allow { identity } => {
            let mut response = StatusCode::OK.into_response();
            let answer = response.headers_mut();
            // Every identity header, empty when there is nothing to say: a
            // proxy that copies them (Caddy's copy_headers, Traefik's
            // authResponseHeaders) then overwrites a client's copy instead
            // of keeping it or sending a placeholder.
            for suffix in ANSWER_IDENTITY {
                let value = identity
                    .iter()
                    .find(|(name, _)| *name == suffix)
                    .map_or("", |(_, value)| value.as_str());
                if let (Ok(name), Ok(value)) = (
                    HeaderName::from_bytes(format!("x-auth-request-{suffix}").as_bytes()),
                    HeaderValue::from_bytes(value.as_bytes()),
                ) {
                    answer.insert(name, value);
                }
            }
            answer.insert(
                http::header::CACHE_CONTROL,
                HeaderValue::from_static("no-store"),
            );
            response
        }
        Verdict::NotSignedIn if navigation => {
            let url = original_url(
                &app.config.server.public_url,
                original.proto.as_deref(),
                original.host.as_deref(),
                &original.uri,
            );
            crate::endpoints::redirect(&sign_in_location(&app, url.as_deref()), Vec::new())
        }
        Verdict::NotSignedIn => {
            error_response(&GatewayError::NotSignedIn, request_id.as_str(), true)
        }
        Verdict::Refused(error) => {
            let path_level = matches!(
                error,
                GatewayError::NoRouteToJudge | GatewayError::BadRequest(_)
            );
            let json = match mode {
                Mode::Redirect => !navigation,
                Mode::Plain => !path_level || json,
            };
            error_response(&error, request_id.as_str(), json)
        }
    }
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
    fn the_mode_is_plain_unless_redirect_is_asked_for() {
        assert_eq!(mode_of(None).unwrap(), Mode::Plain);
        assert_eq!(mode_of(Some("x=1")).unwrap(), Mode::Plain);
        assert_eq!(mode_of(Some("mode=redirect")).unwrap(), Mode::Redirect);
        assert!(mode_of(Some("mode=Redirect")).is_err());
        assert!(mode_of(Some("mode=")).is_err());
    }

    #[test]
    fn the_original_url_is_only_believed_from_trusted_proxies() {
        let mut headers = HeaderMap::new();
        headers.insert("x-original-uri", HeaderValue::from_static("/admin/x?y=1"));
        headers.insert("x-forwarded-host", HeaderValue::from_static("App.Example"));
        headers.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        assert_eq!(
            original_target(&headers, true),
            Ok(Original {
                host: Some("app.example".to_string()),
                path: "/admin/x".to_string(),
                uri: "/admin/x?y=1".to_string(),
                proto: Some("https".to_string()),
            })
        );
        let mut traefik = HeaderMap::new();
        traefik.insert("x-forwarded-uri", HeaderValue::from_static("/api#frag"));
        let judged = original_target(&traefik, true).unwrap();
        assert_eq!(
            (judged.path.as_str(), judged.uri.as_str()),
            ("/api", "/api")
        );
    }

    #[test]
    fn ingress_nginx_s_whole_original_url_names_scheme_host_and_path() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-original-url",
            HeaderValue::from_static("https://App.Example:8443/admin/x?y=1"),
        );
        assert_eq!(
            original_target(&headers, true),
            Ok(Original {
                host: Some("app.example:8443".to_string()),
                path: "/admin/x".to_string(),
                uri: "/admin/x?y=1".to_string(),
                proto: Some("https".to_string()),
            })
        );
        for bad in [
            "/admin",
            "ftp://a/b",
            "https://user@a/b",
            "https://a",
            "https:///b",
        ] {
            headers.insert("x-original-url", HeaderValue::from_static(bad));
            assert_eq!(
                original_target(&headers, true),
                Err(Unjudgeable::NotAPath),
                "{bad}"
            );
        }
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
        for trusted in [false, true] {
            let judged = original_target(&HeaderMap::new(), trusted).unwrap();
            assert_eq!(
                (judged.host, judged.path, judged.uri),
                (None, "/".into(), "/".into())
            );
        }
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
