//! W3C Trace Context headers (`traceparent`, `tracestate`) in and out, read
//! and written by the SDK's `TraceContextPropagator` over `http` headers.

use http::{HeaderMap, HeaderName, HeaderValue};
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator as _};
use opentelemetry::Context;
use opentelemetry_sdk::propagation::TraceContextPropagator;

pub const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
pub const TRACESTATE: HeaderName = HeaderName::from_static("tracestate");

struct Incoming<'a>(&'a HeaderMap);

impl Extractor for Incoming<'_> {
    /// The first value; a request with two `traceparent` headers is one the
    /// propagator would reject anyway (W3C Trace Context §3.2: then restart).
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(HeaderName::as_str).collect()
    }
}

/// The caller's trace context; an empty one when the headers carry none or
/// an invalid one (the propagator validates version, ids and flags).
pub fn extract(headers: &HeaderMap) -> Context {
    if !headers.contains_key(TRACEPARENT) {
        return Context::new();
    }
    TraceContextPropagator::new().extract(&Incoming(headers))
}

#[derive(Default)]
struct Outgoing {
    traceparent: Option<HeaderValue>,
    tracestate: Option<HeaderValue>,
}

impl Injector for Outgoing {
    fn set(&mut self, key: &str, value: String) {
        let value = HeaderValue::try_from(value).ok();
        match key {
            "traceparent" => self.traceparent = value,
            "tracestate" => self.tracestate = value.filter(|value| !value.is_empty()),
            _ => {}
        }
    }
}

/// The headers that make `cx`'s span the parent of the next hop. A header
/// with `None` is sent without a value (removed).
pub fn inject(cx: &Context) -> [(HeaderName, Option<HeaderValue>); 2] {
    let mut outgoing = Outgoing::default();
    TraceContextPropagator::new().inject_context(cx, &mut outgoing);
    [
        (TRACEPARENT, outgoing.traceparent),
        (TRACESTATE, outgoing.tracestate),
    ]
}

#[cfg(test)]
#[allow(clippy::expect_used, clippy::panic, clippy::unwrap_used)]
mod tests {
    use opentelemetry::trace::TraceContextExt as _;

    use super::*;

    // The example of W3C Trace Context §3.2.2.
    const PARENT: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn a_valid_traceparent_and_its_tracestate_are_read() {
        let cx = extract(&headers(&[
            ("traceparent", PARENT),
            ("tracestate", "congo=t61rcWkgMzE"),
        ]));
        let span = cx.span();
        let context = span.span_context();
        assert!(context.is_remote());
        assert_eq!(
            context.trace_id().to_string(),
            "0af7651916cd43dd8448eb211c80319c"
        );
        assert_eq!(context.span_id().to_string(), "b7ad6b7169203331");
        assert!(context.is_sampled());
        assert_eq!(context.trace_state().header(), "congo=t61rcWkgMzE");
    }

    #[test]
    fn malformed_traceparents_give_no_parent() {
        for bad in [
            "00-00000000000000000000000000000000-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
            "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331",
            "garbage",
        ] {
            let cx = extract(&headers(&[("traceparent", bad)]));
            assert!(!cx.span().span_context().is_valid(), "{bad}");
        }
        assert!(!extract(&HeaderMap::new()).has_active_span());
    }

    #[test]
    fn the_span_in_the_context_becomes_the_next_hops_parent() {
        let cx = extract(&headers(&[
            ("traceparent", PARENT),
            ("tracestate", "congo=t61rcWkgMzE"),
        ]));
        let [(name, traceparent), (state_name, tracestate)] = inject(&cx);
        assert_eq!(name, TRACEPARENT);
        assert_eq!(traceparent.unwrap(), PARENT);
        assert_eq!(state_name, TRACESTATE);
        assert_eq!(tracestate.unwrap(), "congo=t61rcWkgMzE");

        let [(_, traceparent), (_, tracestate)] =
            inject(&extract(&headers(&[("traceparent", PARENT)])));
        assert!(traceparent.is_some());
        assert!(tracestate.is_none(), "an empty tracestate is not sent");
    }
}
