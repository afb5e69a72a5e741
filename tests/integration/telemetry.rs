//! OpenTelemetry (issue 21 item 4): portico's spans reach an OTLP/HTTP
//! receiver of our own, one trace per request with the expected children and
//! parent links, and the upstream sees portico's span as its parent.

use std::collections::BTreeSet;
use std::time::Duration;

use reqwest::StatusCode;

use crate::support::{query_param, Browser, OtlpReceiver, ReceivedSpan, TestApp};

/// The example of W3C Trace Context §3.2.2.
const TRACE_ID: &str = "0af7651916cd43dd8448eb211c80319c";
const PARENT_ID: &str = "b7ad6b7169203331";
const TRACEPARENT: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
const TRACESTATE: &str = "congo=t61rcWkgMzE";

const SERVER: i32 = 2;
const CLIENT: i32 = 3;

/// Sends every finished span now (the exporter blocks, so off the runtime
/// that also serves the receiver).
async fn flush(app: &TestApp) {
    let state = app.state.clone();
    tokio::task::spawn_blocking(move || state.telemetry.flush())
        .await
        .unwrap();
}

fn request_id(page: &crate::support::Page) -> String {
    page.header("x-request-id")
        .unwrap_or_else(|| panic!("no X-Request-Id on {}", page.url))
}

/// The spans of the request with `id`, checked to form one trace under one
/// server span; returns (server span, its children by name).
fn one_trace(spans: &[ReceivedSpan], id: &str) -> (ReceivedSpan, Vec<ReceivedSpan>) {
    let mine: Vec<&ReceivedSpan> = spans
        .iter()
        .filter(|span| span.attribute("portico.request_id") == Some(id))
        .collect();
    let servers: Vec<&&ReceivedSpan> = mine.iter().filter(|span| span.kind == SERVER).collect();
    assert_eq!(servers.len(), 1, "one request span for {id}: {mine:#?}");
    let server = (*servers[0]).clone();
    for span in &mine {
        assert_eq!(
            span.trace_id, server.trace_id,
            "one trace for {id}: {mine:#?}"
        );
        if span.span_id != server.span_id {
            assert_eq!(
                span.parent_span_id, server.span_id,
                "{} is a child of the request span: {mine:#?}",
                span.name
            );
        }
    }
    let children = mine
        .into_iter()
        .filter(|span| span.kind != SERVER)
        .cloned()
        .collect();
    (server, children)
}

fn names(spans: &[ReceivedSpan]) -> BTreeSet<&str> {
    spans.iter().map(|span| span.name.as_str()).collect()
}

#[tokio::test]
async fn sign_in_and_proxied_requests_are_traced_one_trace_each() {
    let receiver = OtlpReceiver::start().await;
    let app = TestApp::builder()
        .op_options(|options| {
            options.access_token_ttl = Duration::from_secs(120);
            options.id_token_ttl = Duration::from_secs(120);
        })
        .config("session", "refresh_before = \"60s\"")
        .config("server", "trusted_proxies = [\"127.0.0.1/32\"]")
        .config(
            "telemetry",
            &format!("otlp_endpoint = \"{}\"", receiver.url()),
        )
        .build()
        .await;
    assert!(app.state.telemetry.is_on());
    // The provider's next ID token names a new key: the callback fetches
    // the JWKS within the request.
    app.op.rotate_keys();

    let browser = Browser::new();
    let hops = browser.follow(&app.url("/deep/link")).await;
    let portico_hops: Vec<_> = hops
        .iter()
        .filter(|page| page.url.starts_with(&app.base))
        .collect();
    assert_eq!(
        portico_hops.len(),
        3,
        "start, callback, deep link: {hops:#?}"
    );
    let last = portico_hops[2];
    assert_eq!(last.status, StatusCode::OK);
    let callback = portico_hops[1];
    assert!(
        callback.url.contains("/oauth2/callback"),
        "{}",
        callback.url
    );
    let code = query_param(&callback.url, "code").expect("code in the callback");
    let cookie = browser.cookie("portico_session").expect("signed in");

    // A request from a trusted proxy continues its caller's trace.
    let traced = browser
        .get_with(
            &app.url("/traced"),
            &[("traceparent", TRACEPARENT), ("tracestate", TRACESTATE)],
        )
        .await;
    assert_eq!(traced.status, StatusCode::OK);
    let upstream_saw = traced.json()["headers"].clone();

    // Past the refresh point: the next request refreshes the tokens.
    app.advance(Duration::from_secs(61));
    let refreshed = browser.get(&app.url("/later")).await;
    assert_eq!(refreshed.status, StatusCode::OK);
    assert_eq!(app.op.stats().refreshes, 1);

    flush(&app).await;
    let ids: Vec<String> = portico_hops
        .iter()
        .map(|page| request_id(page))
        .chain([request_id(&traced), request_id(&refreshed)])
        .collect();
    let spans = receiver
        .wait_for(|spans| {
            ids.iter().all(|id| {
                spans.iter().any(|span| {
                    span.kind == SERVER && span.attribute("portico.request_id") == Some(id)
                })
            })
        })
        .await;
    assert!(spans.iter().all(|span| span.service == "portico"));

    // The sign-in start: a request span and the (cookie-less) session look-up.
    let (start, children) = one_trace(&spans, &ids[0]);
    assert_eq!(start.name, "GET");
    assert_eq!(start.attribute("url.path"), Some("/deep/link"));
    assert_eq!(start.attribute("http.response.status_code"), Some("302"));
    assert!(start.parent_span_id.is_empty(), "a new trace: {start:#?}");
    assert!(!names(&children).contains("upstream"));

    // The callback: token exchange and the JWKS fetch for the new key.
    let (callback_span, children) = one_trace(&spans, &ids[1]);
    assert_eq!(
        callback_span.attribute("url.path"),
        Some("/oauth2/callback")
    );
    assert!(
        names(&children).contains("oidc.token_exchange"),
        "{children:#?}"
    );
    assert!(
        names(&children).contains("oidc.jwks_fetch"),
        "{children:#?}"
    );

    // Back on the deep link: the session load and the upstream call.
    let (_, children) = one_trace(&spans, &ids[2]);
    assert!(names(&children).contains("session.load"), "{children:#?}");
    let upstream = children
        .iter()
        .find(|span| span.name == "upstream")
        .unwrap();
    assert_eq!(upstream.kind, CLIENT);
    assert_eq!(upstream.attribute("http.response.status_code"), Some("200"));

    // The trusted caller's trace is continued, and the upstream's parent is
    // portico's upstream-call span.
    let (request, children) = one_trace(&spans, &ids[3]);
    assert_eq!(request.trace_id, TRACE_ID);
    assert_eq!(request.parent_span_id, PARENT_ID);
    let upstream = children
        .iter()
        .find(|span| span.name == "upstream")
        .unwrap();
    assert_eq!(
        upstream_saw["traceparent"],
        format!("00-{TRACE_ID}-{}-01", upstream.span_id)
    );
    assert_eq!(upstream_saw["tracestate"], TRACESTATE);

    // The refresh.
    let (_, children) = one_trace(&spans, &ids[4]);
    assert!(names(&children).contains("oidc.refresh"), "{children:#?}");

    // One trace per request.
    let traces: BTreeSet<String> = ids
        .iter()
        .map(|id| one_trace(&spans, id).0.trace_id)
        .collect();
    assert_eq!(traces.len(), ids.len());

    // No token, code or cookie in any attribute.
    for span in &spans {
        for (key, value) in &span.attributes {
            assert!(!value.contains(&cookie), "{key} holds the cookie");
            assert!(!value.contains(&code), "{key} holds the code");
            assert!(!value.contains("eyJ"), "{key} holds a JWT: {value}");
            assert!(!value.contains('?'), "{key} holds a query: {value}");
        }
    }
}

#[tokio::test]
async fn a_traceparent_from_an_untrusted_peer_starts_a_new_trace() {
    let receiver = OtlpReceiver::start().await;
    let app = TestApp::builder()
        .route("path_prefix = \"/\"\nupstream = \"{upstream}\"\npublic = true")
        .config(
            "telemetry",
            &format!(
                "otlp_endpoint = \"{}/v1/traces\"\nsample_ratio = 1.0",
                receiver.url()
            ),
        )
        .build()
        .await;
    let page = Browser::new()
        .get_with(
            &app.url("/open"),
            &[("traceparent", TRACEPARENT), ("tracestate", TRACESTATE)],
        )
        .await;
    assert_eq!(page.status, StatusCode::OK);
    let upstream_saw = page.json()["headers"].clone();
    let id = request_id(&page);
    flush(&app).await;
    let spans = receiver
        .wait_for(|spans| {
            spans
                .iter()
                .any(|span| span.attribute("portico.request_id") == Some(&id))
        })
        .await;
    let (request, children) = one_trace(&spans, &id);
    assert_ne!(
        request.trace_id, TRACE_ID,
        "the caller's trace is not continued"
    );
    assert!(request.parent_span_id.is_empty());
    let upstream = children
        .iter()
        .find(|span| span.name == "upstream")
        .unwrap();
    assert_eq!(
        upstream_saw["traceparent"],
        format!("00-{}-{}-01", request.trace_id, upstream.span_id)
    );
    assert!(
        upstream_saw.get("tracestate").is_none(),
        "an untrusted tracestate is not passed on: {upstream_saw}"
    );
}

#[tokio::test]
async fn with_no_endpoint_nothing_is_traced_and_traceparent_passes_as_sent() {
    let app = TestApp::builder()
        .route("path_prefix = \"/\"\nupstream = \"{upstream}\"\npublic = true")
        .build()
        .await;
    assert!(!app.state.telemetry.is_on());
    let page = Browser::new()
        .get_with(&app.url("/open"), &[("traceparent", TRACEPARENT)])
        .await;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(page.json()["headers"]["traceparent"], TRACEPARENT);
}

#[tokio::test]
async fn a_zero_ratio_records_no_new_trace_but_follows_a_trusted_sampled_parent() {
    let receiver = OtlpReceiver::start().await;
    let app = TestApp::builder()
        .route("path_prefix = \"/\"\nupstream = \"{upstream}\"\npublic = true")
        .config("server", "trusted_proxies = [\"127.0.0.1/32\"]")
        .config(
            "telemetry",
            &format!("otlp_endpoint = \"{}\"\nsample_ratio = 0", receiver.url()),
        )
        .build()
        .await;
    let browser = Browser::new();
    let unsampled = browser.get(&app.url("/new")).await;
    assert_eq!(unsampled.status, StatusCode::OK);
    // Not recorded, but the upstream still gets a context (flag 00).
    let traceparent = unsampled.json()["headers"]["traceparent"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        traceparent.starts_with("00-") && traceparent.ends_with("-00"),
        "{traceparent}"
    );
    let continued = browser
        .get_with(&app.url("/continued"), &[("traceparent", TRACEPARENT)])
        .await;
    assert_eq!(continued.status, StatusCode::OK);
    flush(&app).await;
    let continued_id = request_id(&continued);
    let spans = receiver
        .wait_for(|spans| {
            spans
                .iter()
                .any(|span| span.attribute("portico.request_id") == Some(&continued_id))
        })
        .await;
    let (request, _) = one_trace(&spans, &continued_id);
    assert_eq!(request.trace_id, TRACE_ID);
    let unsampled_id = request_id(&unsampled);
    assert!(
        spans
            .iter()
            .all(|span| span.attribute("portico.request_id") != Some(&unsampled_id)),
        "a new trace at ratio 0 is not exported: {spans:#?}"
    );
}
