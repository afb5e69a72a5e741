//! Envoy's external authorization over gRPC:
//! `envoy.service.auth.v3.Authorization/Check` on
//! `[server] ext_authz_grpc_listen` (Envoy Gateway, Istio and Contour speak
//! only this).
//!
//! The request's attributes carry the original request (method, `path` with
//! query, `host`, `scheme`, lower-case `headers`); the answer is a
//! `CheckResponse` with status OK and an `OkHttpResponse` (identity headers
//! to set upstream, identity headers to remove), or a non-OK status with a
//! `DeniedHttpResponse` (401/403, or a 302 with `Location` for a page
//! navigation). See
//! <https://www.envoyproxy.io/docs/envoy/latest/api-v3/service/auth/v3/external_auth.proto>.

use std::net::SocketAddr;
use std::sync::Arc;

use http::{HeaderMap, HeaderName, HeaderValue};
use tonic::{Request, Response, Status};

use super::proto::envoy::config::core::v3::header_value_option::HeaderAppendAction;
use super::proto::envoy::config::core::v3::{HeaderValue as ProtoHeader, HeaderValueOption};
use super::proto::envoy::r#type::v3::HttpStatus;
use super::proto::envoy::service::auth::v3::authorization_server::{
    Authorization, AuthorizationServer,
};
use super::proto::envoy::service::auth::v3::check_response::HttpResponse;
use super::proto::envoy::service::auth::v3::{
    attribute_context::HttpRequest, CheckRequest, CheckResponse, DeniedHttpResponse, OkHttpResponse,
};
use super::proto::google::rpc::Status as RpcStatus;
use super::{
    identity_headers_to_remove, is_page_navigation, judge, original_url, sign_in_location,
    upstream_identity, Verdict,
};
use crate::error::GatewayError;
use crate::pages::error_response;
use crate::request_id::RequestId;
use crate::AppState;

/// gRPC status codes (google.rpc.Code) the answer carries.
const OK: i32 = 0;
const INVALID_ARGUMENT: i32 = 3;
const PERMISSION_DENIED: i32 = 7;
const UNAVAILABLE: i32 = 14;
const UNAUTHENTICATED: i32 = 16;

/// Largest number of request headers taken from a check request.
const MAX_HEADERS: usize = 200;

/// The Authorization service over the gateway's shared state.
pub struct ExtAuthz {
    app: Arc<AppState>,
}

/// The service, ready to add to a tonic server.
pub fn service(app: Arc<AppState>) -> AuthorizationServer<ExtAuthz> {
    AuthorizationServer::new(ExtAuthz { app })
}

/// Serves `Authorization/Check` on `listener` until `shutdown` resolves.
pub async fn serve(
    app: Arc<AppState>,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), tonic::transport::Error> {
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    tonic::transport::Server::builder()
        .timeout(std::time::Duration::from_secs(30))
        .concurrency_limit_per_connection(256)
        .http2_keepalive_interval(Some(std::time::Duration::from_secs(60)))
        .add_service(service(app))
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
}

#[tonic::async_trait]
impl Authorization for ExtAuthz {
    async fn check(
        &self,
        request: Request<CheckRequest>,
    ) -> Result<Response<CheckResponse>, Status> {
        let peer = request
            .remote_addr()
            .map(|address: SocketAddr| address.ip());
        if !self.app.is_trusted_proxy(peer) {
            tracing::warn!(
                peer = ?peer,
                "ext_authz gRPC refused: the caller is not in [server] trusted_proxies; add \
                 Envoy's address to trusted_proxies"
            );
            return Err(Status::permission_denied(
                "the caller is not in portico's [server] trusted_proxies",
            ));
        }
        let http = request
            .into_inner()
            .attributes
            .and_then(|attributes| attributes.request)
            .and_then(|request| request.http)
            .unwrap_or_default();
        // Only trusted callers get here: Envoy's request id is kept when plain.
        let request_id = crate::request_id::from_trusted(&http.id);
        let span = tracing::info_span!("ext_authz_grpc", request_id = %request_id.as_str());
        Ok(Response::new(
            tracing::Instrument::instrument(answer(&self.app, &http, &request_id), span).await,
        ))
    }
}

/// The original request's headers as a `HeaderMap` (either the `headers`
/// map or, with Envoy's `encode_raw_headers`, `header_map`); pseudo-headers
/// and anything that is not a header are left out.
pub fn request_headers(http: &HttpRequest) -> HeaderMap {
    let mut headers = HeaderMap::new();
    let mut add = |name: &str, value: &[u8]| {
        if headers.len() >= MAX_HEADERS || name.starts_with(':') {
            return;
        }
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_bytes(value),
        ) {
            headers.append(name, value);
        }
    };
    for (name, value) in &http.headers {
        add(name, value.as_bytes());
    }
    if let Some(map) = &http.header_map {
        for header in &map.headers {
            let value = if header.raw_value.is_empty() {
                header.value.as_bytes()
            } else {
                &header.raw_value
            };
            add(&header.key, value);
        }
    }
    headers
}

/// Judges the original request of a check and spells the answer.
pub async fn answer(app: &AppState, http: &HttpRequest, request_id: &RequestId) -> CheckResponse {
    let headers = request_headers(http);
    let navigation = is_page_navigation(&headers);
    let host = (!http.host.is_empty()).then(|| http.host.to_ascii_lowercase());
    let path_and_query = http.path.as_str();
    let path = path_and_query.split(['?', '#']).next().unwrap_or_default();
    if !path.starts_with('/') {
        let error = GatewayError::BadRequest("the original URI is not a path");
        return denied_from(error_response(&error, request_id.as_str(), !navigation)).await;
    }
    match judge(app, &headers, host.as_deref(), path, request_id).await {
        Verdict::Allow { identity } => {
            let set = upstream_identity(&identity);
            let remove = identity_headers_to_remove(headers.keys().map(HeaderName::as_str), &set);
            CheckResponse {
                status: Some(RpcStatus {
                    code: OK,
                    message: String::new(),
                }),
                http_response: Some(HttpResponse::OkResponse(OkHttpResponse {
                    headers: set
                        .into_iter()
                        .map(|(name, value)| header(name, value))
                        .collect(),
                    headers_to_remove: remove,
                    response_headers_to_add: Vec::new(),
                })),
            }
        }
        Verdict::NotSignedIn if navigation => {
            let proto = (!http.scheme.is_empty())
                .then_some(http.scheme.as_str())
                .or_else(|| {
                    headers
                        .get("x-forwarded-proto")
                        .and_then(|value| value.to_str().ok())
                });
            let uri = path_and_query.split('#').next().unwrap_or_default();
            let url = original_url(&app.config.server.public_url, proto, host.as_deref(), uri);
            let location = sign_in_location(app, url.as_deref());
            denied_from(crate::endpoints::redirect(&location, Vec::new())).await
        }
        Verdict::NotSignedIn => {
            denied_from(error_response(
                &GatewayError::NotSignedIn,
                request_id.as_str(),
                true,
            ))
            .await
        }
        Verdict::Refused(error) => {
            denied_from(error_response(&error, request_id.as_str(), !navigation)).await
        }
    }
}

/// The largest denial body passed on to Envoy.
const MAX_DENIAL_BODY: usize = 64 * 1024;

/// A denial spelt as the HTTP answer portico would give itself (status,
/// headers such as `Location` and `WWW-Authenticate`, page or JSON body),
/// with the gRPC status that goes with it.
async fn denied_from(response: axum::response::Response) -> CheckResponse {
    let (parts, body) = response.into_parts();
    let body = axum::body::to_bytes(body, MAX_DENIAL_BODY)
        .await
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .unwrap_or_default();
    let headers = parts
        .headers
        .iter()
        .filter(|(name, _)| *name != http::header::CONTENT_LENGTH)
        .filter_map(|(name, value)| {
            Some(header(
                name.as_str().to_string(),
                value.to_str().ok()?.to_string(),
            ))
        })
        .collect();
    denied(grpc_code(parts.status), parts.status, body, headers)
}

/// The gRPC status (google.rpc.Code) for an HTTP denial.
fn grpc_code(status: http::StatusCode) -> i32 {
    match status.as_u16() {
        302 | 401 => UNAUTHENTICATED,
        400 => INVALID_ARGUMENT,
        403 => PERMISSION_DENIED,
        _ => UNAVAILABLE,
    }
}

/// A header Envoy sets, replacing any of the same name.
fn header(key: String, value: String) -> HeaderValueOption {
    HeaderValueOption {
        header: Some(ProtoHeader {
            key,
            value,
            raw_value: Vec::new(),
        }),
        append_action: HeaderAppendAction::OverwriteIfExistsOrAdd as i32,
        keep_empty_value: false,
    }
}

fn denied(
    code: i32,
    status: http::StatusCode,
    body: String,
    headers: Vec<HeaderValueOption>,
) -> CheckResponse {
    CheckResponse {
        status: Some(RpcStatus {
            code,
            message: String::new(),
        }),
        http_response: Some(HttpResponse::DeniedResponse(DeniedHttpResponse {
            status: Some(HttpStatus {
                code: i32::from(status.as_u16()),
            }),
            headers,
            body,
        })),
    }
}
