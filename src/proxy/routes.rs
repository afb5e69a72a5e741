//! The route table: which upstream and which rules a request gets.
//!
//! The longest matching `path_prefix` wins; at equal length a route bound to
//! the request's host beats one for any host. A prefix matches at a segment
//! boundary ("/app" matches "/app" and "/app/x", not "/apple"), so a public
//! "/pub" never opens "/public-admin".

use std::sync::Arc;

use crate::config::RouteConfig;

#[derive(Debug, Clone)]
pub struct RouteTable {
    /// Sorted: longest prefix first, host-bound before any-host.
    routes: Vec<Arc<RouteConfig>>,
}

impl RouteTable {
    pub fn new(routes: &[RouteConfig]) -> Self {
        let mut routes: Vec<Arc<RouteConfig>> = routes.iter().cloned().map(Arc::new).collect();
        routes.sort_by(|left, right| {
            right
                .path_prefix
                .len()
                .cmp(&left.path_prefix.len())
                .then(right.host.is_some().cmp(&left.host.is_some()))
        });
        RouteTable { routes }
    }

    /// How many routes the table has.
    pub fn len(&self) -> usize {
        self.routes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    /// The route for `host` (the request's Host, lower-case, maybe with port) and `path`.
    pub fn find(&self, host: Option<&str>, path: &str) -> Option<&Arc<RouteConfig>> {
        self.routes.iter().find(|route| {
            let host_matches = match (&route.host, host) {
                (None, _) => true,
                (Some(wanted), Some(actual)) => {
                    wanted == actual
                        || (!wanted.contains(':')
                            && actual.split(':').next() == Some(wanted.as_str()))
                }
                (Some(_), None) => false,
            };
            host_matches && prefix_matches(&route.path_prefix, path)
        })
    }
}

fn prefix_matches(prefix: &str, path: &str) -> bool {
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || prefix.ends_with('/') || rest.starts_with('/'),
        None => false,
    }
}

/// True when a path has `.` or `..` segments, literally or percent-encoded:
/// such paths could match one route here and reach another upstream path.
pub fn has_dot_segments(path: &str) -> bool {
    path.split('/').any(is_dot_segment)
}

/// "." or "..", each dot literal or "%2e"/"%2E" (checked without allocating:
/// this runs on every request).
fn is_dot_segment(segment: &str) -> bool {
    let mut rest = segment.as_bytes();
    let mut dots = 0;
    while !rest.is_empty() {
        rest = match rest {
            [b'.', tail @ ..] => tail,
            [b'%', b'2', b'e' | b'E', tail @ ..] => tail,
            _ => return false,
        };
        dots += 1;
        if dots > 2 {
            return false;
        }
    }
    dots > 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(prefix: &str, host: Option<&str>, upstream: &str) -> RouteConfig {
        let mut route = RouteConfig::new(prefix, url::Url::parse(upstream).unwrap());
        route.host = host.map(str::to_string);
        route
    }

    fn table() -> RouteTable {
        RouteTable::new(&[
            route("/", None, "http://root"),
            route("/api", None, "http://api"),
            route("/api/v2/", None, "http://v2"),
            route("/api", Some("special.example"), "http://special"),
        ])
    }

    fn upstream_of(host: Option<&str>, path: &str) -> String {
        table()
            .find(host, path)
            .unwrap()
            .upstream
            .host_str()
            .unwrap()
            .to_string()
    }

    #[test]
    fn longest_prefix_wins() {
        assert_eq!(upstream_of(None, "/api/v2/things"), "v2");
        assert_eq!(upstream_of(None, "/api/v1"), "api");
        assert_eq!(upstream_of(None, "/other"), "root");
    }

    #[test]
    fn prefixes_match_whole_segments_only() {
        assert_eq!(upstream_of(None, "/api"), "api");
        assert_eq!(upstream_of(None, "/apiary"), "root");
    }

    #[test]
    fn a_host_bound_route_beats_an_any_host_route() {
        assert_eq!(upstream_of(Some("special.example"), "/api/x"), "special");
        assert_eq!(
            upstream_of(Some("special.example:8080"), "/api/x"),
            "special"
        );
        assert_eq!(upstream_of(Some("other.example"), "/api/x"), "api");
    }

    #[test]
    fn no_route_when_nothing_matches() {
        let table = RouteTable::new(&[route("/only", None, "http://x")]);
        assert!(table.find(None, "/else").is_none());
    }

    #[test]
    fn dot_segments_are_detected_in_any_encoding() {
        assert!(has_dot_segments("/public/../admin"));
        assert!(has_dot_segments("/public/%2e%2e/admin"));
        assert!(has_dot_segments("/public/%2E./admin"));
        assert!(has_dot_segments("/./x"));
        assert!(has_dot_segments("/a/.%2e"));
        assert!(has_dot_segments("/a/%2e"));
        assert!(!has_dot_segments("/files/a..b/c.txt"));
        assert!(!has_dot_segments("/a/.../b"));
        assert!(!has_dot_segments("/a/%2e%2e%2e"));
        assert!(!has_dot_segments("/a/%2f/b"));
        assert!(!has_dot_segments("/a/%2"));
        assert!(!has_dot_segments("/a//b/"));
    }
}
