//! An upstream that reads paths the lenient way common frameworks and
//! servers do, to show that what portico judged is what gets served:
//!
//! - `;` path parameters are dropped from each segment before decoding, as
//!   Tomcat does (and Spring's `UrlPathHelper.removeSemicolonContent`);
//! - the path is percent-decoded in full (`%61` → `a`, `%2F` → `/`), as
//!   frameworks that route on the decoded path do (Express, Flask/Werkzeug,
//!   Rails);
//! - `\` is a `/` (IIS, and WHATWG URL parsing for special schemes);
//! - a NUL ends the path (C string handling in older servers and CGI);
//! - repeated slashes are merged and dot segments resolved (nginx's
//!   `merge_slashes` and URI normalisation, RFC 3986 §5.2.4).
//!
//! It answers JSON: the path it would serve, the raw path and query it
//! received, and the identity header; and it remembers each path served.
//! `?cache_control=…` sets the answer's `Cache-Control`.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::Json;

pub struct LenientUpstream {
    pub address: SocketAddr,
    served: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for LenientUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl LenientUpstream {
    pub async fn start() -> LenientUpstream {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let served = Arc::new(Mutex::new(Vec::new()));
        let router = axum::Router::new()
            .fallback(answer)
            .with_state(served.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        LenientUpstream {
            address,
            served,
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// Every path served so far, as this upstream read it.
    pub fn served(&self) -> Vec<String> {
        self.served.lock().unwrap().clone()
    }
}

async fn answer(State(served): State<Arc<Mutex<Vec<String>>>>, request: Request) -> Response {
    let raw_path = request.uri().path().to_string();
    let query = request.uri().query().unwrap_or_default().to_string();
    let path = lenient_path(&raw_path);
    served.lock().unwrap().push(path.clone());
    let user = request
        .headers()
        .get("x-forwarded-user")
        .and_then(|value| value.to_str().ok())
        .map(str::to_string);
    let cache_control = url::form_urlencoded::parse(query.as_bytes())
        .find(|(name, _)| name == "cache_control")
        .map(|(_, value)| value.into_owned());
    let mut response = Json(serde_json::json!({
        "served": path,
        "raw_path": raw_path,
        "raw_query": query,
        "user": user,
    }))
    .into_response();
    if let Some(value) = cache_control {
        response
            .headers_mut()
            .insert("cache-control", value.parse().unwrap());
    }
    response
}

/// The path as a lenient server reads `raw`.
pub fn lenient_path(raw: &str) -> String {
    let without_parameters: Vec<&str> = raw
        .split('/')
        .map(|segment| segment.split(';').next().unwrap_or_default())
        .collect();
    let joined = without_parameters.join("/");
    let decoded = percent_decode(&joined).replace('\\', "/");
    let decoded = decoded.split('\0').next().unwrap_or_default();
    let mut segments: Vec<&str> = Vec::new();
    for segment in decoded.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            other => segments.push(other),
        }
    }
    let mut path = format!("/{}", segments.join("/"));
    if decoded.ends_with('/') && path != "/" {
        path.push('/');
    }
    path
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        let hex = bytes
            .get(at + 1..at + 3)
            .and_then(|pair| std::str::from_utf8(pair).ok())
            .and_then(|pair| u8::from_str_radix(pair, 16).ok());
        match (bytes[at], hex) {
            (b'%', Some(value)) => {
                decoded.push(value);
                at += 3;
            }
            (byte, _) => {
                decoded.push(byte);
                at += 1;
            }
        }
    }
    String::from_utf8_lossy(&decoded).into_owned()
}

#[test]
fn the_lenient_reading_serves_admin_for_every_walk_around() {
    for raw in [
        "/%61dmin/x",
        "/adm%69n/x",
        "//admin/x",
        "///admin/x",
        "/admin%2fx",
        "/admin%2Fx",
        "/%2fadmin/x",
        "/admin%5cx",
        "/admin\\x",
    ] {
        assert_eq!(lenient_path(raw), "/admin/x", "{raw}");
    }
    assert_eq!(lenient_path("/admin;x"), "/admin");
    assert_eq!(lenient_path("/admin;jsessionid=1/x"), "/admin/x");
    assert_eq!(lenient_path("/admin%00/x"), "/admin");
    assert_eq!(lenient_path("/public/../admin"), "/admin");
    assert_eq!(lenient_path("/a/"), "/a/");
}
