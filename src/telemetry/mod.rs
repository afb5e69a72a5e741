//! OpenTelemetry traces (issue 21): a span per request, with children for the
//! session load, the token exchange, a refresh, a JWKS fetch and the upstream
//! call, exported over OTLP/HTTP (protobuf) to `[telemetry] otlp_endpoint`.
//!
//! Why it is built this way:
//! - **Off means off.** With no endpoint there is no tracer provider, no
//!   exporter thread, and a request costs one `Option` check in the front;
//!   every child-span hook costs one thread-local look-up that finds nothing
//!   (no allocation). `traceparent`/`tracestate` from clients then pass
//!   upstream untouched, as any other header: portico is not part of the
//!   trace, so it neither vouches for nor rewrites it.
//! - **Trust like `X-Request-Id`.** When on, a `traceparent` is continued
//!   only when it comes from `[server] trusted_proxies` (W3C Trace Context
//!   §3.2 lets a vendor restart a trace it does not trust); anyone else's
//!   request starts a new trace, sampled by `sample_ratio`. A continued
//!   trace follows the caller's sampled flag (a parent-based sampler).
//! - **The upstream sees portico's span.** The upstream request carries a
//!   `traceparent` whose parent id is portico's upstream-call span (and the
//!   caller's `tracestate`, if it was trusted), replacing the client's.
//! - **The context rides the request's future**, not the `tracing` spans:
//!   the front attaches an OpenTelemetry `Context` (span, tracer, request
//!   id) to the request's future, and hooks deep in `oidc` and `session` find
//!   it with [`traced`]. Work spawned off the request (the periodic JWKS
//!   refresh) has no context and makes no spans.
//! - **What a span carries**: the request id (`portico.request_id`), the
//!   method, the path without its query (a callback's query holds the
//!   authorization code), status codes, the upstream's origin. Never a
//!   header value, cookie or token.
//!
//! Export runs on the SDK's batch thread with a blocking reqwest client
//! (reqwest 0.12, the one openidconnect uses), so a slow collector never
//! holds up a request; spans beyond the batch queue are dropped.

mod propagation;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::Either;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use opentelemetry::context::FutureExt as _;
use opentelemetry::trace::{SpanKind, Status, TraceContextExt, Tracer as _, TracerProvider as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::{Protocol, WithExportConfig as _};
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracer, SdkTracerProvider,
};
use opentelemetry_sdk::Resource;

use crate::config::TelemetryConfig;

pub use propagation::{TRACEPARENT, TRACESTATE};

/// The attribute that carries portico's request id on every span.
pub const REQUEST_ID_ATTRIBUTE: &str = "portico.request_id";

/// How long one export to the collector may take.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// How often queued spans are sent (the SDK's default is 5 s).
const EXPORT_INTERVAL: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("OTLP exporter for {endpoint}: {reason}")]
    Exporter { endpoint: String, reason: String },
}

/// The tracer, or nothing when tracing is off. Built once, in the state.
pub struct Telemetry {
    on: Option<On>,
}

struct On {
    provider: SdkTracerProvider,
    tracer: SdkTracer,
}

/// What the request's context carries besides its span: what child spans
/// need to start themselves.
#[derive(Clone)]
struct Traced {
    tracer: SdkTracer,
    request_id: Arc<str>,
}

impl Telemetry {
    /// No tracing: nothing is started.
    pub fn off() -> Self {
        Telemetry { on: None }
    }

    /// A tracer exporting to `config.otlp_endpoint`, or [`Telemetry::off`]
    /// when there is none.
    pub fn start(config: &TelemetryConfig) -> Result<Self, TelemetryError> {
        let Some(endpoint) = &config.otlp_endpoint else {
            return Ok(Telemetry::off());
        };
        let failed = |reason: String| TelemetryError::Exporter {
            endpoint: endpoint.origin().ascii_serialization(),
            reason,
        };
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(endpoint.as_str())
            .with_timeout(EXPORT_TIMEOUT)
            .build()
            .map_err(|error| failed(error.to_string()))?;
        let processor = BatchSpanProcessor::builder(exporter)
            .with_batch_config(
                BatchConfigBuilder::default()
                    .with_scheduled_delay(EXPORT_INTERVAL)
                    .build(),
            )
            .build();
        let provider = SdkTracerProvider::builder()
            .with_span_processor(processor)
            .with_sampler(sampler(config.sample_ratio))
            .with_resource(
                Resource::builder_empty()
                    .with_service_name("portico")
                    .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
                    .build(),
            )
            .build();
        let tracer = provider.tracer("portico");
        Ok(Telemetry {
            on: Some(On { provider, tracer }),
        })
    }

    pub fn is_on(&self) -> bool {
        self.on.is_some()
    }

    /// Starts the request's span: a child of the caller's `traceparent` when
    /// `trusted` says the peer may set it, a new trace otherwise. `None`
    /// when tracing is off (the only cost then).
    pub fn begin_request(
        &self,
        headers: &HeaderMap,
        trusted: impl FnOnce() -> bool,
        request_id: &Arc<str>,
        method: &Method,
        path: &str,
    ) -> Option<Context> {
        let on = self.on.as_ref()?;
        let parent = if trusted() {
            propagation::extract(headers)
        } else {
            Context::new()
        };
        let span = on
            .tracer
            .span_builder(method_name(method))
            .with_kind(SpanKind::Server)
            .with_attributes([
                KeyValue::new(REQUEST_ID_ATTRIBUTE, request_id.clone()),
                KeyValue::new("http.request.method", method_name(method)),
                KeyValue::new("url.path", path.to_owned()),
            ])
            .start_with_context(&on.tracer, &parent);
        Some(parent.with_span(span).with_value(Traced {
            tracer: on.tracer.clone(),
            request_id: request_id.clone(),
        }))
    }

    /// Sends every finished span now (tests; shutdown).
    pub fn flush(&self) {
        if let Some(on) = &self.on {
            if let Err(error) = on.provider.force_flush() {
                tracing::warn!(%error, "could not flush trace spans");
            }
        }
    }

    /// Flushes and stops the exporter (at shutdown).
    pub fn shutdown(&self) {
        if let Some(on) = &self.on {
            if let Err(error) = on.provider.shutdown() {
                tracing::warn!(%error, "could not shut the trace exporter down");
            }
        }
    }
}

/// New traces are kept at `ratio`; continued ones follow their parent.
fn sampler(ratio: f64) -> Sampler {
    let root = if ratio >= 1.0 {
        Sampler::AlwaysOn
    } else if ratio <= 0.0 {
        Sampler::AlwaysOff
    } else {
        Sampler::TraceIdRatioBased(ratio)
    };
    Sampler::ParentBased(Box::new(root))
}

/// The span name and `http.request.method` of a method: OpenTelemetry's HTTP
/// conventions name server spans `{method}` when no route template is known,
/// and unknown methods `_OTHER`.
fn method_name(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "_OTHER",
    }
}

/// Runs `work` inside the request's context (`None`: as it is).
pub fn within<F: Future>(request: Option<&Context>, work: F) -> impl Future<Output = F::Output> {
    match request {
        None => Either::Left(work),
        Some(cx) => Either::Right(work.with_context(cx.clone())),
    }
}

/// Ends the request's span with the answer's status.
pub fn end_request(request: Option<Context>, status: StatusCode) {
    if let Some(cx) = request {
        let span = cx.span();
        span.set_attribute(KeyValue::new(
            "http.response.status_code",
            i64::from(status.as_u16()),
        ));
        if status.is_server_error() {
            span.set_status(Status::error(""));
        }
        span.end();
    }
}

/// A child span of the current request's, or `None` outside a traced request.
fn child(name: &'static str, kind: SpanKind) -> Option<Context> {
    Context::map_current(|current| {
        let traced = current.get::<Traced>()?;
        let span = traced
            .tracer
            .span_builder(name)
            .with_kind(kind)
            .with_attributes([KeyValue::new(
                REQUEST_ID_ATTRIBUTE,
                traced.request_id.clone(),
            )])
            .start_with_context(&traced.tracer, current);
        Some(current.with_span(span))
    })
}

/// Runs `work` in a child span named `name` of the current request's span,
/// marked failed when `work` returns `Err`. Outside a traced request: just
/// `work`.
pub async fn traced<T, E, F>(name: &'static str, work: F) -> Result<T, E>
where
    F: Future<Output = Result<T, E>>,
{
    let Some(cx) = child(name, SpanKind::Internal) else {
        return work.await;
    };
    let result = work.with_context(cx.clone()).await;
    let span = cx.span();
    if result.is_err() {
        span.set_status(Status::error(""));
    }
    span.end();
    result
}

/// The span of one upstream call: it is the parent the upstream sees.
pub struct UpstreamCall {
    cx: Context,
}

impl UpstreamCall {
    /// Starts the span when the current request is traced.
    pub fn begin(origin: &str) -> Option<UpstreamCall> {
        let cx = child("upstream", SpanKind::Client)?;
        cx.span()
            .set_attribute(KeyValue::new("server.address", origin.to_owned()));
        Some(UpstreamCall { cx })
    }

    /// `traceparent` (and `tracestate`, `None` to send none) naming this span
    /// as the upstream's parent.
    pub fn headers(&self) -> [(HeaderName, Option<HeaderValue>); 2] {
        propagation::inject(&self.cx)
    }

    /// Ends the span: the upstream's status, or a failure.
    pub fn end(self, status: Option<StatusCode>) {
        let span = self.cx.span();
        match status {
            Some(status) => {
                span.set_attribute(KeyValue::new(
                    "http.response.status_code",
                    i64::from(status.as_u16()),
                ));
                if status.is_server_error() {
                    span.set_status(Status::error(""));
                }
            }
            None => span.set_status(Status::error("no answer from the upstream")),
        }
        span.end();
    }
}

#[cfg(test)]
#[allow(clippy::expect_used, clippy::panic, clippy::unwrap_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn no_span_is_made_outside_a_traced_request() {
        assert!(child("session.load", SpanKind::Internal).is_none());
        assert!(UpstreamCall::begin("http://127.0.0.1:1").is_none());
        let answer: Result<u8, ()> = traced("session.load", async { Ok(7) }).await;
        assert_eq!(answer, Ok(7));
    }

    #[test]
    fn off_telemetry_starts_no_request_span() {
        let telemetry = Telemetry::start(&TelemetryConfig::default()).unwrap();
        assert!(!telemetry.is_on());
        let mut headers = HeaderMap::new();
        headers.insert(
            TRACEPARENT,
            HeaderValue::from_static("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
        );
        let asked = std::cell::Cell::new(false);
        let begun = telemetry.begin_request(
            &headers,
            || {
                asked.set(true);
                true
            },
            &Arc::from("id"),
            &Method::GET,
            "/",
        );
        assert!(begun.is_none());
        assert!(!asked.get(), "the trust check is not even made");
    }

    #[test]
    fn sampler_keeps_all_none_or_a_ratio_of_new_traces() {
        let describe = |ratio| format!("{:?}", sampler(ratio));
        assert!(describe(1.0).contains("AlwaysOn"));
        assert!(describe(0.0).contains("AlwaysOff"));
        assert!(describe(0.1).contains("TraceIdRatioBased(0.1)"));
        assert!(describe(0.1).starts_with("ParentBased"));
    }

    #[test]
    fn unknown_methods_are_named_other() {
        assert_eq!(method_name(&Method::GET), "GET");
        assert_eq!(
            method_name(&Method::from_bytes(b"PURGE").unwrap()),
            "_OTHER"
        );
    }
}
