//! Prometheus metrics: one registry per gateway, served at `/metrics`.
//!
//! Each `build()` gets its own registry (no process-global recorder), so two
//! gateways in one process — the integration tests run dozens — never mix
//! their counts. Every label comes from a bounded set: a configured route
//! prefix or one of portico's own endpoint paths, an HTTP method from a fixed
//! list, a status class, an upstream origin from the config, or a reason or
//! outcome name written in the code. Never a raw path, a user or a token.
//!
//! The text is OpenMetrics (`application/openmetrics-text`), which
//! Prometheus scrapes natively; counters carry the `_total` suffix.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

/// The `Content-Type` of [`Metrics::render`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Seconds; from 1 ms to 30 s, the span between a cached answer and a timeout.
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
/// Seconds; Redis answers in well under a millisecond until it does not.
const REDIS_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS.iter().copied())
}

fn redis_histogram() -> Histogram {
    Histogram::new(REDIS_BUCKETS.iter().copied())
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: String,
    method: &'static str,
    status_class: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteMethodLabels {
    route: String,
    method: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UpstreamLabels {
    upstream: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UpstreamErrorLabels {
    upstream: String,
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UpstreamOverflowLabels {
    upstream: String,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabels {
    operation: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct JwksLabels {
    trigger: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LimitLabels {
    limit: &'static str,
}

struct Inner {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    request_duration: Family<RouteMethodLabels, Histogram, fn() -> Histogram>,
    upstream_duration: Family<UpstreamLabels, Histogram, fn() -> Histogram>,
    upstream_errors: Family<UpstreamErrorLabels, Counter>,
    upstream_active: Gauge,
    upstream_overflow: Family<UpstreamOverflowLabels, Counter>,
    upstream_pending: Family<UpstreamLabels, Gauge>,
    ready: Gauge,
    logins_started: Counter,
    logins_succeeded: Counter,
    logins_failed: Family<ReasonLabels, Counter>,
    refreshes: Family<OutcomeLabels, Counter>,
    backchannel_logouts: Family<OutcomeLabels, Counter>,
    bearer_validations: Family<OutcomeLabels, Counter>,
    redis_duration: Family<OperationLabels, Histogram, fn() -> Histogram>,
    redis_errors: Family<OperationLabels, Counter>,
    jwks_fetches: Family<JwksLabels, Counter>,
    limit_rejections: Family<LimitLabels, Counter>,
    config_reloads: Family<OutcomeLabels, Counter>,
    session_cache_serving: Gauge,
    session_cache_channel_losses: Family<ReasonLabels, Counter>,
    client_connections: Family<StateLabels, Gauge>,
    /// Tells this registry's entries in the per-thread handle cache apart
    /// from another's (tests build many).
    id: u64,
}

/// Handles to the per-request series most recently used on this thread.
/// prometheus-client's families hash the labels and take a lock on every
/// lookup; a request's series are found here by comparing a few short
/// strings instead. A handle shares its series with the family, so what it
/// counts is what the registry renders.
struct HotSeries {
    registry: u64,
    /// The route, or for upstream series the upstream's origin.
    label: Box<str>,
    method: &'static str,
    status_class: &'static str,
    counter: Option<Counter>,
    histogram: Histogram,
}

/// At most this many series are kept per thread (routes × methods × status
/// classes in use at once; the oldest go first).
const HOT_SERIES: usize = 32;

thread_local! {
    static HOT: RefCell<Vec<HotSeries>> = const { RefCell::new(Vec::new()) };
}

static REGISTRY_IDS: AtomicU64 = AtomicU64::new(0);

/// Runs `hit` on the cached handles for the key, or `miss` to make them
/// (and caches what it made).
fn with_hot_series(
    key: (u64, &str, &'static str, &'static str),
    hit: impl FnOnce(&HotSeries),
    miss: impl FnOnce() -> HotSeries,
) {
    let (registry, label, method, status_class) = key;
    HOT.with(|hot| {
        let mut hot = hot.borrow_mut();
        let found = hot.iter().position(|series| {
            series.registry == registry
                && series.method == method
                && series.status_class == status_class
                && &*series.label == label
        });
        match found {
            Some(index) => hit(&hot[index]),
            None => {
                let series = miss();
                hit(&series);
                if hot.len() >= HOT_SERIES {
                    hot.remove(0);
                }
                hot.push(series);
            }
        }
    });
}

/// The gateway's metrics. Cheap to clone (one `Arc`); every part of portico
/// that counts something holds a clone.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("Metrics { .. }")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// An HTTP method as a label: the standard ones by name, anything else "other".
pub fn method_label(method: &http::Method) -> &'static str {
    match method.as_str() {
        "GET" => "GET",
        "HEAD" => "HEAD",
        "POST" => "POST",
        "PUT" => "PUT",
        "PATCH" => "PATCH",
        "DELETE" => "DELETE",
        "OPTIONS" => "OPTIONS",
        "CONNECT" => "CONNECT",
        "TRACE" => "TRACE",
        _ => "other",
    }
}

/// "1xx" … "5xx".
pub fn status_class(status: http::StatusCode) -> &'static str {
    match status.as_u16() {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("portico");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests answered, by route prefix, method and status class",
            requests.clone(),
        );
        let request_duration =
            Family::<RouteMethodLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                latency_histogram,
            );
        registry.register(
            "http_request_duration_seconds",
            "Time from the request's arrival until its response head was ready",
            request_duration.clone(),
        );
        let upstream_duration =
            Family::<UpstreamLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                latency_histogram,
            );
        registry.register(
            "upstream_duration_seconds",
            "Time an upstream took to send its response head",
            upstream_duration.clone(),
        );
        let upstream_errors = Family::<UpstreamErrorLabels, Counter>::default();
        registry.register(
            "upstream_errors",
            "Upstream requests that failed: timeout, unreachable (refused or reset before the head), request (could not be sent), invalid (a malformed answer), body (broken mid-response), read_timeout (a response body stalled past upstream_read_timeout)",
            upstream_errors.clone(),
        );
        let upstream_active = Gauge::default();
        registry.register(
            "upstream_active_requests",
            "Upstream requests in flight, until their response body has been streamed",
            upstream_active.clone(),
        );
        let upstream_overflow = Family::<UpstreamOverflowLabels, Counter>::default();
        registry.register(
            "upstream_overflow",
            "Requests refused with 503 at an upstream's connection limit: pending_full (max_pending requests already waited), pending_timeout (no connection came free within pending_timeout)",
            upstream_overflow.clone(),
        );
        let upstream_pending = Family::<UpstreamLabels, Gauge>::default();
        registry.register(
            "upstream_pending_requests",
            "Requests waiting for a connection at an upstream's connection limit (max_connections)",
            upstream_pending.clone(),
        );
        let ready = Gauge::default();
        registry.register(
            "ready",
            "1 when /readyz would answer 200 (provider metadata loaded, session store answering, not shutting down), else 0; judged at each scrape",
            ready.clone(),
        );
        let logins_started = Counter::default();
        registry.register(
            "logins_started",
            "Sign-ins sent to the provider",
            logins_started.clone(),
        );
        let logins_succeeded = Counter::default();
        registry.register(
            "logins_succeeded",
            "Sign-ins that created a session",
            logins_succeeded.clone(),
        );
        let logins_failed = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "logins_failed",
            "Callbacks that created no session, by reason",
            logins_failed.clone(),
        );
        let refreshes = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "session_refreshes",
            "Token refreshes, by outcome",
            refreshes.clone(),
        );
        let backchannel_logouts = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "backchannel_logouts",
            "Back-channel logout requests, by outcome",
            backchannel_logouts.clone(),
        );
        let bearer_validations = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "bearer_validations",
            "Bearer token validations, by outcome",
            bearer_validations.clone(),
        );
        let redis_duration =
            Family::<OperationLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                redis_histogram,
            );
        registry.register(
            "redis_command_duration_seconds",
            "Session store calls (Redis commands, or the memory store), by operation",
            redis_duration.clone(),
        );
        let redis_errors = Family::<OperationLabels, Counter>::default();
        registry.register(
            "redis_command_errors",
            "Session store calls that failed or timed out, by operation",
            redis_errors.clone(),
        );
        let jwks_fetches = Family::<JwksLabels, Counter>::default();
        registry.register(
            "jwks_fetches",
            "Fetches of the provider's metadata and keys, by trigger and outcome",
            jwks_fetches.clone(),
        );
        let limit_rejections = Family::<LimitLabels, Counter>::default();
        registry.register(
            "request_limit_rejections",
            "Requests refused for exceeding a size limit or for ambiguous framing",
            limit_rejections.clone(),
        );
        let config_reloads = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "config_reloads",
            "Route table reloads (SIGHUP), by outcome",
            config_reloads.clone(),
        );
        let session_cache_serving = Gauge::default();
        registry.register(
            "session_cache_serving",
            "1 while this replica serves sessions from its local cache (invalidation \
             channel confirmed within the lease), 0 while every request reads Redis",
            session_cache_serving.clone(),
        );
        let session_cache_channel_losses = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "session_cache_channel_losses",
            "Times the local session cache stopped serving and was emptied because its \
             invalidation channel was lost, by reason",
            session_cache_channel_losses.clone(),
        );
        let client_connections = Family::<StateLabels, Gauge>::default();
        // Both shown from the start, at 0 until a connection comes.
        for state in ["active", "parked"] {
            drop(client_connections.get_or_create(&StateLabels { state }));
        }
        registry.register(
            "client_connections",
            "Open plain-HTTP client connections: active (HTTP served on them now or \
             within the last second or two) or parked (idle keep-alive, holding no \
             HTTP buffers until their next request)",
            client_connections.clone(),
        );
        registry.register(
            "build",
            "portico's version",
            Info::new(vec![("version", env!("CARGO_PKG_VERSION"))]),
        );
        Metrics {
            inner: Arc::new(Inner {
                registry,
                requests,
                request_duration,
                upstream_duration,
                upstream_errors,
                upstream_active,
                upstream_overflow,
                upstream_pending,
                ready,
                logins_started,
                logins_succeeded,
                logins_failed,
                refreshes,
                backchannel_logouts,
                bearer_validations,
                redis_duration,
                redis_errors,
                jwks_fetches,
                limit_rejections,
                config_reloads,
                session_cache_serving,
                session_cache_channel_losses,
                client_connections,
                id: REGISTRY_IDS.fetch_add(1, Ordering::Relaxed),
            }),
        }
    }

    /// The registry as OpenMetrics text.
    pub fn render(&self) -> String {
        let mut text = String::with_capacity(16 * 1024);
        if let Err(error) =
            prometheus_client::encoding::text::encode(&mut text, &self.inner.registry)
        {
            tracing::warn!(%error, "could not encode the metrics");
        }
        text
    }

    /// One answered request. `route` must come from a bounded set.
    pub fn request(
        &self,
        route: &str,
        method: &http::Method,
        status: http::StatusCode,
        elapsed: Duration,
    ) {
        let method = method_label(method);
        let class = status_class(status);
        with_hot_series(
            (self.inner.id, route, method, class),
            |series| {
                if let Some(counter) = &series.counter {
                    counter.inc();
                }
                series.histogram.observe(elapsed.as_secs_f64());
            },
            || HotSeries {
                registry: self.inner.id,
                label: route.into(),
                method,
                status_class: class,
                counter: Some(
                    self.inner
                        .requests
                        .get_or_create(&RequestLabels {
                            route: route.to_owned(),
                            method,
                            status_class: class,
                        })
                        .clone(),
                ),
                histogram: self
                    .inner
                    .request_duration
                    .get_or_create(&RouteMethodLabels {
                        route: route.to_owned(),
                        method,
                    })
                    .clone(),
            },
        );
    }

    /// An upstream's response head arrived after `elapsed`.
    pub fn upstream_answered(&self, upstream: &str, elapsed: Duration) {
        with_hot_series(
            (self.inner.id, upstream, "", "upstream"),
            |series| series.histogram.observe(elapsed.as_secs_f64()),
            || HotSeries {
                registry: self.inner.id,
                label: upstream.into(),
                method: "",
                status_class: "upstream",
                counter: None,
                histogram: self
                    .inner
                    .upstream_duration
                    .get_or_create(&UpstreamLabels {
                        upstream: upstream.to_owned(),
                    })
                    .clone(),
            },
        );
    }

    pub fn upstream_failed(&self, upstream: &str, kind: &'static str) {
        self.inner
            .upstream_errors
            .get_or_create(&UpstreamErrorLabels {
                upstream: upstream.to_owned(),
                kind,
            })
            .inc();
    }

    /// A request refused at `upstream`'s connection limit, for `reason`.
    pub fn upstream_overflow(&self, upstream: &str, reason: &'static str) {
        self.inner
            .upstream_overflow
            .get_or_create(&UpstreamOverflowLabels {
                upstream: upstream.to_owned(),
                reason,
            })
            .inc();
    }

    /// Counts a request as waiting at `upstream`'s connection limit until
    /// the guard is dropped.
    pub fn upstream_pending(&self, upstream: &str) -> ActiveGuard {
        let gauge = self
            .inner
            .upstream_pending
            .get_or_create(&UpstreamLabels {
                upstream: upstream.to_owned(),
            })
            .clone();
        gauge.inc();
        ActiveGuard { gauge }
    }

    /// Counts an upstream request as active until the guard is dropped.
    pub fn upstream_active(&self) -> ActiveGuard {
        self.inner.upstream_active.inc();
        ActiveGuard {
            gauge: self.inner.upstream_active.clone(),
        }
    }

    /// Readiness as `/readyz` judged it for this scrape.
    pub fn set_ready(&self, ready: bool) {
        self.inner.ready.set(i64::from(ready));
    }

    pub fn login_started(&self) {
        self.inner.logins_started.inc();
    }

    pub fn login_succeeded(&self) {
        self.inner.logins_succeeded.inc();
    }

    /// `reason`: `GatewayError::code()` (which is `LoginError::label()` for login errors).
    pub fn login_failed(&self, reason: &'static str) {
        self.inner
            .logins_failed
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }

    pub fn refresh(&self, outcome: &'static str) {
        self.inner
            .refreshes
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
    }

    pub fn backchannel_logout(&self, outcome: &'static str) {
        self.inner
            .backchannel_logouts
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
    }

    /// For bearer-token requests: "accepted", or the rejection's label.
    pub fn bearer_validation(&self, outcome: &'static str) {
        self.inner
            .bearer_validations
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
    }

    /// One session store call of `operation`, failed or not.
    pub fn store_call(&self, operation: &'static str, elapsed: Duration, failed: bool) {
        let labels = OperationLabels { operation };
        self.inner
            .redis_duration
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
        if failed {
            self.inner.redis_errors.get_or_create(&labels).inc();
        }
    }

    /// `trigger`: "discovery", "periodic" or "unknown_kid"; `ok`: the fetch worked.
    pub fn jwks_fetch(&self, trigger: &'static str, ok: bool) {
        self.inner
            .jwks_fetches
            .get_or_create(&JwksLabels {
                trigger,
                outcome: if ok { "ok" } else { "error" },
            })
            .inc();
    }

    pub fn limit_rejected(&self, limit: &'static str) {
        self.inner
            .limit_rejections
            .get_or_create(&LimitLabels { limit })
            .inc();
    }

    /// The gauges of active and of parked client connections.
    pub fn client_connections(&self) -> (Gauge, Gauge) {
        let state = |state| {
            self.inner
                .client_connections
                .get_or_create(&StateLabels { state })
                .clone()
        };
        (state("active"), state("parked"))
    }

    /// Whether the local session cache is being served from.
    pub fn session_cache_serving(&self, serving: bool) {
        self.inner.session_cache_serving.set(i64::from(serving));
    }

    /// `reason`: why the local session cache was emptied ("disconnected",
    /// "lease_lapsed", "lagged").
    pub fn session_cache_channel_lost(&self, reason: &'static str) {
        self.inner
            .session_cache_channel_losses
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }

    pub fn config_reload(&self, outcome: &'static str) {
        self.inner
            .config_reloads
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
    }
}

/// Keeps the active-upstream gauge up while alive.
pub struct ActiveGuard {
    gauge: Gauge,
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}

/// Times a session store future and records it under `operation`.
pub async fn timed<T, E>(
    metrics: &Metrics,
    operation: &'static str,
    call: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, E> {
    let started = std::time::Instant::now();
    let result = call.await;
    metrics.store_call(operation, started.elapsed(), result.is_err());
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cached_series_count_into_their_own_registry() {
        let first = Metrics::new();
        let second = Metrics::new();
        let ok = http::StatusCode::OK;
        let ms = Duration::from_millis(3);
        for _ in 0..3 {
            first.request("/app", &http::Method::GET, ok, ms);
        }
        second.request("/app", &http::Method::GET, ok, ms);
        first.request("/app", &http::Method::GET, http::StatusCode::NOT_FOUND, ms);
        first.upstream_answered("http://a:1", ms);
        first.upstream_answered("http://a:1", ms);
        // More series than the cache holds: the evicted ones keep counting.
        for index in 0..(HOT_SERIES + 5) {
            first.request(&format!("/r{index}"), &http::Method::GET, ok, ms);
        }
        first.request("/app", &http::Method::GET, ok, ms);
        let text = first.render();
        let line = |series: &str| {
            text.lines()
                .find(|line| line.starts_with(series))
                .unwrap_or_else(|| panic!("no {series} in {text}"))
                .rsplit(' ')
                .next()
                .unwrap()
                .to_string()
        };
        assert_eq!(
            line("portico_http_requests_total{route=\"/app\",method=\"GET\",status_class=\"2xx\"}"),
            "4"
        );
        assert_eq!(
            line("portico_http_requests_total{route=\"/app\",method=\"GET\",status_class=\"4xx\"}"),
            "1"
        );
        assert_eq!(
            line("portico_http_request_duration_seconds_count{route=\"/app\",method=\"GET\"}"),
            "5"
        );
        assert_eq!(
            line("portico_upstream_duration_seconds_count{upstream=\"http://a:1\"}"),
            "2"
        );
        let other = second.render();
        assert!(
            other.contains(
                "portico_http_requests_total{route=\"/app\",method=\"GET\",status_class=\"2xx\"} 1"
            ),
            "{other}"
        );
    }

    #[test]
    fn rendered_text_has_every_family_and_the_version() {
        let metrics = Metrics::new();
        metrics.request(
            "/app",
            &http::Method::GET,
            http::StatusCode::OK,
            Duration::from_millis(3),
        );
        metrics.login_failed("bad_state");
        metrics.login_failed("bad_state");
        metrics.store_call("load", Duration::from_micros(300), true);
        let text = metrics.render();
        assert!(
            text.contains(
                "portico_http_requests_total{route=\"/app\",method=\"GET\",status_class=\"2xx\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains("portico_logins_failed_total{reason=\"bad_state\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("portico_redis_command_errors_total{operation=\"load\"} 1"),
            "{text}"
        );
        assert!(text.contains(&format!(
            "portico_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        )));
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn unusual_methods_share_one_label() {
        let method = http::Method::from_bytes(b"PROPFIND").unwrap();
        assert_eq!(method_label(&method), "other");
        assert_eq!(method_label(&http::Method::DELETE), "DELETE");
        assert_eq!(status_class(http::StatusCode::BAD_GATEWAY), "5xx");
    }

    #[test]
    fn the_active_gauge_follows_its_guards() {
        let metrics = Metrics::new();
        let first = metrics.upstream_active();
        let second = metrics.upstream_active();
        assert!(metrics
            .render()
            .contains("portico_upstream_active_requests 2"));
        drop(first);
        drop(second);
        assert!(metrics
            .render()
            .contains("portico_upstream_active_requests 0"));
    }
}
