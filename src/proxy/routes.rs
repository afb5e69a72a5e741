//! The route table: which upstream and which rules a request gets.
//!
//! The longest matching `path_prefix` wins; at equal length a route bound to
//! the request's host beats one for any host. A prefix matches at a segment
//! boundary ("/app" matches "/app" and "/app/x", not "/apple"), so a public
//! "/pub" never opens "/public-admin".

use std::borrow::Cow;
use std::sync::Arc;

use crate::config::RouteConfig;
use crate::request_path::{canonicalize, lenient_reading, match_unit, PathRefusal};

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

    /// The route for `host` (the request's Host, lower-case, maybe with
    /// port) and `path` (canonical: see [`Self::resolve`]).
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
            host_matches && prefix_matches(&route.path_prefix, path, route.case_insensitive)
        })
    }

    /// The one decision on a request's path: its canonical form (what the
    /// rules judge and the upstream receives) and its route. A path holding
    /// an encoded slash or `;` parameters passes only when its route opts in
    /// and a server reading it leniently (slashes decoded, parameters
    /// dropped) would land on the same route.
    pub fn resolve<'path>(
        &self,
        host: Option<&str>,
        raw_path: &'path str,
    ) -> Result<(Cow<'path, str>, &Arc<RouteConfig>), PathError> {
        let canonical = canonicalize(raw_path)?;
        let route = self.find(host, &canonical.path).ok_or(PathError::NoRoute)?;
        if canonical.needs_opt_in() {
            if canonical.encoded_slashes && !route.allow_encoded_slashes {
                return Err(PathRefusal::EncodedSlash.into());
            }
            if canonical.path_parameters && !route.allow_path_parameters {
                return Err(PathRefusal::PathParameters.into());
            }
            let reading = lenient_reading(&canonical.path)?;
            let same = self
                .find(host, &reading)
                .is_some_and(|other| Arc::ptr_eq(other, route));
            if !same {
                return Err(PathRefusal::Ambiguous.into());
            }
        }
        Ok((canonical.path, route))
    }
}

/// Why a request path has no route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// Refused as it is (400).
    #[error("{0}")]
    Refused(#[from] PathRefusal),
    /// Canonical, but no route covers it.
    #[error("no route matches the path")]
    NoRoute,
}

/// Whether `path` starts with `prefix` at a segment boundary ("/app"
/// matches "/app" and "/app/x", not "/apple"). Both are canonical; the
/// prefix is in its matching form, and an escape in the path of printable
/// ASCII that has no meaning to the path's structure counts as its
/// character (`%21` is `!`), as a decoding upstream reads it.
fn prefix_matches(prefix: &str, path: &str, case_insensitive: bool) -> bool {
    let (prefix, path) = (prefix.as_bytes(), path.as_bytes());
    let same = |left: u8, right: u8| {
        left == right || (case_insensitive && left.eq_ignore_ascii_case(&right))
    };
    // Nearly always: the bytes themselves match (or differ with no escape
    // in the path that could make them match).
    let rest = match path.get(..prefix.len()) {
        Some(head)
            if head
                .iter()
                .zip(prefix)
                .all(|(left, right)| same(*left, *right)) =>
        {
            &path[prefix.len()..]
        }
        _ if !path.contains(&b'%') => return false,
        _ => {
            let mut at = 0;
            for wanted in prefix {
                if at >= path.len() {
                    return false;
                }
                let (unit, next) = match_unit(path, at);
                if !same(unit, *wanted) {
                    return false;
                }
                at = next;
            }
            &path[at..]
        }
    };
    rest.is_empty() || prefix.ends_with(b"/") || rest.starts_with(b"/")
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

    fn admin_table(change: impl Fn(&mut RouteConfig)) -> RouteTable {
        let mut root = route("/", None, "http://root");
        change(&mut root);
        let mut admin = route("/admin", None, "http://admin");
        change(&mut admin);
        RouteTable::new(&[root, admin])
    }

    fn resolved(table: &RouteTable, path: &str) -> Result<(String, String), PathError> {
        table.resolve(None, path).map(|(path, route)| {
            (
                path.into_owned(),
                route.upstream.host_str().unwrap().to_string(),
            )
        })
    }

    /// The walk-arounds of issue 17: each lands on the admin route or is refused.
    const WALK_AROUNDS: [&str; 11] = [
        "/%61dmin/x",
        "/adm%69n/x",
        "//admin/x",
        "///admin/x",
        "/admin%2fx",
        "/admin%2Fx",
        "/%2fadmin/x",
        "/admin;x",
        "/admin;jsessionid=1/x",
        "/admin%5cx",
        "/admin%00/x",
    ];

    #[test]
    fn no_spelling_of_admin_reaches_the_root_route() {
        let table = admin_table(|_| {});
        for path in WALK_AROUNDS {
            match resolved(&table, path) {
                Ok((_, upstream)) => assert_eq!(upstream, "admin", "{path}"),
                Err(PathError::Refused(_)) => {}
                Err(other) => panic!("{path}: {other}"),
            }
        }
        assert_eq!(
            resolved(&table, "/%61dmin/x").unwrap(),
            ("/admin/x".to_string(), "admin".to_string())
        );
        assert_eq!(
            resolved(&table, "//admin/x").unwrap().0,
            "/admin/x",
            "the upstream gets the merged path"
        );
        assert_eq!(
            resolved(&table, "/admin%2fx"),
            Err(PathError::Refused(PathRefusal::EncodedSlash))
        );
        assert_eq!(
            resolved(&table, "/admin;x"),
            Err(PathError::Refused(PathRefusal::PathParameters))
        );
    }

    #[test]
    fn opted_in_forms_pass_only_when_every_reading_lands_on_the_same_route() {
        let table = admin_table(|route| {
            route.allow_encoded_slashes = true;
            route.allow_path_parameters = true;
        });
        for path in WALK_AROUNDS {
            match resolved(&table, path) {
                Ok((_, upstream)) => assert_eq!(upstream, "admin", "{path}"),
                Err(PathError::Refused(_)) => {}
                Err(other) => panic!("{path}: {other}"),
            }
        }
        // A reading on another route is refused even with the opt-ins.
        assert_eq!(
            resolved(&table, "/admin%2Fx"),
            Err(PathError::Refused(PathRefusal::Ambiguous))
        );
        assert_eq!(
            resolved(&table, "/admin;jsessionid=1/x"),
            Err(PathError::Refused(PathRefusal::Ambiguous))
        );
        // Within one route, opted-in forms pass as they came (canonical).
        assert_eq!(
            resolved(&table, "/admin/a%2fb").unwrap(),
            ("/admin/a%2Fb".to_string(), "admin".to_string())
        );
        assert_eq!(resolved(&table, "/admin/x;v=1").unwrap().0, "/admin/x;v=1");
        assert_eq!(
            resolved(&table, "/files/..;/admin"),
            Err(PathError::Refused(PathRefusal::DotSegment))
        );
    }

    #[test]
    fn a_route_may_allow_one_form_and_not_the_other() {
        let mut root = route("/", None, "http://root");
        root.allow_path_parameters = true;
        let table = RouteTable::new(&[root]);
        assert!(resolved(&table, "/x;jsessionid=1").is_ok());
        assert_eq!(
            resolved(&table, "/a%2Fb"),
            Err(PathError::Refused(PathRefusal::EncodedSlash))
        );
    }

    #[test]
    fn case_insensitive_routes_match_any_letter_case() {
        let plain = admin_table(|_| {});
        assert_eq!(resolved(&plain, "/ADMIN/x").unwrap().1, "root");
        let insensitive = admin_table(|route| route.case_insensitive = true);
        assert_eq!(resolved(&insensitive, "/ADMIN/x").unwrap().1, "admin");
        assert_eq!(resolved(&insensitive, "/%41dMiN/x").unwrap().1, "admin");
        // The upstream gets the path as sent (canonical), not lower-cased.
        assert_eq!(resolved(&insensitive, "/AdMin/x").unwrap().0, "/AdMin/x");
        assert_eq!(resolved(&insensitive, "/administrator").unwrap().1, "root");
    }

    #[test]
    fn escapes_of_punctuation_match_a_prefix_that_spells_it_out() {
        let mut special = route("/v1/models:predict", None, "http://special");
        special.path_prefix = crate::request_path::prefix_form("/v1/models%3Apredict").unwrap();
        let table = RouteTable::new(&[route("/", None, "http://root"), special]);
        assert_eq!(resolved(&table, "/v1/models:predict").unwrap().1, "special");
        assert_eq!(
            resolved(&table, "/v1/models%3apredict/x").unwrap().1,
            "special"
        );
        assert_eq!(resolved(&table, "/v1/models%3apredicts").unwrap().1, "root");
    }

    #[test]
    fn refusals_and_missing_routes_are_told_apart() {
        let table = RouteTable::new(&[route("/only", None, "http://x")]);
        assert_eq!(resolved(&table, "/else"), Err(PathError::NoRoute));
        assert_eq!(
            resolved(&table, "/only/../x"),
            Err(PathError::Refused(PathRefusal::DotSegment))
        );
    }
}
