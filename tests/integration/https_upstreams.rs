//! https upstreams: a private CA named by `upstream_ca_file`, SNI from the
//! upstream's host, HTTP/2 when the upstream picks it by ALPN (one
//! connection for every request), HTTP/1.1 otherwise, and a certificate
//! portico does not trust refused with a 502 page that says why.

use reqwest::StatusCode;

use crate::support::tls_upstream::{PrivateCa, TlsUpstream};
use crate::support::TestApp;

const H2_AND_HTTP1: &[&[u8]] = &[b"h2", b"http/1.1"];
const HTTP1_ONLY: &[&[u8]] = &[b"http/1.1"];

fn public_route(prefix: &str, upstream: &str, ca_file: Option<&std::path::Path>) -> String {
    let ca = ca_file
        .map(|path| format!("\nupstream_ca_file = \"{}\"", path.display()))
        .unwrap_or_default();
    format!("path_prefix = \"{prefix}\"\nupstream = \"{upstream}\"\npublic = true{ca}")
}

async fn get(app: &TestApp, path: &str) -> (StatusCode, String) {
    let response = reqwest::Client::new()
        .get(app.url(path))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.text().await.unwrap())
}

#[tokio::test]
async fn an_https_upstream_with_a_private_ca_is_reached_by_its_name() {
    let ca = PrivateCa::new("trusted");
    let (cert, key) = ca.leaf("localhost", &["localhost"]);
    let server = TlsUpstream::start(&cert, &key, HTTP1_ONLY).await;
    let upstream = format!("https://localhost:{}", server.port);
    let app = TestApp::builder()
        .route(&public_route("/", &upstream, Some(&ca.cert)))
        .build()
        .await;
    for round in 0..3 {
        let (status, body) = get(&app, &format!("/page-{round}")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body, format!("HTTP/1.1 /page-{round} user= body="));
    }
    let seen = server.seen();
    assert_eq!(seen.len(), 3);
    assert!(
        seen.iter()
            .all(|request| request.sni.as_deref() == Some("localhost")),
        "SNI is the upstream's host: {seen:?}"
    );
    assert_eq!(
        server.handshakes(),
        1,
        "the connection that found HTTP/1.1 by ALPN is kept and reused: {seen:?}"
    );
}

#[tokio::test]
async fn an_https_upstream_that_picks_h2_gets_one_multiplexed_connection() {
    let ca = PrivateCa::new("h2");
    let (cert, key) = ca.leaf("localhost", &["localhost", "127.0.0.1"]);
    let server = TlsUpstream::start(&cert, &key, H2_AND_HTTP1).await;
    let upstream = format!("https://localhost:{}", server.port);
    let app = TestApp::builder()
        .route(&public_route("/", &upstream, Some(&ca.cert)))
        .build()
        .await;
    let (status, body) = get(&app, "/first").await;
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::OK, "HTTP/2.0 /first user= body=")
    );
    let requests = (0..10).map(|round| {
        let app = &app;
        async move {
            let (status, body) = get(app, &format!("/at-once-{round}")).await;
            assert_eq!(status, StatusCode::OK, "{body}");
            assert_eq!(body, format!("HTTP/2.0 /at-once-{round} user= body="));
        }
    });
    futures_util::future::join_all(requests).await;

    // An upload of unknown length streams to the upstream whole.
    let parts: Vec<Result<String, std::io::Error>> =
        (0..50).map(|round| Ok(format!("part {round};"))).collect();
    let upload = reqwest::Client::new()
        .post(app.url("/upload"))
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            parts,
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(upload.status(), StatusCode::OK);
    let expected: String = (0..50).map(|round| format!("part {round};")).collect();
    assert_eq!(
        upload.text().await.unwrap(),
        format!("HTTP/2.0 /upload user= body={expected}"),
        "no byte lost"
    );
    let seen = server.seen();
    assert_eq!(seen.len(), 12);
    assert!(seen
        .iter()
        .all(|request| request.version == http::Version::HTTP_2
            && request.sni.as_deref() == Some("localhost")));
    assert_eq!(
        server.handshakes(),
        1,
        "one connection carries every request"
    );
}

#[tokio::test]
async fn a_certificate_portico_does_not_trust_gets_a_502_page_that_says_why() {
    let ca = PrivateCa::new("signer");
    let stranger = PrivateCa::new("stranger");
    // Signed by a CA the route does not name.
    let (cert, key) = stranger.leaf("localhost", &["localhost"]);
    let unknown_issuer = TlsUpstream::start(&cert, &key, H2_AND_HTTP1).await;
    // Signed by the route's CA, for another name.
    let (cert, key) = ca.leaf("other", &["other.internal"]);
    let wrong_name = TlsUpstream::start(&cert, &key, HTTP1_ONLY).await;
    let app = TestApp::builder()
        .route(&public_route(
            "/untrusted",
            &format!("https://localhost:{}", unknown_issuer.port),
            None,
        ))
        .route(&public_route(
            "/wrong-name",
            &format!("https://localhost:{}", wrong_name.port),
            Some(&ca.cert),
        ))
        .build()
        .await;

    let (status, page) = get(&app, "/untrusted/x").await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{page}");
    assert!(page.contains("certificate is not trusted"), "{page}");
    assert!(
        page.contains("not signed by an authority portico trusts"),
        "{page}"
    );
    assert!(page.contains("upstream_ca_file"), "{page}");

    let (status, page) = get(&app, "/wrong-name/x").await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{page}");
    assert!(page.contains("not valid for the name localhost"), "{page}");

    let json = reqwest::Client::new()
        .get(app.url("/wrong-name/y"))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(json.status(), StatusCode::BAD_GATEWAY);
    let body: serde_json::Value = json.json().await.unwrap();
    assert_eq!(body["error"], "upstream_certificate", "{body}");

    assert!(unknown_issuer.seen().is_empty() && wrong_name.seen().is_empty());
    assert_eq!(unknown_issuer.handshakes() + wrong_name.handshakes(), 0);
    let metrics = crate::metrics::scrape(&app).await;
    assert!(
        metrics.contains("kind=\"certificate\""),
        "refusals are counted as certificate errors: {metrics}"
    );
}
