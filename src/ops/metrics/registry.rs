//! The registry: every metric portico exports, its name, help and labels,
//! registered once per gateway.

use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

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
pub(super) struct RequestLabels {
    pub(super) route: String,
    pub(super) method: &'static str,
    pub(super) status_class: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct RouteMethodLabels {
    pub(super) route: String,
    pub(super) method: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct UpstreamLabels {
    pub(super) upstream: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct UpstreamErrorLabels {
    pub(super) upstream: String,
    pub(super) kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct UpstreamOverflowLabels {
    pub(super) upstream: String,
    pub(super) reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct ReasonLabels {
    pub(super) reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct OutcomeLabels {
    pub(super) outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct OperationLabels {
    pub(super) operation: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct JwksLabels {
    pub(super) trigger: &'static str,
    pub(super) outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct StateLabels {
    pub(super) state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct LimitLabels {
    pub(super) limit: &'static str,
}

pub(super) struct Inner {
    pub(super) registry: Registry,
    pub(super) requests: Family<RequestLabels, Counter>,
    pub(super) request_duration: Family<RouteMethodLabels, Histogram, fn() -> Histogram>,
    pub(super) upstream_duration: Family<UpstreamLabels, Histogram, fn() -> Histogram>,
    pub(super) upstream_errors: Family<UpstreamErrorLabels, Counter>,
    pub(super) upstream_active: Gauge,
    pub(super) upstream_overflow: Family<UpstreamOverflowLabels, Counter>,
    pub(super) upstream_pending: Family<UpstreamLabels, Gauge>,
    pub(super) ready: Gauge,
    pub(super) logins_started: Counter,
    pub(super) logins_succeeded: Counter,
    pub(super) logins_failed: Family<ReasonLabels, Counter>,
    pub(super) refreshes: Family<OutcomeLabels, Counter>,
    pub(super) backchannel_logouts: Family<OutcomeLabels, Counter>,
    pub(super) bearer_validations: Family<OutcomeLabels, Counter>,
    pub(super) redis_duration: Family<OperationLabels, Histogram, fn() -> Histogram>,
    pub(super) redis_errors: Family<OperationLabels, Counter>,
    pub(super) jwks_fetches: Family<JwksLabels, Counter>,
    pub(super) limit_rejections: Family<LimitLabels, Counter>,
    pub(super) config_reloads: Family<OutcomeLabels, Counter>,
    pub(super) session_cache_serving: Gauge,
    pub(super) session_cache_channel_losses: Family<ReasonLabels, Counter>,
    pub(super) client_connections: Family<StateLabels, Gauge>,
    /// Tells this registry's entries in the per-thread handle cache apart
    /// from another's (tests build many).
    pub(super) id: u64,
}

static REGISTRY_IDS: AtomicU64 = AtomicU64::new(0);

/// A new registry with every metric registered.
pub(super) fn registered() -> Inner {
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
    Inner {
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
    }
}
