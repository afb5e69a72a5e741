//! The upstream client: one pooled HTTP/1.1 client, bodies streamed both ways.
//!
//! Redirects are passed through (never followed), nothing is decompressed,
//! no environment proxy is used. Waiting for the response head is bounded by
//! `upstream_timeout`; the body then streams for as long as it takes.

use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use futures_util::StreamExt as _;
use http::{HeaderMap, Method};
use url::Url;

use super::headers::strip_hop_by_hop;
use crate::error::error_chain;
use crate::ops::Metrics;

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("upstream refused or unreachable: {0}")]
    Unreachable(String),
    #[error("upstream sent no response within {0:?}")]
    Timeout(Duration),
    #[error("upstream request could not be built: {0}")]
    Request(String),
}

#[derive(Clone)]
pub struct Upstreams {
    client: reqwest::Client,
    timeout: Duration,
    metrics: Metrics,
}

impl Upstreams {
    pub fn new(timeout: Duration, metrics: Metrics) -> Result<Self, UpstreamError> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .http1_only()
            .tcp_nodelay(true)
            .connect_timeout(Duration::from_secs(5))
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(256)
            .build()
            .map_err(|error| UpstreamError::Request(error.to_string()))?;
        Ok(Upstreams {
            client,
            timeout,
            metrics,
        })
    }

    /// Sends the request to `target` and streams the answer back.
    /// `headers` must already be cleaned (identity, cookies, hop-by-hop).
    pub async fn forward(
        &self,
        method: Method,
        target: Url,
        headers: HeaderMap,
        body: Option<Body>,
    ) -> Result<Response, UpstreamError> {
        // The metrics label: the upstream's origin, which comes from the config.
        let upstream = target.origin().ascii_serialization();
        let mut request = self.client.request(method, target).headers(headers);
        if let Some(body) = body {
            request = request.body(reqwest::Body::wrap_stream(body.into_data_stream()));
        }
        let active = self.metrics.upstream_active();
        let started = std::time::Instant::now();
        let sent = tokio::time::timeout(self.timeout, request.send()).await;
        let failure = |kind: &'static str, error: UpstreamError| {
            self.metrics.upstream_failed(&upstream, kind);
            Err(error)
        };
        let response = match sent {
            Err(_) => return failure("timeout", UpstreamError::Timeout(self.timeout)),
            Ok(Err(error)) if error.is_timeout() => {
                return failure("timeout", UpstreamError::Timeout(self.timeout))
            }
            Ok(Err(error)) if error.is_builder() => {
                return failure("request", UpstreamError::Request(error.to_string()))
            }
            // The URL (with the client's query) stays out of the message.
            Ok(Err(error)) => {
                return failure(
                    "unreachable",
                    UpstreamError::Unreachable(error_chain(&error.without_url())),
                )
            }
            Ok(Ok(response)) => response,
        };
        self.metrics.upstream_answered(&upstream, started.elapsed());
        let status = response.status();
        let mut headers = response.headers().clone();
        strip_hop_by_hop(&mut headers);
        // The request stays active until its body has been streamed; a body
        // that breaks off (the upstream reset mid-response) is counted.
        let metrics = self.metrics.clone();
        let body = response.bytes_stream().map(move |chunk| {
            let _still_active = &active;
            chunk.map_err(|error| {
                let error = error.without_url();
                metrics.upstream_failed(&upstream, "body");
                tracing::warn!(error = %error_chain(&error), "upstream response body broke off");
                error
            })
        });
        let mut answer = Response::new(Body::from_stream(body));
        *answer.status_mut() = status;
        *answer.headers_mut() = headers;
        Ok(answer)
    }
}

/// The URL to send a request for `path_and_query` to, under `upstream`.
/// An upstream with a base path ("http://app/base") is prefixed to the path.
pub fn target_url(upstream: &Url, path_and_query: &str) -> Result<Url, UpstreamError> {
    let base = upstream.as_str().trim_end_matches('/');
    Url::parse(&format!("{base}{path_and_query}"))
        .map_err(|error| UpstreamError::Request(error.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_keeps_path_and_query_under_the_upstream_base() {
        let upstream = Url::parse("http://127.0.0.1:9100").unwrap();
        assert_eq!(
            target_url(&upstream, "/a/b?x=1").unwrap().as_str(),
            "http://127.0.0.1:9100/a/b?x=1"
        );
        let based = Url::parse("http://app.internal/base/").unwrap();
        assert_eq!(
            target_url(&based, "/a").unwrap().as_str(),
            "http://app.internal/base/a"
        );
    }
}
