//! `[telemetry]`: where OpenTelemetry spans go and how many traces are kept.

use url::Url;

use super::errors::{quoted, Problems};
use super::raw::RawTelemetry;
use super::types::TelemetryConfig;

/// The OTLP/HTTP path for traces (OpenTelemetry protocol specification,
/// "OTLP/HTTP Request": `/v1/traces` under the collector's base URL).
const TRACES_PATH: &str = "/v1/traces";

pub(crate) fn telemetry(problems: &mut Problems, raw: &RawTelemetry) -> Option<TelemetryConfig> {
    let endpoint = otlp_endpoint(problems, &raw.otlp_endpoint);
    let ratio = sample_ratio(problems, raw.sample_ratio);
    Some(TelemetryConfig {
        otlp_endpoint: endpoint?,
        sample_ratio: ratio?,
    })
}

/// `Some(None)`: tracing off. A base URL (path "/") gets `/v1/traces`, as
/// `OTEL_EXPORTER_OTLP_ENDPOINT` does; any other path is used as written.
fn otlp_endpoint(problems: &mut Problems, text: &str) -> Option<Option<Url>> {
    let text = text.trim();
    if text.is_empty() {
        return Some(None);
    }
    let fix = "write the collector's OTLP/HTTP URL, e.g. \"http://otel-collector:4318\" \
               (\"/v1/traces\" is added to a bare origin), or \"\" to turn tracing off";
    let mut url = match Url::parse(text) {
        Ok(url) => url,
        Err(error) => {
            problems.report(
                "telemetry.otlp_endpoint",
                quoted(text),
                format!("is not a URL ({error})"),
                fix,
            );
            return None;
        }
    };
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        problems.report(
            "telemetry.otlp_endpoint",
            quoted(text),
            "must be an http:// or https:// URL with a host (OTLP/HTTP; gRPC is not supported)",
            fix,
        );
        return None;
    }
    if url.query().is_some() || url.fragment().is_some() {
        problems.report(
            "telemetry.otlp_endpoint",
            quoted(text),
            "must not carry a query or a fragment",
            fix,
        );
        return None;
    }
    if url.path() == "/" {
        url.set_path(TRACES_PATH);
    }
    Some(Some(url))
}

fn sample_ratio(problems: &mut Problems, ratio: f64) -> Option<f64> {
    if ratio.is_finite() && (0.0..=1.0).contains(&ratio) {
        return Some(ratio);
    }
    problems.report(
        "telemetry.sample_ratio",
        format_ratio(ratio),
        "must be between 0 and 1 (the share of new traces recorded)",
        "write e.g. sample_ratio = 1.0 to record every trace, 0.1 for one in ten",
    );
    None
}

/// A ratio as TOML writes it (always with a decimal point).
pub(crate) fn format_ratio(ratio: f64) -> String {
    toml::Value::Float(ratio).to_string()
}

#[cfg(test)]
#[allow(clippy::expect_used, clippy::panic, clippy::unwrap_used)]
mod tests {
    use super::*;

    fn judged(endpoint: &str, ratio: f64) -> (Option<TelemetryConfig>, Vec<String>) {
        let mut problems = Problems::default();
        let raw = RawTelemetry {
            otlp_endpoint: endpoint.to_owned(),
            sample_ratio: ratio,
        };
        let config = telemetry(&mut problems, &raw);
        let keys = problems.into_errors().into_iter().map(|e| e.key).collect();
        (config, keys)
    }

    #[test]
    fn empty_endpoint_turns_tracing_off() {
        let (config, problems) = judged("", 1.0);
        assert!(problems.is_empty());
        assert_eq!(config.unwrap(), TelemetryConfig::default());
    }

    #[test]
    fn a_bare_origin_gets_the_traces_path_and_a_full_url_is_kept() {
        let (config, _) = judged("http://collector:4318", 0.5);
        let config = config.unwrap();
        assert_eq!(
            config.otlp_endpoint.unwrap().as_str(),
            "http://collector:4318/v1/traces"
        );
        assert_eq!(config.sample_ratio, 0.5);
        let (config, _) = judged("https://collector.example/otlp/v1/traces", 1.0);
        assert_eq!(
            config.unwrap().otlp_endpoint.unwrap().as_str(),
            "https://collector.example/otlp/v1/traces"
        );
    }

    #[test]
    fn non_http_endpoints_and_ratios_outside_zero_to_one_are_refused_together() {
        let (config, problems) = judged("grpc://collector:4317", 1.5);
        assert!(config.is_none());
        assert_eq!(
            problems,
            ["telemetry.otlp_endpoint", "telemetry.sample_ratio"]
        );
        let (config, problems) = judged("not a url", f64::NAN);
        assert!(config.is_none());
        assert_eq!(problems.len(), 2);
        let (_, problems) = judged("http://collector:4318/?x=1", -0.1);
        assert_eq!(problems.len(), 2);
    }
}
