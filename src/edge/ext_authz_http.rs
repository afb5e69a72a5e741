//! Envoy's external authorization over HTTP: `/oauth2/ext_authz/…`.
//!
//! Envoy's `ext_authz` HTTP filter with `http_service.path_prefix:
//! /oauth2/ext_authz` sends the authorization request with the original
//! method, the prefix followed by the original path and query, the original
//! `Host`/`:authority`, an empty body, and the request headers its
//! `allowed_headers` admit (Authorization always; `cookie`,
//! `x-forwarded-proto`, `sec-fetch-mode`, `accept` when configured).
//! A 200 allows and Envoy copies the headers named in
//! `allowed_upstream_headers` to the upstream request; it removes the
//! headers listed in `x-envoy-auth-headers-to-remove`; any other status is
//! sent to the client with the headers of `allowed_client_headers`
//! (`Location` and `WWW-Authenticate` among the defaults). See
//! <https://www.envoyproxy.io/docs/envoy/latest/api-v3/extensions/filters/http/ext_authz/v3/ext_authz.proto>.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use http::header::HOST;
use http::{HeaderName, HeaderValue, StatusCode};

use super::{
    identity_headers_to_remove, is_page_navigation, judge, original_url, sign_in_location,
    upstream_identity, Verdict,
};
use crate::error::GatewayError;
use crate::pages::error_response;
use crate::request_id;
use crate::AppState;

/// The `path_prefix` Envoy is configured with.
pub const PATH_PREFIX: &str = "/oauth2/ext_authz";

/// Envoy's header naming the request headers to remove upstream.
const HEADERS_TO_REMOVE: &str = "x-envoy-auth-headers-to-remove";

/// The original path and query under [`PATH_PREFIX`]; None when the rest
/// is not a path (`/oauth2/ext_authzX`, or nothing after the prefix).
pub fn original_path_and_query(path_and_query: &str) -> Option<&str> {
    path_and_query
        .strip_prefix(PATH_PREFIX)
        .filter(|rest| rest.starts_with('/'))
}

/// Any method on `/oauth2/ext_authz/…`: judges the original request.
pub async fn check(State(app): State<Arc<AppState>>, request: Request) -> Response {
    let request_id = request_id::of(&request);
    let peer = request_id::peer_of(&request).map(|address| address.ip());
    let headers = request.headers();
    let navigation = is_page_navigation(headers);
    if !app.is_trusted_proxy(peer) {
        tracing::warn!(
            peer = ?peer,
            "ext_authz refused: the caller is not in [server] trusted_proxies; add Envoy's \
             address to trusted_proxies"
        );
        return error_response(
            &GatewayError::UntrustedForwardAuth,
            request_id.as_str(),
            !navigation,
        );
    }
    let path_and_query = request
        .uri()
        .path_and_query()
        .map_or("", |value| value.as_str());
    let Some(original) = original_path_and_query(path_and_query) else {
        return error_response(
            &GatewayError::BadRequest("the original URI is not a path"),
            request_id.as_str(),
            !navigation,
        );
    };
    let path = original.split('?').next().unwrap_or(original);
    let host = headers
        .get(HOST)
        .and_then(|value| value.to_str().ok())
        .map(str::to_ascii_lowercase)
        .or_else(|| {
            request
                .uri()
                .authority()
                .map(|authority| authority.as_str().to_ascii_lowercase())
        });
    match judge(&app, headers, host.as_deref(), path, &request_id).await {
        Verdict::Allow { identity } => {
            let set = upstream_identity(&identity);
            let remove = identity_headers_to_remove(headers.keys().map(HeaderName::as_str), &set);
            let mut response = StatusCode::OK.into_response();
            let answer = response.headers_mut();
            for (name, value) in &set {
                if let (Ok(name), Ok(value)) = (
                    HeaderName::from_bytes(name.as_bytes()),
                    HeaderValue::from_bytes(value.as_bytes()),
                ) {
                    answer.insert(name, value);
                }
            }
            if let Ok(value) = HeaderValue::from_str(&remove.join(", ")) {
                answer.insert(HEADERS_TO_REMOVE, value);
            }
            answer.insert(
                http::header::CACHE_CONTROL,
                HeaderValue::from_static("no-store"),
            );
            response
        }
        Verdict::NotSignedIn if navigation => {
            let proto = headers
                .get("x-forwarded-proto")
                .and_then(|value| value.to_str().ok());
            let url = original_url(
                &app.config.server.public_url,
                proto,
                host.as_deref(),
                original,
            );
            crate::endpoints::redirect(&sign_in_location(&app, url.as_deref()), Vec::new())
        }
        Verdict::NotSignedIn => {
            error_response(&GatewayError::NotSignedIn, request_id.as_str(), true)
        }
        Verdict::Refused(error) => error_response(&error, request_id.as_str(), !navigation),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_original_path_follows_the_prefix() {
        assert_eq!(
            original_path_and_query("/oauth2/ext_authz/app/page?x=1"),
            Some("/app/page?x=1")
        );
        assert_eq!(original_path_and_query("/oauth2/ext_authz/"), Some("/"));
        assert_eq!(original_path_and_query("/oauth2/ext_authz"), None);
        assert_eq!(original_path_and_query("/oauth2/ext_authzX/a"), None);
        assert_eq!(original_path_and_query("/other/app"), None);
    }
}
