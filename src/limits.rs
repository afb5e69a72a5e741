//! Request size limits and framing checks, before anything else reads the
//! request.
//!
//! - all header names and values together: `max_header_bytes` → 431;
//! - the Cookie headers: `max_cookie_bytes` → 431;
//! - the query string: `max_query_bytes` → 414;
//! - the body: `max_body_bytes` → 413, at once when `Content-Length` says
//!   so, otherwise counted as the body streams (the upstream request is then
//!   abandoned, and the client gets 413 if no answer has started yet);
//! - `Transfer-Encoding` other than one plain `chunked` → 400.
//!
//! Every refusal of a request's framing or body (and every body that broke
//! off on its way upstream) closes an HTTP/1 client's connection after the
//! answer (`Connection: close`): what follows on the connection is whatever
//! the client meant the body to be, and must not be read as a next request.
//!
//! hyper already refuses, with 400, differing duplicate `Content-Length`s, a
//! `Transfer-Encoding` whose last coding is not `chunked`, and any
//! `Transfer-Encoding` on HTTP/1.0. A request carrying both
//! `Content-Length` and `Transfer-Encoding: chunked` is read as chunked
//! (RFC 9112 §6.3), its `Content-Length` is dropped before portico sees it,
//! and hyper closes the connection after the answer, so no bytes can be
//! smuggled in as a second request (tested with raw requests).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use futures_util::StreamExt as _;
use http::header::{CONTENT_LENGTH, COOKIE, TRANSFER_ENCODING};
use http::HeaderMap;

use crate::config::RequestLimits;
use crate::error::GatewayError;
use crate::pages::{error_response, wants_json};
use crate::AppState;

/// Which limit a request broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    Headers,
    Cookies,
    Query,
    Body,
}

impl Limit {
    pub fn label(self) -> &'static str {
        match self {
            Limit::Headers => "headers",
            Limit::Cookies => "cookies",
            Limit::Query => "query",
            Limit::Body => "body",
        }
    }
}

impl std::fmt::Display for Limit {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(match self {
            Limit::Headers => "the request headers are too large",
            Limit::Cookies => "the request's cookies are too large",
            Limit::Query => "the query string is too long",
            Limit::Body => "the request body is too large",
        })
    }
}

fn header_bytes(headers: &HeaderMap) -> u64 {
    headers
        .iter()
        .map(|(name, value)| (name.as_str().len() + value.len()) as u64)
        .sum()
}

fn cookie_bytes(headers: &HeaderMap) -> u64 {
    headers
        .get_all(COOKIE)
        .iter()
        .map(|value| value.len() as u64)
        .sum()
}

/// The limit `request`'s head breaks, if any (the body is checked as it flows).
pub fn check_head<B>(request: &http::Request<B>, limits: &RequestLimits) -> Option<Limit> {
    let headers = request.headers();
    if cookie_bytes(headers) > limits.max_cookie_bytes {
        return Some(Limit::Cookies);
    }
    if header_bytes(headers) > limits.max_header_bytes {
        return Some(Limit::Headers);
    }
    let query = request.uri().query().map_or(0, str::len) as u64;
    if query > limits.max_query_bytes {
        return Some(Limit::Query);
    }
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|text| text.trim().parse::<u64>().ok());
    if declared.is_some_and(|length| length > limits.max_body_bytes) {
        return Some(Limit::Body);
    }
    None
}

/// True when `Transfer-Encoding` is absent or exactly one plain `chunked`.
/// Stacked or repeated codings are what request smuggling is made of.
pub fn plain_framing(headers: &HeaderMap) -> bool {
    let mut values = headers.get_all(TRANSFER_ENCODING).iter();
    match (values.next(), values.next()) {
        (None, _) => true,
        (Some(value), None) => value
            .to_str()
            .is_ok_and(|text| text.trim().eq_ignore_ascii_case("chunked")),
        (Some(_), Some(_)) => false,
    }
}

/// A body that fails once more than `limit` bytes have flowed, setting `exceeded`.
fn counted(body: Body, limit: u64, exceeded: Arc<AtomicBool>) -> Body {
    let mut seen: u64 = 0;
    Body::from_stream(body.into_data_stream().map(move |chunk| {
        let bytes = chunk?;
        seen = seen.saturating_add(bytes.len() as u64);
        if seen > limit {
            exceeded.store(true, Ordering::SeqCst);
            return Err(axum::Error::new(GatewayError::TooLarge(Limit::Body)));
        }
        Ok(bytes)
    }))
}

/// A request let through whose body of no declared length (HTTP/1 chunked,
/// or HTTP/2 without `content-length`) is counted as it streams.
pub struct Watched {
    exceeded: Arc<AtomicBool>,
    json: bool,
    version: http::Version,
}

/// Makes an HTTP/1 answer close its connection once sent. (HTTP/2 has no
/// `Connection` header; a stream's refusal does not touch the others.)
pub fn close_connection(response: &mut Response, version: http::Version) {
    if version <= http::Version::HTTP_11 {
        response.headers_mut().insert(
            http::header::CONNECTION,
            http::HeaderValue::from_static("close"),
        );
    }
}

/// What [`admit`] decided.
pub enum Admission {
    /// Let through (a chunked body counted as it streams, when watched).
    Through(Request, Option<Watched>),
    /// Over a limit: the answer.
    Refused(Response),
}

/// Refuses a request over a limit; lets the rest through, a chunked body
/// counted as it streams. The caller hands the answer to [`judge`]
/// afterwards. (Two plain calls rather than one async wrapper: a wrapper
/// future around the handler's moved the handler's whole state once more on
/// every request.)
pub fn admit(
    app: &AppState,
    request: Request,
    request_id: &crate::request_id::RequestId,
) -> Admission {
    let limits = app.config.server.limits;
    let refuse = |request: &Request, error: GatewayError| {
        let json = wants_json(request.headers(), false);
        let mut response = error_response(&error, request_id.as_str(), json);
        if matches!(
            error,
            GatewayError::BadRequest(_) | GatewayError::TooLarge(Limit::Body)
        ) {
            close_connection(&mut response, request.version());
        }
        response
    };
    if !plain_framing(request.headers()) {
        app.metrics.limit_rejected("framing");
        tracing::info!("refused a request with stacked or repeated Transfer-Encoding");
        return Admission::Refused(refuse(
            &request,
            GatewayError::BadRequest("the Transfer-Encoding must be chunked, once"),
        ));
    }
    if let Some(limit) = check_head(&request, &limits) {
        app.metrics.limit_rejected(limit.label());
        tracing::info!(limit = limit.label(), "refused a request over a size limit");
        return Admission::Refused(refuse(&request, GatewayError::TooLarge(limit)));
    }
    // A declared length is checked above and hyper holds the body to it
    // (HTTP/2's too); only a body of no declared length (chunked, or an
    // HTTP/2 stream without one) has to be counted as it streams.
    if http_body::Body::is_end_stream(request.body())
        || (request.headers().contains_key(CONTENT_LENGTH)
            && !request.headers().contains_key(TRANSFER_ENCODING))
    {
        return Admission::Through(request, None);
    }
    let json = wants_json(request.headers(), false);
    let version = request.version();
    let exceeded = Arc::new(AtomicBool::new(false));
    let (parts, body) = request.into_parts();
    let body = counted(body, limits.max_body_bytes, exceeded.clone());
    Admission::Through(
        Request::from_parts(parts, body),
        Some(Watched {
            exceeded,
            json,
            version,
        }),
    )
}

/// The answer to a request [`admit`] let through: a 413 instead if its
/// streamed body went over the limit.
pub fn judge(
    app: &AppState,
    watched: Option<Watched>,
    response: Response,
    request_id: &crate::request_id::RequestId,
) -> Response {
    let Some(watched) = watched else {
        return response;
    };
    if !watched.exceeded.load(Ordering::SeqCst) {
        return response;
    }
    app.metrics.limit_rejected(Limit::Body.label());
    tracing::info!(
        limit = Limit::Body.label(),
        "a streamed body went over the limit"
    );
    let mut response = error_response(
        &GatewayError::TooLarge(Limit::Body),
        request_id.as_str(),
        watched.json,
    );
    close_connection(&mut response, watched.version);
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn limits() -> RequestLimits {
        RequestLimits {
            max_header_bytes: 200,
            max_cookie_bytes: 50,
            max_query_bytes: 10,
            max_body_bytes: 100,
        }
    }

    fn request(uri: &str, headers: &[(&str, &str)]) -> http::Request<()> {
        let mut builder = http::Request::builder().uri(uri);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(()).unwrap()
    }

    #[test]
    fn each_limit_is_checked() {
        assert_eq!(check_head(&request("/a?b=1", &[]), &limits()), None);
        assert_eq!(
            check_head(&request("/a?b=12345678901", &[]), &limits()),
            Some(Limit::Query)
        );
        let cookie = "c=".to_string() + &"x".repeat(60);
        assert_eq!(
            check_head(&request("/", &[("cookie", &cookie)]), &limits()),
            Some(Limit::Cookies)
        );
        let big = "y".repeat(250);
        assert_eq!(
            check_head(&request("/", &[("x-big", &big)]), &limits()),
            Some(Limit::Headers)
        );
        assert_eq!(
            check_head(&request("/", &[("content-length", "101")]), &limits()),
            Some(Limit::Body)
        );
        assert_eq!(
            check_head(&request("/", &[("content-length", "100")]), &limits()),
            None
        );
    }

    #[test]
    fn only_one_plain_chunked_coding_is_accepted() {
        let mut headers = HeaderMap::new();
        assert!(plain_framing(&headers));
        headers.insert(TRANSFER_ENCODING, HeaderValue::from_static("Chunked"));
        assert!(plain_framing(&headers));
        headers.insert(TRANSFER_ENCODING, HeaderValue::from_static("gzip, chunked"));
        assert!(!plain_framing(&headers));
        headers.insert(TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
        headers.append(TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
        assert!(!plain_framing(&headers));
    }

    #[tokio::test]
    async fn a_streamed_body_fails_past_the_limit() {
        let exceeded = Arc::new(AtomicBool::new(false));
        let body = counted(Body::from(vec![0u8; 101]), 100, exceeded.clone());
        assert!(axum::body::to_bytes(body, usize::MAX).await.is_err());
        assert!(exceeded.load(Ordering::SeqCst));
        let fine = Arc::new(AtomicBool::new(false));
        let body = counted(Body::from(vec![0u8; 100]), 100, fine.clone());
        assert_eq!(
            axum::body::to_bytes(body, usize::MAX).await.unwrap().len(),
            100
        );
        assert!(!fine.load(Ordering::SeqCst));
    }
}
