//! The authenticated reverse proxy: route → session → rules → upstream.

mod caching;
mod grpc;
/// The HTTP/1.1 wire format of the upstream client (public for the fuzz
/// target in fuzz/, which feeds it hostile responses).
pub mod h1;
mod h2_upstream;
mod headers;
mod identify;
mod routes;
mod upstream;
mod upstream_limit;

use std::borrow::Cow;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use http::header::{HOST, UPGRADE};
use http::{HeaderName, HeaderValue};

pub use h1::WireError;
pub use headers::{is_identity_header, UpstreamHeaders, IDENTITY_HEADERS};
pub use identify::{authenticate, bearer_token, Principal};
pub use routes::{PathError, RouteTable};
use upstream::Tunnel;
pub use upstream::{UpstreamError, UpstreamTimeouts, Upstreams, MAX_BUFFERED};
pub use upstream_limit::Overflow;

use crate::authz::Decision;
use crate::error::GatewayError;
use crate::pages::{error_response, forbidden, is_navigation, wants_json};
use crate::request_id::{self, RequestMeta};
use crate::{authz, endpoints, telemetry, AppState};

/// Every request that is not one of portico's own endpoints, as the
/// router's fallback (the id, note and peer come from its extensions).
pub async fn gateway(State(app): State<Arc<AppState>>, request: Request) -> Response {
    let meta = RequestMeta::of(&request);
    let peer = request_id::peer_of(&request);
    proxied(app, request, peer, meta).await
}

/// Every request that is not one of portico's own endpoints: route, caller,
/// rules, upstream.
pub async fn proxied(
    app: Arc<AppState>,
    mut request: Request,
    peer: Option<std::net::SocketAddr>,
    meta: RequestMeta,
) -> Response {
    let RequestMeta {
        id: request_id,
        note,
    } = meta;
    // A websocket handshake: the client's connection is handed over once
    // the upstream agrees (101).
    let on_upgrade = wants_websocket(&request).then(|| hyper::upgrade::on(&mut request));
    let (parts, body) = request.into_parts();
    let host = request_host(parts.headers.get(HOST), &parts.uri);
    // A gRPC call gets portico's refusals as gRPC statuses (see `grpc`).
    let grpc = grpc::is_grpc(&parts.headers);
    let refuse = |error: &GatewayError, json: bool| {
        if grpc {
            grpc::refusal(error, request_id.as_str())
        } else {
            error_response(error, request_id.as_str(), json)
        }
    };
    // The rules judge the canonical path and the upstream receives exactly
    // it (request_path): borrowed, and the request's own target reused,
    // when the path already was canonical.
    let (path, route) = match app.routes.resolve(host.as_deref(), parts.uri.path()) {
        Ok(resolved) => resolved,
        Err(error) => {
            let json = wants_json(&parts.headers, false);
            return refuse(&path_error(error), json);
        }
    };
    note.set_route(&route);
    let json = wants_json(&parts.headers, route.api);
    let path_and_query: Cow<'_, str> = match (&path, parts.uri.query()) {
        (Cow::Borrowed(_), _) => Cow::Borrowed(
            parts
                .uri
                .path_and_query()
                .map_or(path.as_ref(), |value| value.as_str()),
        ),
        (Cow::Owned(path), Some(query)) => Cow::Owned(format!("{path}?{query}")),
        (Cow::Owned(path), None) => Cow::Borrowed(path.as_str()),
    };
    let path_and_query = path_and_query.as_ref();

    // Only needed when a sign-in starts: computed then, not per request.
    let login_params = || route.login_param_pairs();
    let return_to = || {
        app.return_policy
            .check(path_and_query)
            .unwrap_or_else(|| app.return_policy.default_target())
    };
    let principal = if route.public {
        None
    } else {
        match authenticate(&app, &parts.headers, Some(&route), &request_id).await {
            Ok(Some(principal)) => Some(principal),
            // Only a page navigation starts a sign-in: an image, a fetch or
            // a websocket handshake or a gRPC call gets 401 and sets no
            // login cookie.
            Ok(None) if json || grpc || on_upgrade.is_some() || !is_navigation(&parts.headers) => {
                return refuse(&GatewayError::NotSignedIn, json)
            }
            Ok(None) => {
                return endpoints::begin_login(
                    &app,
                    &parts.headers,
                    &return_to(),
                    &request_id,
                    &login_params(),
                )
            }
            Err(error) => return refuse(&error, json),
        }
    };
    if let Some(principal) = &principal {
        let data = principal.data();
        note.set_user(&data.sub);
        match authz::decide(&route, data) {
            Decision::Allow => {}
            Decision::StepUp if !grpc && step_up_allowed(&app, principal, json) => {
                tracing::info!(sub = %data.sub, route = %route.path_prefix, "step-up sign-in required");
                let mut params = login_params();
                if !params.iter().any(|(name, _)| name == "prompt") {
                    params.push(("prompt".to_string(), "login".to_string()));
                }
                return endpoints::begin_login(
                    &app,
                    &parts.headers,
                    &return_to(),
                    &request_id,
                    &params,
                );
            }
            Decision::StepUp | Decision::Deny(_) => {
                tracing::info!(sub = %data.sub, route = %route.path_prefix, "route rules refused the user");
                if grpc {
                    return refuse(&GatewayError::Forbidden("route rules".into()), json);
                }
                let csrf = match principal {
                    Principal::Session { id, .. } => app.sessions.keys.csrf_token(&id.to_string()),
                    Principal::Bearer { .. } => String::new(),
                };
                let user = data.email.as_deref().or(Some(data.sub.as_str()));
                let refused = return_to().to_string();
                return forbidden(user, &csrf, Some(&refused), request_id.as_str(), json);
            }
        }
    }

    // HTTP/1 says so in its head (Content-Length, Transfer-Encoding);
    // HTTP/2 by a stream not ended with its headers, length or none.
    let has_body = !http_body::Body::is_end_stream(&body);
    let mut headers = UpstreamHeaders::new(&parts.headers, |name| {
        app.sessions.cookies.is_portico_cookie(name)
    });
    // The upstream's own Host.
    match &route.upstream_host {
        Some(upstream_host) => headers.set(HOST, upstream_host.clone()),
        None => headers.remove(HOST),
    }
    let peer_ip = peer.map(|address| address.ip());
    headers.forwarded(
        peer_ip.unwrap_or(std::net::IpAddr::from([127, 0, 0, 1])),
        app.config.server.public_url.scheme(),
        host.as_deref(),
        app.is_trusted_proxy(peer_ip),
    );
    match HeaderValue::from_str(request_id.as_str()) {
        Ok(value) => headers.set(request_id::HEADER, value),
        Err(_) => headers.remove(request_id::HEADER),
    }
    if let Some(principal) = &principal {
        headers.identity(principal.data());
        if route.identity_jwt {
            let signer = match Box::pin(app.identity_signer()).await {
                Ok(signer) => signer,
                Err(error) => {
                    tracing::warn!(%error, "identity key unavailable");
                    return refuse(&error, json);
                }
            };
            let caller = match principal {
                Principal::Session { id, .. } => format!("session:{id}"),
                Principal::Bearer { token, .. } => format!("bearer:{}", token_fingerprint(token)),
            };
            let audience = route.upstream_origin.to_string();
            let token = signer.token_for(&caller, &audience, principal.data(), app.now_seconds());
            if let Ok(value) = HeaderValue::from_str(&token) {
                headers.set(HeaderName::from_static("x-portico-identity"), value);
            }
        }
        if route.pass_access_token {
            if let Some(token) = principal.access_token(&app) {
                if let Ok(value) = HeaderValue::from_str(&token) {
                    headers.set(HeaderName::from_static("x-forwarded-access-token"), value);
                }
            }
        }
    }
    if on_upgrade.is_some() {
        headers.websocket();
    }
    // A request without a body is sent without one (a client's
    // `Content-Length: 0`, as on an empty POST, goes along); one with a body
    // keeps its length, or is chunked.
    let body = if has_body { body } else { Body::empty() };
    let call = telemetry::UpstreamCall::begin(&route.upstream_origin);
    if let Some(call) = &call {
        for (name, value) in call.headers() {
            match value {
                Some(value) => headers.set(name, value),
                None => headers.remove(name),
            }
        }
    }
    let forwarded = app
        .upstreams
        .forward(
            &parts.method,
            &route.upstream,
            path_and_query,
            &route.upstream_origin,
            route.upstream_ca.as_ref(),
            &headers,
            body,
        )
        .await;
    if let Some(call) = call {
        call.end(
            forwarded
                .as_ref()
                .ok()
                .map(|(response, _)| response.status()),
        );
    }
    match forwarded {
        Ok((mut response, tunnel)) => {
            if let (Some(tunnel), Some(on_upgrade)) = (tunnel, on_upgrade) {
                tokio::spawn(crate::ops::request_log::within(
                    &request_id,
                    splice(on_upgrade, tunnel),
                ));
            }
            if route.cache_control_private
                && response.status() != http::StatusCode::SWITCHING_PROTOCOLS
            {
                if let Some(principal) = &principal {
                    caching::keep_private(response.headers_mut(), varies_on(principal, &route));
                }
            }
            response
        }
        Err(error) => {
            tracing::warn!(%error, upstream = %route.upstream, "upstream request failed");
            let client_side = error.is_client_side();
            let mut response = refuse(&error.into(), json);
            if client_side {
                // What is left of its body cannot be trusted as a next request.
                crate::limits::close_connection(&mut response, parts.version);
            }
            response
        }
    }
}

/// The request headers that decided a protected answer, for `Vary`.
fn varies_on(principal: &Principal, route: &crate::config::RouteConfig) -> &'static [&'static str] {
    match principal {
        Principal::Session { .. } => &["Cookie"],
        Principal::Bearer { .. } if route.token_cookie.is_some() => &["Authorization", "Cookie"],
        Principal::Bearer { .. } => &["Authorization"],
    }
}

/// A path without a route: refused as it is (400), or not covered (404).
pub fn path_error(error: PathError) -> GatewayError {
    match error {
        PathError::Refused(refusal) => GatewayError::BadRequest(refusal.message()),
        PathError::NoRoute => GatewayError::NoRoute,
    }
}

/// A websocket handshake (RFC 6455 §4.1): GET, `Connection: upgrade`,
/// `Upgrade: websocket`. Other upgrades (h2c, say) are not passed on: their
/// `Upgrade` header stops at portico like any hop-by-hop header.
fn wants_websocket(request: &Request) -> bool {
    let headers = request.headers();
    // Upgrade first: nearly every request has none, and that is one lookup.
    headers
        .get(UPGRADE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|protocol| protocol.trim().eq_ignore_ascii_case("websocket"))
        && request.method() == http::Method::GET
        && headers::connection_tokens(headers).any(|token| token.eq_ignore_ascii_case("upgrade"))
}

/// Once hyper has sent the 101 and handed over the client's connection,
/// passes bytes between it and the upstream until both sides are done.
async fn splice(on_upgrade: hyper::upgrade::OnUpgrade, tunnel: Tunnel) {
    match on_upgrade.await {
        Ok(upgraded) => {
            let mut client = hyper_util::rt::TokioIo::new(upgraded);
            if let Err(error) = tunnel.splice(&mut client).await {
                tracing::debug!(%error, "a websocket connection ended with an error");
            }
        }
        Err(error) => tracing::debug!(%error, "the client's connection was not handed over"),
    }
}

/// A short stand-in for a bearer token in cache keys (never logged).
fn token_fingerprint(token: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(token.as_bytes());
    digest
        .iter()
        .take(16)
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// A step-up sign-in is offered to a browser with a session that is not
/// brand new (a session a minute old that still lacks the method would only
/// loop through the provider again).
fn step_up_allowed(app: &AppState, principal: &Principal, json: bool) -> bool {
    match principal {
        Principal::Session { data, .. } => !json && app.now_seconds() - data.created_at > 60,
        Principal::Bearer { .. } => false,
    }
}

/// The Host the client asked for, lower-case (HTTP/1 Host header or the
/// HTTP/2 authority); borrowed when it already is, as it nearly always is.
fn request_host<'a>(host: Option<&'a HeaderValue>, uri: &'a http::Uri) -> Option<Cow<'a, str>> {
    host.and_then(|value| value.to_str().ok())
        .or_else(|| uri.authority().map(|authority| authority.as_str()))
        .map(|host| {
            if host.bytes().any(|byte| byte.is_ascii_uppercase()) {
                Cow::Owned(host.to_ascii_lowercase())
            } else {
                Cow::Borrowed(host)
            }
        })
}
