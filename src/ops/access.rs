//! One access log line and one set of request metrics per request.
//!
//! The middleware runs inside the request-id span, so the line carries the
//! request id in every log format. Handlers tell it what only they know —
//! the route prefix that matched and who is signed in — through an
//! [`AccessNote`]: the proxy is handed it, the router's handlers find it in
//! the request's extensions. The middleware never parses cookies or reads
//! the store itself.
//!
//! The line: target `portico::access`, level info, fields `method`, `path`
//! (never the query: it may carry codes or tokens), `status`, `latency_ms`,
//! `route`, and `sub` when someone is signed in. Under portico's own
//! subscriber it is written directly into the worker's batch of log lines
//! ([`super::access_line`]); under any other, through `tracing`.

use std::sync::{Arc, OnceLock};
use std::time::{Instant, SystemTime};

use axum::extract::{MatchedPath, Request};
use axum::response::Response;

use super::access_line::{self, AccessLine};
use super::logging::{self, AccessLog};
use crate::config::{LogFormat, RouteConfig};
use crate::request_id::RequestId;
use crate::AppState;

/// Longest path written to the access log; longer ones are cut (with "…").
const MAX_LOGGED_PATH: usize = 512;

/// What handlers learn about a request that the access log and the metrics need.
#[derive(Clone, Default, Debug)]
pub struct AccessNote {
    inner: Arc<NoteInner>,
}

#[derive(Default, Debug)]
struct NoteInner {
    /// The route (shared with the route table, not copied).
    route: OnceLock<Arc<RouteConfig>>,
    user: OnceLock<String>,
    /// The access log is on: only then is the user kept.
    logged: bool,
}

impl AccessNote {
    /// Records the route that matched (its `path_prefix` is the label).
    pub fn set_route(&self, route: &Arc<RouteConfig>) {
        let _ = self.inner.route.set(route.clone());
    }

    /// Records the signed-in user's `sub` (for the access line, so only
    /// when that is written).
    pub fn set_user(&self, sub: &str) {
        if self.inner.logged {
            let _ = self.inner.user.set(sub.to_owned());
        }
    }

    fn new(logged: bool) -> Self {
        AccessNote {
            inner: Arc::new(NoteInner {
                logged,
                ..NoteInner::default()
            }),
        }
    }

    pub fn route(&self) -> Option<&str> {
        self.inner
            .route
            .get()
            .map(|route| route.path_prefix.as_str())
    }

    pub fn user(&self) -> Option<&str> {
        self.inner.user.get().map(String::as_str)
    }
}

/// The path as the access line writes it: cut at [`MAX_LOGGED_PATH`] bytes
/// (on a character boundary, with "…"), borrowed when it is short enough.
fn logged_path(path: &str) -> std::borrow::Cow<'_, str> {
    if path.len() <= MAX_LOGGED_PATH {
        return std::borrow::Cow::Borrowed(path);
    }
    let mut end = MAX_LOGGED_PATH;
    while !path.is_char_boundary(end) {
        end -= 1;
    }
    std::borrow::Cow::Owned(format!("{}…", &path[..end]))
}

/// The route label: the prefix a handler noted, else the path of one of
/// portico's own endpoints, else "unmatched".
fn route_label<'a>(note: &'a AccessNote, matched: Option<&'a str>) -> &'a str {
    note.route().or(matched).unwrap_or("unmatched")
}

/// What only the access line needs.
struct Logged {
    /// The request's target, shared with the request (its bytes are not
    /// copied); only the path is written.
    target: Option<http::uri::PathAndQuery>,
    request_id: RequestId,
    /// Written directly in this format, else through `tracing`.
    direct: Option<LogFormat>,
}

/// What the access log and the metrics need from a request, taken before
/// it is handled.
pub struct Observation {
    started: Instant,
    method: http::Method,
    /// Only when the access log is on.
    logged: Option<Logged>,
    matched: Option<MatchedPath>,
    note: AccessNote,
}

impl Observation {
    /// Starts observing `request` (which has the id `id`); handlers fill
    /// in [`Observation::note`].
    ///
    /// Whether the access line is written is decided here, by the log
    /// filter (`RUST_LOG`): once at start-up under portico's own
    /// subscriber, per request under any other.
    pub fn begin(request: &Request, id: &RequestId) -> Self {
        let (logged, direct) = match logging::access_log() {
            AccessLog::Off => (false, None),
            AccessLog::Direct(format) => (true, Some(format)),
            AccessLog::Tracing => (
                tracing::enabled!(target: "portico::access", tracing::Level::INFO),
                None,
            ),
        };
        let note = AccessNote::new(logged);
        Observation {
            started: Instant::now(),
            method: request.method().clone(),
            logged: logged.then(|| Logged {
                target: request.uri().path_and_query().cloned(),
                request_id: id.clone(),
                direct,
            }),
            matched: request.extensions().get::<MatchedPath>().cloned(),
            note,
        }
    }

    /// The note for the request's handler (in its extensions, or handed
    /// over directly).
    pub fn note(&self) -> &AccessNote {
        &self.note
    }

    /// Counts the request and writes its access log line.
    pub fn finish(self, app: &AppState, response: &Response) {
        let elapsed = self.started.elapsed();
        let status = response.status();
        let route = route_label(&self.note, self.matched.as_ref().map(MatchedPath::as_str));
        app.metrics.request(route, &self.method, status, elapsed);
        let Some(logged) = &self.logged else {
            return;
        };
        // As `Uri::path` gives it: empty for an authority-form target
        // (`CONNECT host:port`), which has no path.
        let path = logged_path(logged.target.as_ref().map_or("", |target| target.path()));
        let line = AccessLine {
            request_id: logged.request_id.as_str(),
            method: self.method.as_str(),
            path: &path,
            status: status.as_u16(),
            latency_ms: elapsed.as_secs_f64() * 1000.0,
            route,
            sub: self.note.user(),
        };
        match logged.direct {
            Some(format) => {
                logging::write_line(|out| access_line::write(format, &line, SystemTime::now(), out))
            }
            None => access_line::emit(&line),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_paths_are_cut_on_a_character_boundary() {
        let long = format!("/{}", "é".repeat(600));
        let logged = logged_path(&long);
        assert!(logged.len() <= MAX_LOGGED_PATH + "…".len());
        assert!(logged.ends_with('…'));
        assert_eq!(logged_path("/short"), "/short");
    }

    fn route(prefix: &str) -> Arc<RouteConfig> {
        let upstream = url::Url::parse("http://127.0.0.1:9").unwrap();
        Arc::new(RouteConfig::new(prefix, upstream))
    }

    #[test]
    fn the_noted_route_wins_over_the_matched_path() {
        let note = AccessNote::new(true);
        let handed = note.clone();
        assert_eq!(route_label(&note, None), "unmatched");
        assert_eq!(route_label(&note, Some("/healthz")), "/healthz");
        handed.set_route(&route("/app"));
        handed.set_user("alice");
        assert_eq!(route_label(&note, Some("/healthz")), "/app");
        assert_eq!(note.user(), Some("alice"));
    }

    #[test]
    fn the_user_is_kept_only_for_an_access_line() {
        let quiet = AccessNote::new(false);
        quiet.set_route(&route("/app"));
        quiet.set_user("alice");
        assert_eq!(
            quiet.route(),
            Some("/app"),
            "metrics need the route either way"
        );
        assert_eq!(quiet.user(), None);
    }
}
