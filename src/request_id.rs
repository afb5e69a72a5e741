//! A request id on every request: taken from `X-Request-Id` when a trusted
//! proxy sent one, generated otherwise; passed upstream, returned to the
//! client, shown on error pages and carried by every log line of the request.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::ConnectInfo;
use http::{HeaderName, HeaderValue};
use rand::RngCore;

use crate::AppState;

pub const HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// The request's id, in its extensions.
#[derive(Debug, Clone)]
pub struct RequestId(pub Arc<str>);

impl RequestId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What the front learnt about a request before handing it on: its id and
/// the note its handler fills in for the access log. The router's handlers
/// find both in the request's extensions; the proxy is handed them directly
/// (extensions cost a boxed insert each, on every proxied request).
#[derive(Clone)]
pub struct RequestMeta {
    pub id: RequestId,
    pub note: crate::ops::AccessNote,
}

impl RequestMeta {
    /// From `request`'s extensions (a request the router served).
    pub fn of<B>(request: &http::Request<B>) -> Self {
        RequestMeta {
            id: of(request),
            note: request
                .extensions()
                .get::<crate::ops::AccessNote>()
                .cloned()
                .unwrap_or_default(),
        }
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

/// A new id: 24 hex digits (96 bits) from the calling thread's generator.
fn generate() -> Arc<str> {
    let (high, low) = NEXT.with(|state| {
        let high = splitmix64(state);
        (high, splitmix64(state))
    });
    let mut id = [0u8; 24];
    for (index, digit) in id.iter_mut().enumerate() {
        let bits = if index < 16 {
            high >> (60 - 4 * index)
        } else {
            low >> (60 - 4 * (index - 16))
        };
        *digit = HEX[(bits & 0x0f) as usize];
    }
    // Hex digits are ASCII.
    Arc::from(std::str::from_utf8(&id).unwrap_or("-"))
}

thread_local! {
    /// Each thread's id generator, seeded from the operating system's
    /// randomness when the thread makes its first id.
    static NEXT: std::cell::Cell<u64> = std::cell::Cell::new(rand::thread_rng().next_u64());
}

/// SplitMix64 (Steele, Lea and Flood, 2014): a bijection of the state it
/// steps, so a thread's ids do not repeat before 2^64 of them, and ids look
/// random, as ids from rand's ChaCha did. They are names, not secrets: the
/// generator is chosen for its cost (a few instructions; thread_rng() took
/// about 460 a request under callgrind).
fn splitmix64(state: &std::cell::Cell<u64>) -> u64 {
    let next = state.get().wrapping_add(0x9e37_79b9_7f4a_7c15);
    state.set(next);
    let mut mixed = next;
    mixed = (mixed ^ (mixed >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    mixed = (mixed ^ (mixed >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    mixed ^ (mixed >> 31)
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

/// The id for `request`: the incoming `X-Request-Id` from a trusted proxy
/// when it is acceptable, a new one otherwise.
pub fn choose(
    app: &AppState,
    headers: &http::HeaderMap,
    peer: Option<std::net::IpAddr>,
) -> RequestId {
    let incoming = headers
        .get(&HEADER)
        .and_then(|value| value.to_str().ok())
        .filter(|value| acceptable(value));
    match incoming {
        Some(id) if app.is_trusted_proxy(peer) => RequestId(Arc::from(id)),
        _ => RequestId(generate()),
    }
}

/// The id a trusted proxy named in another way than `X-Request-Id` (e.g.
/// Envoy's check request), when acceptable; a new one otherwise.
pub fn from_trusted(value: &str) -> RequestId {
    if acceptable(value) {
        RequestId(Arc::from(value))
    } else {
        RequestId(generate())
    }
}

/// Tells the client the request's id.
pub fn answer_with(response: &mut axum::response::Response, id: &RequestId) {
    if let Ok(value) = HeaderValue::from_str(id.as_str()) {
        response.headers_mut().insert(HEADER, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_named_by_a_trusted_proxy_is_kept_only_when_plain() {
        assert_eq!(from_trusted("envoy-1.a:b_c").as_str(), "envoy-1.a:b_c");
        for bad in ["", "a b", "a\nb", &"x".repeat(129)] {
            let chosen = from_trusted(bad);
            assert_ne!(chosen.as_str(), bad);
            assert_eq!(chosen.as_str().len(), 24);
        }
    }

    #[test]
    fn generated_ids_are_unique_hex() {
        let first = generate();
        assert_eq!(first.len(), 24);
        assert!(first.bytes().all(|byte| byte.is_ascii_hexdigit()));
        assert_ne!(first, generate());
        let many: std::collections::HashSet<Arc<str>> = (0..10_000).map(|_| generate()).collect();
        assert_eq!(many.len(), 10_000);
        let elsewhere = std::thread::spawn(generate).join().unwrap();
        assert!(!many.contains(&elsewhere));
    }

    #[test]
    fn splitmix64_gives_its_published_sequence() {
        // The first outputs for seed 0 (Vigna's reference implementation).
        let state = std::cell::Cell::new(0);
        assert_eq!(splitmix64(&state), 0xe220_a839_7b1d_cdaf);
        assert_eq!(splitmix64(&state), 0x6e78_9e6a_a1b9_65f4);
        assert_eq!(splitmix64(&state), 0x06c4_5d18_8009_454f);
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
