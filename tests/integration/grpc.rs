//! A real gRPC service (tonic) behind portico over h2c, called by a tonic
//! client through portico: unary and server-streaming calls carry the
//! caller's identity to the service, identity metadata the client forges
//! never arrives, and portico's refusals come as gRPC statuses
//! (UNAUTHENTICATED, PERMISSION_DENIED, UNAVAILABLE).

use std::pin::Pin;
use std::time::{Duration, Instant};

use futures_util::{Stream, StreamExt};
use tonic::metadata::MetadataMap;
use tonic::{Code, Request, Response, Status};

use crate::support::{Browser, TestApp};

mod echo_proto {
    tonic::include_proto!("portico.test");
}

use echo_proto::echo_client::EchoClient;
use echo_proto::echo_server::{Echo, EchoServer};
use echo_proto::{EchoReply, EchoRequest};

/// Answers with the identity metadata it received.
struct EchoService;

fn reply(metadata: &MetadataMap, text: &str, index: u32) -> EchoReply {
    let headers = metadata.clone().into_headers();
    let values = |name: &str| -> Vec<String> {
        headers
            .get_all(name)
            .iter()
            .map(|value| value.to_str().unwrap_or("<bytes>").to_string())
            .collect()
    };
    EchoReply {
        text: text.to_string(),
        users: values("x-forwarded-user"),
        emails: values("x-forwarded-email"),
        underscored: headers
            .keys()
            .map(|name| name.as_str().to_string())
            .filter(|name| name.contains('_'))
            .collect(),
        index,
    }
}

#[tonic::async_trait]
impl Echo for EchoService {
    async fn unary(&self, request: Request<EchoRequest>) -> Result<Response<EchoReply>, Status> {
        if request.get_ref().text == "sleep" {
            tokio::time::sleep(Duration::from_secs(10)).await;
        }
        let answer = reply(request.metadata(), &request.get_ref().text, 0);
        Ok(Response::new(answer))
    }

    type StreamStream = Pin<Box<dyn Stream<Item = Result<EchoReply, Status>> + Send>>;

    async fn stream(
        &self,
        request: Request<EchoRequest>,
    ) -> Result<Response<Self::StreamStream>, Status> {
        let replies: Vec<Result<EchoReply, Status>> = (0..request.get_ref().count)
            .map(|index| Ok(reply(request.metadata(), &request.get_ref().text, index)))
            .collect();
        let replies = futures_util::stream::iter(replies);
        if request.get_ref().text == "stall" {
            // The first messages, then nothing for a long while.
            let late = reply(request.metadata(), "late", 99);
            let stalled = futures_util::stream::once(async move {
                tokio::time::sleep(Duration::from_secs(10)).await;
                Ok(late)
            });
            return Ok(Response::new(Box::pin(replies.chain(stalled))));
        }
        Ok(Response::new(Box::pin(replies)))
    }
}

/// The gRPC server on a port of its own: its `h2c://` URL.
async fn grpc_server() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(EchoServer::new(EchoService))
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );
    format!("h2c://{address}")
}

/// portico with `routes` for the service ("/" stays the echo upstream, for
/// signing in), and a browser signed in as alice.
async fn app_with(routes: &[String]) -> (TestApp, Browser) {
    let mut builder = TestApp::builder()
        .config("server", "upstream_read_timeout = \"1s\"")
        .route("path_prefix = \"/\"\nupstream = \"{upstream}\"");
    for route in routes {
        builder = builder.route(route);
    }
    let app = builder.build().await;
    let browser = Browser::new();
    app.sign_in(&browser, "/").await;
    (app, browser)
}

async fn client(app: &TestApp) -> EchoClient<tonic::transport::Channel> {
    EchoClient::connect(app.base.clone()).await.unwrap()
}

/// A request carrying the session cookie (unless `cookie` is None) and
/// forged identity metadata.
fn call(message: EchoRequest, cookie: Option<&str>) -> Request<EchoRequest> {
    let mut request = Request::new(message);
    let metadata = request.metadata_mut();
    if let Some(cookie) = cookie {
        metadata.insert(
            "cookie",
            format!("portico_session={cookie}").parse().unwrap(),
        );
    }
    metadata.insert("x-forwarded-user", "mallory".parse().unwrap());
    metadata.insert("x_forwarded_user", "mallory2".parse().unwrap());
    metadata.insert("x-forwarded-email", "m@evil.test".parse().unwrap());
    request
}

fn request(text: &str, count: u32) -> EchoRequest {
    EchoRequest {
        text: text.to_string(),
        count,
    }
}

#[tokio::test]
async fn grpc_calls_pass_through_portico_with_the_callers_identity() {
    let upstream = grpc_server().await;
    let route = format!("path_prefix = \"/portico.test.Echo\"\nupstream = \"{upstream}\"");
    let (app, browser) = app_with(&[route]).await;
    let cookie = browser.cookie("portico_session").unwrap();
    let mut client = client(&app).await;

    let unary = client
        .unary(call(request("hello", 0), Some(&cookie)))
        .await
        .expect("the unary call succeeds")
        .into_inner();
    assert_eq!(unary.text, "hello");
    assert_eq!(
        unary.users,
        ["alice"],
        "portico's identity, not the forged one"
    );
    assert_eq!(unary.emails, ["alice@example.test"]);
    assert!(unary.underscored.is_empty(), "{:?}", unary.underscored);

    let mut stream = client
        .stream(call(request("tick", 5), Some(&cookie)))
        .await
        .expect("the streaming call starts")
        .into_inner();
    let mut indexes = Vec::new();
    while let Some(message) = stream.next().await {
        let message = message.expect("every message, and an OK status at the end");
        assert_eq!(
            (message.text.as_str(), message.users.as_slice()),
            ("tick", ["alice".to_string()].as_slice())
        );
        indexes.push(message.index);
    }
    assert_eq!(indexes, [0, 1, 2, 3, 4], "every message, in order");

    // Many calls at once share the one HTTP/2 connection and all succeed.
    let calls = (0..20).map(|round| {
        let mut client = client.clone();
        let cookie = cookie.clone();
        async move {
            let answer = client
                .unary(call(request(&format!("call {round}"), 0), Some(&cookie)))
                .await
                .unwrap()
                .into_inner();
            assert_eq!(answer.text, format!("call {round}"));
        }
    });
    futures_util::future::join_all(calls).await;
}

#[tokio::test]
async fn grpc_calls_without_a_session_get_unauthenticated() {
    let upstream = grpc_server().await;
    let route = format!("path_prefix = \"/portico.test.Echo\"\nupstream = \"{upstream}\"");
    let (app, _browser) = app_with(&[route]).await;
    let mut client = client(&app).await;
    for cookie in [None, Some("not-a-sealed-session")] {
        let status = client
            .unary(call(request("hello", 0), cookie))
            .await
            .expect_err("refused");
        assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
        assert!(status.message().contains("not signed in"), "{status:?}");
        let streamed = client
            .stream(call(request("tick", 2), cookie))
            .await
            .expect_err("refused");
        assert_eq!(streamed.code(), Code::Unauthenticated, "{streamed:?}");
    }
    // On the wire: a trailers-only answer, HTTP 200 with the status in the
    // head and no body.
    let raw = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap()
        .post(app.url("/portico.test.Echo/Unary"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(vec![0u8; 5])
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), reqwest::StatusCode::OK);
    assert_eq!(raw.headers()["grpc-status"], "16");
    assert_eq!(raw.headers()["content-type"], "application/grpc");
    assert!(raw.bytes().await.unwrap().is_empty());
}

#[tokio::test]
async fn grpc_calls_refused_by_rules_or_a_dead_upstream_get_grpc_statuses() {
    let upstream = grpc_server().await;
    // A port nothing listens on.
    let dead = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let routes = [
        format!(
            "path_prefix = \"/portico.test.Echo/Unary\"\nupstream = \"{upstream}\"\n\
             require_roles = [\"auditor\"]"
        ),
        format!("path_prefix = \"/portico.test.Echo/Stream\"\nupstream = \"h2c://{dead}\""),
    ];
    let (app, browser) = app_with(&routes).await;
    let cookie = browser.cookie("portico_session").unwrap();
    let mut client = client(&app).await;
    let denied = client
        .unary(call(request("hello", 0), Some(&cookie)))
        .await
        .expect_err("alice is no auditor");
    assert_eq!(denied.code(), Code::PermissionDenied, "{denied:?}");
    let unavailable = client
        .stream(call(request("tick", 2), Some(&cookie)))
        .await
        .expect_err("nothing listens there");
    assert_eq!(unavailable.code(), Code::Unavailable, "{unavailable:?}");
    assert!(
        unavailable.message().contains("request id"),
        "{unavailable:?}"
    );
}

#[tokio::test]
async fn an_http2_upstream_is_held_to_the_upstream_timeouts() {
    let upstream = grpc_server().await;
    let route = format!("path_prefix = \"/portico.test.Echo\"\nupstream = \"{upstream}\"");
    let (app, browser) = app_with(&[route]).await;
    let cookie = browser.cookie("portico_session").unwrap();
    let mut client = client(&app).await;

    // upstream_timeout (2 s in the tests) to the response head: 504, which
    // a gRPC client reads as UNAVAILABLE.
    let started = Instant::now();
    let slow = client
        .unary(call(request("sleep", 0), Some(&cookie)))
        .await
        .expect_err("the head never comes in time");
    assert_eq!(slow.code(), Code::Unavailable, "{slow:?}");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(1900) && took < Duration::from_secs(5),
        "{took:?}"
    );

    // upstream_read_timeout (1 s here) between frames of the body: the
    // stream breaks off after what came.
    let started = Instant::now();
    let mut stream = client
        .stream(call(request("stall", 2), Some(&cookie)))
        .await
        .expect("the stream starts")
        .into_inner();
    for index in 0..2 {
        let message = stream
            .next()
            .await
            .unwrap()
            .expect("the messages before the stall");
        assert_eq!(message.index, index);
    }
    let broken = stream.next().await.expect("an end, not silence");
    assert!(broken.is_err(), "the stall breaks the stream: {broken:?}");
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(5),
        "cut after about a second: {took:?}"
    );

    // The connection still serves the next call.
    let fine = client
        .unary(call(request("after", 0), Some(&cookie)))
        .await
        .expect("the next call goes through");
    assert_eq!(fine.into_inner().text, "after");
}
