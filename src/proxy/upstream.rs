//! The upstream client: one pooled HTTP/1.1 client (hyper, over plain TCP or
//! rustls), bodies streamed both ways.
//!
//! Redirects are passed through (never followed), nothing is decompressed,
//! no environment proxy is used. Waiting for the response head is bounded by
//! `upstream_timeout`; the body then streams for as long as it takes.
//!
//! hyper's pooled client is used directly rather than through reqwest: a
//! proxied request needs none of reqwest's conveniences, and skipping its
//! URL parsing and header conversions is a measurable part of the hot path.

use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use http::{HeaderMap, Method, Request, Uri};
use http_body_util::BodyExt as _;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
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
    client: Client<HttpsConnector<HttpConnector>, Body>,
    timeout: Duration,
    metrics: Metrics,
}

impl Upstreams {
    pub fn new(timeout: Duration, metrics: Metrics) -> Result<Self, UpstreamError> {
        let mut tcp = HttpConnector::new();
        tcp.enforce_http(false);
        tcp.set_nodelay(true);
        tcp.set_connect_timeout(Some(Duration::from_secs(5)));
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_webpki_roots(provider)
            .map_err(|error| UpstreamError::Request(error.to_string()))?
            .https_or_http()
            .enable_http1()
            .wrap_connector(tcp);
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(256)
            .build(connector);
        Ok(Upstreams {
            client,
            timeout,
            metrics,
        })
    }

    /// Sends the request to `target` and streams the answer back.
    /// `headers` must already be cleaned (identity, cookies, hop-by-hop);
    /// `label` names the upstream in metrics (its origin, from the config).
    pub async fn forward(
        &self,
        method: Method,
        target: Uri,
        label: &str,
        headers: HeaderMap,
        body: Body,
    ) -> Result<Response, UpstreamError> {
        let mut request = Request::new(body);
        *request.method_mut() = method;
        *request.uri_mut() = target;
        *request.headers_mut() = headers;
        let active = self.metrics.upstream_active();
        let started = std::time::Instant::now();
        let sent = tokio::time::timeout(self.timeout, self.client.request(request)).await;
        let response = match sent {
            Ok(Ok(response)) => response,
            Err(_) => {
                self.metrics.upstream_failed(label, "timeout");
                return Err(UpstreamError::Timeout(self.timeout));
            }
            // The error names no URL, so the client's query stays out of it.
            Ok(Err(error)) => {
                self.metrics.upstream_failed(label, "unreachable");
                return Err(UpstreamError::Unreachable(error_chain(&error)));
            }
        };
        self.metrics.upstream_answered(label, started.elapsed());
        let (mut parts, body) = response.into_parts();
        strip_hop_by_hop(&mut parts.headers);
        // The request stays active until its body has been streamed; a body
        // that breaks off (the upstream reset mid-response) is counted.
        let metrics = self.metrics.clone();
        let label = label.to_owned();
        let body = body.map_err(move |error| {
            let _still_active = &active;
            metrics.upstream_failed(&label, "body");
            tracing::warn!(error = %error_chain(&error), "upstream response body broke off");
            error
        });
        Ok(Response::from_parts(parts, Body::new(body)))
    }
}

/// The URI to send a request for `path_and_query` to, under `upstream`.
/// An upstream with a base path ("http://app/base") is prefixed to the path.
pub fn target_uri(upstream: &Url, path_and_query: &str) -> Result<Uri, UpstreamError> {
    let base = upstream.as_str().trim_end_matches('/');
    let mut text = String::with_capacity(base.len() + path_and_query.len());
    text.push_str(base);
    text.push_str(path_and_query);
    Uri::try_from(text).map_err(|error| UpstreamError::Request(error.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_keeps_path_and_query_under_the_upstream_base() {
        let upstream = Url::parse("http://127.0.0.1:9100").unwrap();
        assert_eq!(
            target_uri(&upstream, "/a/b?x=1").unwrap().to_string(),
            "http://127.0.0.1:9100/a/b?x=1"
        );
        let based = Url::parse("http://app.internal/base/").unwrap();
        assert_eq!(
            target_uri(&based, "/a").unwrap().to_string(),
            "http://app.internal/base/a"
        );
    }
}
