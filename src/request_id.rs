//! A request id on every request: taken from `X-Request-Id` when a trusted
//! proxy sent one, generated otherwise; passed upstream, returned to the
//! client, shown on error pages and carried by every log line of the request.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use http::HeaderValue;
use rand::RngCore;
use tracing::Instrument;

use crate::AppState;

pub const HEADER: &str = "x-request-id";

/// The request's id, in its extensions.
#[derive(Debug, Clone)]
pub struct RequestId(pub Arc<str>);

impl RequestId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The id of `request`, or "-" if the middleware did not run.
pub fn of<B>(request: &http::Request<B>) -> RequestId {
    request
        .extensions()
        .get::<RequestId>()
        .cloned()
        .unwrap_or_else(|| RequestId(Arc::from("-")))
}

pub fn peer_of<B>(request: &http::Request<B>) -> Option<SocketAddr> {
    request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|info| info.0)
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn generate() -> String {
    let mut bytes = [0u8; 12];
    rand::thread_rng().fill_bytes(&mut bytes);
    let mut id = String::with_capacity(2 * bytes.len());
    for byte in bytes {
        id.push(char::from(HEX[usize::from(byte >> 4)]));
        id.push(char::from(HEX[usize::from(byte & 0x0f)]));
    }
    id
}

/// A client-supplied id is accepted only from a trusted proxy, and only if
/// it is short and plain (it ends up in logs and pages).
fn acceptable(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= 128
        && value
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || b"-_.:".contains(&byte))
}

pub async fn assign(
    State(app): State<Arc<AppState>>,
    mut request: Request,
    next: Next,
) -> Response {
    let peer = peer_of(&request).map(|address| address.ip());
    let incoming = request
        .headers()
        .get(HEADER)
        .and_then(|value| value.to_str().ok())
        .filter(|value| acceptable(value))
        .map(str::to_string);
    let id = match incoming {
        Some(id) if app.is_trusted_proxy(peer) => id,
        _ => generate(),
    };
    let request_id = RequestId(Arc::from(id.as_str()));
    request.extensions_mut().insert(request_id);
    // At ERROR level so the span (and its request id) stays on every line
    // whatever level RUST_LOG lets through: with `warn`, an info span would
    // be filtered out and warnings would lose the request id.
    let span = tracing::error_span!("request", request_id = %id);
    let mut response = next.run(request).instrument(span).await;
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(HEADER, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_are_unique_hex() {
        let first = generate();
        assert_eq!(first.len(), 24);
        assert!(first.bytes().all(|byte| byte.is_ascii_hexdigit()));
        assert_ne!(first, generate());
    }

    #[test]
    fn only_plain_short_ids_are_accepted() {
        assert!(acceptable("abc-123_x.y:z"));
        assert!(!acceptable(""));
        assert!(!acceptable("has space"));
        assert!(!acceptable("<script>"));
        assert!(!acceptable(&"a".repeat(129)));
    }
}
