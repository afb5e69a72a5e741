//! portico's own refusals, as gRPC clients read them.
//!
//! A gRPC client looks for `grpc-status` and takes an HTTP error status as
//! a transport failure ("protocol error", "unimplemented" and the like).
//! So a request that says it is gRPC (`content-type: application/grpc…`)
//! and is refused by portico (not signed in, refused by the route's rules,
//! the upstream unreachable) gets what a gRPC server would send: HTTP 200,
//! no body, and `grpc-status` with `grpc-message` in the head (a
//! "trailers-only" response). The codes follow gRPC's own mapping from HTTP
//! statuses (doc/http-grpc-status-mapping.md in grpc/grpc).

use axum::body::Body;
use axum::response::Response;
use http::header::{CONTENT_TYPE, WWW_AUTHENTICATE};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use percent_encoding::{utf8_percent_encode, AsciiSet, CONTROLS};

use crate::error::GatewayError;

const GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");
const GRPC_MESSAGE: HeaderName = HeaderName::from_static("grpc-message");

/// What `grpc-message` must escape: `%` and what is not printable ASCII.
const MESSAGE_ESCAPES: &AsciiSet = &CONTROLS.add(b'%');

/// Whether the request is a gRPC call (`application/grpc`, `+proto`,
/// `-web` and the like).
pub fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|kind| {
            kind.get(..16)
                .is_some_and(|start| start.eq_ignore_ascii_case("application/grpc"))
        })
}

/// The gRPC status code for portico's HTTP status.
pub fn code_for(status: StatusCode) -> u8 {
    match status.as_u16() {
        400 => 13,                   // INTERNAL
        401 => 16,                   // UNAUTHENTICATED
        403 => 7,                    // PERMISSION_DENIED
        404 => 12,                   // UNIMPLEMENTED
        413 | 431 => 8,              // RESOURCE_EXHAUSTED
        429 | 502 | 503 | 504 => 14, // UNAVAILABLE
        500 => 13,                   // INTERNAL
        _ => 2,                      // UNKNOWN
    }
}

/// `error` as a trailers-only gRPC answer.
pub fn refusal(error: &GatewayError, request_id: &str) -> Response {
    let status = error.status();
    let message = match error {
        GatewayError::NotSignedIn => "not signed in: send a bearer token or the session cookie \
                                      in the call's metadata"
            .to_owned(),
        other => other.explain().message,
    };
    let message = format!("{message} (request id {request_id})");
    let mut response = Response::new(Body::empty());
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    headers.insert(GRPC_STATUS, HeaderValue::from(u16::from(code_for(status))));
    let escaped = utf8_percent_encode(&message, MESSAGE_ESCAPES).to_string();
    if let Ok(value) = HeaderValue::from_str(&escaped) {
        headers.insert(GRPC_MESSAGE, value);
    }
    if status == StatusCode::UNAUTHORIZED {
        headers.insert(
            WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"portico\""),
        );
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_calls_are_told_by_their_content_type() {
        let with = |kind: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(CONTENT_TYPE, HeaderValue::from_str(kind).unwrap());
            is_grpc(&headers)
        };
        assert!(with("application/grpc"));
        assert!(with("application/grpc+proto"));
        assert!(with("Application/GRPC-web"));
        assert!(!with("application/json"));
        assert!(!with("application/grp"));
        assert!(!is_grpc(&HeaderMap::new()));
    }

    #[test]
    fn refusals_are_trailers_only_answers_with_grpc_codes() {
        let response = refusal(&GatewayError::NotSignedIn, "req-1");
        assert_eq!(response.status(), StatusCode::OK);
        let headers = response.headers();
        assert_eq!(headers["grpc-status"], "16");
        assert_eq!(headers[CONTENT_TYPE], "application/grpc");
        let message = headers["grpc-message"].to_str().unwrap();
        assert!(
            message.contains("not signed in") && message.contains("req-1"),
            "{message}"
        );
        let forbidden = refusal(&GatewayError::Forbidden("route rules".into()), "r");
        assert_eq!(forbidden.headers()["grpc-status"], "7");
        assert_eq!(code_for(StatusCode::BAD_GATEWAY), 14);
        assert_eq!(code_for(StatusCode::GATEWAY_TIMEOUT), 14);
        assert_eq!(code_for(StatusCode::IM_A_TEAPOT), 2);
    }

    #[test]
    fn messages_escape_percent_and_non_ascii() {
        let text = utf8_percent_encode("100% ünicode\n", MESSAGE_ESCAPES).to_string();
        assert_eq!(text, "100%25 %C3%BCnicode%0A");
    }
}
