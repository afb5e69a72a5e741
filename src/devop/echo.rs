//! An upstream app that echoes what it received, to see and test what portico forwards.
//!
//! It answers JSON describing the request (or an HTML page for browsers, headed by the identity
//! headers portico adds) and has a few paths for proxy tests: slow answers, chosen statuses,
//! streamed answers, a streamed body echo, and `/reset`, which breaks off mid-response. It counts TCP connections so tests can check that
//! portico reuses pooled upstream connections.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use askama::Template;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use futures_util::StreamExt as _;
use serde_json::{json, Map, Value};
use tokio::net::TcpListener;

use super::pages::render_app;
use super::server::ServerHandle;

/// Longest wait `/slow` accepts, in milliseconds.
const MAX_SLOW_MILLISECONDS: u64 = 120_000;
/// Most chunks `/stream` sends.
const MAX_CHUNKS: u64 = 100_000;
const CHUNK_SIZE: usize = 1024;
const CHUNK_GAP: Duration = Duration::from_millis(10);

#[derive(Default)]
struct Counters {
    connections: AtomicU64,
    requests: AtomicU64,
}

/// A running echo upstream. Dropping it stops the server.
pub struct EchoUpstream {
    counters: Arc<Counters>,
    server: ServerHandle,
}

impl std::fmt::Debug for EchoUpstream {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("EchoUpstream")
            .field("url", &self.url())
            .finish_non_exhaustive()
    }
}

impl EchoUpstream {
    /// Starts an echo upstream on 127.0.0.1 and a free port.
    pub async fn start() -> std::io::Result<EchoUpstream> {
        Self::start_on(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).await
    }

    /// Starts an echo upstream on `address` (for `portico demo`'s fixed ports).
    pub async fn start_on(address: SocketAddr) -> std::io::Result<EchoUpstream> {
        let listener = TcpListener::bind(address).await?;
        let counters = Arc::new(Counters::default());
        let router = Router::new().fallback(echo).with_state(counters.clone());
        let connection_counters = counters.clone();
        let server = ServerHandle::spawn(listener, router, move |_| {
            connection_counters
                .connections
                .fetch_add(1, Ordering::Relaxed);
        })?;
        tracing::info!(address = %server.address(), "echo upstream listening");
        Ok(EchoUpstream { counters, server })
    }

    /// `http://127.0.0.1:PORT` (the bound address; 127.0.0.1 when bound to every interface).
    pub fn url(&self) -> String {
        let mut address = self.server.address();
        if address.ip().is_unspecified() {
            address.set_ip(Ipv4Addr::LOCALHOST.into());
        }
        format!("http://{address}")
    }

    /// TCP connections accepted so far.
    pub fn connections_accepted(&self) -> u64 {
        self.counters.connections.load(Ordering::Relaxed)
    }

    /// HTTP requests answered (or being answered) so far.
    pub fn requests(&self) -> u64 {
        self.counters.requests.load(Ordering::Relaxed)
    }
}

/// The HTML form of the echo, for the demo.
#[derive(Template)]
#[template(path = "devop_echo.html")]
struct EchoPage {
    signed_in_as: Option<String>,
    identity_headers: Vec<(String, String)>,
    /// The `amr` claim of `X-Portico-Identity` (how the user signed in), comma-joined.
    amr: Option<String>,
    method: String,
    path: String,
    query: String,
    headers: Vec<(String, String)>,
    body_bytes: u64,
}

/// A numeric query parameter.
fn query_number(query: Option<&str>, name: &str) -> Option<u64> {
    url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .find(|(key, _)| key == name)
        .and_then(|(_, value)| value.parse().ok())
}

/// Whether the first media range of `Accept` is text/html (a browser navigation).
fn prefers_html(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|value| value.to_str().ok())
        .and_then(|accept| accept.split(',').next())
        .map(|first| first.split(';').next().unwrap_or_default().trim())
        .is_some_and(|media| media.eq_ignore_ascii_case("text/html"))
}

/// The claims of the `X-Portico-Identity` JWT portico adds on routes with `identity_jwt`,
/// read without checking the signature: this app only shows them. (An app that acts on them
/// verifies the token with portico's `/.well-known/portico/jwks.json` first.)
fn identity_token_claims(headers: &HeaderMap) -> Option<Map<String, Value>> {
    use base64::Engine as _;
    let token = headers.get("x-portico-identity")?.to_str().ok()?;
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    match serde_json::from_slice(&bytes).ok()? {
        Value::Object(claims) => Some(claims),
        _ => None,
    }
}

/// The `amr` values (RFC 8176) of the identity token, comma-joined, when there are any.
fn authentication_methods(headers: &HeaderMap) -> Option<String> {
    let claims = identity_token_claims(headers)?;
    let methods: Vec<&str> = claims
        .get("amr")?
        .as_array()?
        .iter()
        .filter_map(Value::as_str)
        .collect();
    (!methods.is_empty()).then(|| methods.join(", "))
}

/// Request headers with repeated names joined by ", " (names are lower-case in `HeaderMap`).
fn joined_headers(headers: &HeaderMap) -> Vec<(String, String)> {
    let mut joined: Vec<(String, String)> = Vec::new();
    for name in headers.keys() {
        let values: Vec<String> = headers
            .get_all(name)
            .iter()
            .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned())
            .collect();
        joined.push((name.as_str().to_owned(), values.join(", ")));
    }
    joined
}

/// `N` chunks of 1 KiB with a short gap between them.
fn chunked_body(chunks: u64) -> Body {
    let stream = futures_util::stream::unfold(0u64, move |sent| async move {
        if sent >= chunks {
            return None;
        }
        if sent > 0 {
            tokio::time::sleep(CHUNK_GAP).await;
        }
        let letter = b'a' + u8::try_from(sent % 26).unwrap_or(0);
        Some((
            Ok::<Bytes, std::io::Error>(Bytes::from(vec![letter; CHUNK_SIZE])),
            sent + 1,
        ))
    });
    Body::from_stream(stream)
}

/// `/reset`: the head and 1 KiB of a promised 64 KiB, then the connection
/// drops (the body fails, so the server aborts the connection).
fn reset_midway() -> Response {
    let stream = futures_util::stream::unfold(0u8, |step| async move {
        match step {
            0 => Some((Ok(Bytes::from(vec![b'r'; CHUNK_SIZE])), 1)),
            1 => {
                tokio::time::sleep(CHUNK_GAP).await;
                Some((Err(std::io::Error::other("connection reset on purpose")), 2))
            }
            _ => None,
        }
    });
    (
        [
            (header::CONTENT_TYPE, "application/octet-stream"),
            (header::CONTENT_LENGTH, "65536"),
        ],
        Body::from_stream(stream),
    )
        .into_response()
}

async fn count_body(body: Body) -> u64 {
    let mut stream = body.into_data_stream();
    let mut total = 0u64;
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(bytes) => total += bytes.len() as u64,
            Err(error) => {
                tracing::debug!(%error, "echo upstream: request body ended early");
                break;
            }
        }
    }
    total
}

async fn echo(State(counters): State<Arc<Counters>>, request: Request) -> Response {
    counters.requests.fetch_add(1, Ordering::Relaxed);
    let (parts, body) = request.into_parts();
    let path = parts.uri.path().to_owned();
    let query = parts.uri.query().map(str::to_owned);
    if parts.method == Method::POST && path == "/echo-body" {
        let content_type = parts
            .headers
            .get(header::CONTENT_TYPE)
            .cloned()
            .unwrap_or(header::HeaderValue::from_static("application/octet-stream"));
        return ([(header::CONTENT_TYPE, content_type)], body).into_response();
    }
    if path == "/reset" {
        return reset_midway();
    }
    if path == "/stream" {
        let chunks = query_number(query.as_deref(), "chunks")
            .unwrap_or(1)
            .min(MAX_CHUNKS);
        return (
            [(header::CONTENT_TYPE, "application/octet-stream")],
            chunked_body(chunks),
        )
            .into_response();
    }
    let mut status = StatusCode::OK;
    if let Some(code) = path.strip_prefix("/status/") {
        match code
            .parse::<u16>()
            .ok()
            .and_then(|code| StatusCode::from_u16(code).ok())
        {
            Some(code) if code.as_u16() >= 200 => status = code,
            _ => return (StatusCode::BAD_REQUEST, "status must be 200..=999").into_response(),
        }
    }
    if path == "/slow" {
        let milliseconds = query_number(query.as_deref(), "ms")
            .unwrap_or(0)
            .min(MAX_SLOW_MILLISECONDS);
        tokio::time::sleep(Duration::from_millis(milliseconds)).await;
    }
    let body_bytes = count_body(body).await;
    let headers = joined_headers(&parts.headers);
    if prefers_html(&parts.headers) {
        let identity_headers: Vec<(String, String)> = headers
            .iter()
            .filter(|(name, _)| name.starts_with("x-forwarded-"))
            .cloned()
            .collect();
        let identity = |name: &str| {
            identity_headers
                .iter()
                .find(|(header, _)| header == name)
                .map(|(_, value)| value.clone())
        };
        let who =
            identity("x-forwarded-preferred-username").or_else(|| identity("x-forwarded-user"));
        let signed_in_as = who.map(|who| match identity("x-forwarded-email") {
            Some(email) => format!("{who} ({email})"),
            None => who,
        });
        let page = EchoPage {
            signed_in_as,
            identity_headers,
            amr: authentication_methods(&parts.headers),
            method: parts.method.to_string(),
            path,
            query: query.unwrap_or_default(),
            headers,
            body_bytes,
        };
        return render_app(status, &page);
    }
    let header_object: Map<String, Value> = headers
        .into_iter()
        .map(|(name, value)| (name, Value::String(value)))
        .collect();
    let echoed = json!({
        "method": parts.method.as_str(),
        "path": path,
        "query": query,
        "headers": header_object,
        "body_bytes": body_bytes,
    });
    (status, Json(echoed)).into_response()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly
mod tests {
    use super::*;

    #[test]
    fn html_is_chosen_only_when_it_comes_first() {
        let mut headers = HeaderMap::new();
        assert!(!prefers_html(&headers));
        headers.insert(
            header::ACCEPT,
            "text/html,application/xhtml+xml;q=0.9".parse().unwrap(),
        );
        assert!(prefers_html(&headers));
        headers.insert(
            header::ACCEPT,
            "application/json, text/html".parse().unwrap(),
        );
        assert!(!prefers_html(&headers));
    }

    #[test]
    fn the_identity_token_s_amr_is_read_for_display() {
        use base64::Engine as _;
        let encode = |json: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json);
        let mut headers = HeaderMap::new();
        assert_eq!(authentication_methods(&headers), None);
        let token = format!(
            "{}.{}.sig",
            encode(r#"{"alg":"ES256"}"#),
            encode(r#"{"sub":"carol","amr":["webauthn","user"]}"#)
        );
        headers.insert("x-portico-identity", token.parse().unwrap());
        assert_eq!(
            authentication_methods(&headers).as_deref(),
            Some("webauthn, user")
        );
        let without = format!("{}.{}.sig", encode("{}"), encode(r#"{"amr":[]}"#));
        headers.insert("x-portico-identity", without.parse().unwrap());
        assert_eq!(authentication_methods(&headers), None);
        headers.insert("x-portico-identity", "not-a-jwt".parse().unwrap());
        assert_eq!(authentication_methods(&headers), None);
    }

    #[test]
    fn repeated_headers_are_joined() {
        let mut headers = HeaderMap::new();
        headers.append("x-thing", "one".parse().unwrap());
        headers.append("x-thing", "two".parse().unwrap());
        assert_eq!(
            joined_headers(&headers),
            vec![("x-thing".to_owned(), "one, two".to_owned())]
        );
    }
}
