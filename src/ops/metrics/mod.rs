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

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::metrics::gauge::Gauge;

mod hot;
mod registry;

use hot::{with_hot_series, HotSeries};
use registry::{
    registered, Inner, JwksLabels, LimitLabels, OperationLabels, OutcomeLabels, ReasonLabels,
    RequestLabels, RouteMethodLabels, StateLabels, UpstreamErrorLabels, UpstreamLabels,
    UpstreamOverflowLabels,
};

/// The `Content-Type` of [`Metrics::render`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

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
        Metrics {
            inner: Arc::new(registered()),
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
    use super::hot::HOT_SERIES;
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
