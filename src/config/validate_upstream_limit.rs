//! `max_connections`, `max_pending`, `pending_timeout`: the limit of each
//! upstream origin. `[server]` gives the default; a route may set its
//! upstream's own. Routes to one origin share one limit, so two routes that
//! set different values for it are refused (which one would hold?).

use std::collections::BTreeMap;
use std::time::Duration;

use url::Url;

use super::duration::DURATION_FIX;
use super::errors::{quoted, Problems};
use super::raw::{RawRoute, RawServer};
use super::types::UpstreamLimit;
use super::validate::duration;

/// The most connections one upstream may be given.
pub(crate) const MOST_CONNECTIONS: i64 = 100_000;
/// The most requests that may wait for one upstream.
pub(crate) const MOST_PENDING: i64 = 1_000_000;

/// `[server]`'s keys: the limit of upstreams whose routes set none.
pub(crate) fn server_limit(problems: &mut Problems, raw: &RawServer) -> Option<UpstreamLimit> {
    let max_connections = max_connections(problems, "server.max_connections", raw.max_connections);
    let max_pending = max_pending(problems, "server.max_pending", raw.max_pending);
    let pending_timeout = pending_timeout(problems, "server.pending_timeout", &raw.pending_timeout);
    Some(UpstreamLimit {
        max_connections: max_connections?,
        max_pending: max_pending?,
        pending_timeout: pending_timeout?,
    })
}

/// Each route's effective limit (by index): its own keys, else those another
/// route to the same origin sets, else `defaults`. None when any value is
/// unusable or two routes to one origin disagree (all of it reported).
pub(crate) fn route_limits(
    problems: &mut Problems,
    defaults: UpstreamLimit,
    raw: &[RawRoute],
) -> Option<Vec<UpstreamLimit>> {
    let mut valid = true;
    // Per origin, per key: the first route that set it, and the value.
    let mut set: BTreeMap<String, Explicit> = BTreeMap::new();
    let mut origins = Vec::with_capacity(raw.len());
    for (index, route) in raw.iter().enumerate() {
        let key = |name: &str| format!("routes[{index}].{name}");
        let connections = route
            .max_connections
            .map(|value| max_connections(problems, &key("max_connections"), value));
        let pending = route
            .max_pending
            .map(|value| max_pending(problems, &key("max_pending"), value));
        let timeout = route
            .pending_timeout
            .as_deref()
            .map(|text| pending_timeout(problems, &key("pending_timeout"), text));
        valid &= !matches!(connections, Some(None))
            && !matches!(pending, Some(None))
            && !matches!(timeout, Some(None));
        // A bad upstream URL is reported by the route's own checks.
        let Some(origin) = Url::parse(&route.upstream)
            .ok()
            .map(|url| url.origin().ascii_serialization())
        else {
            origins.push(None);
            continue;
        };
        let explicit = set.entry(origin.clone()).or_default();
        let shown_timeout = || quoted(route.pending_timeout.as_deref().unwrap_or_default());
        valid &= agree(
            problems,
            (&origin, index, "max_connections"),
            &mut explicit.max_connections,
            connections
                .flatten()
                .map(|value| (value, value.to_string())),
        );
        valid &= agree(
            problems,
            (&origin, index, "max_pending"),
            &mut explicit.max_pending,
            pending.flatten().map(|value| (value, value.to_string())),
        );
        valid &= agree(
            problems,
            (&origin, index, "pending_timeout"),
            &mut explicit.pending_timeout,
            timeout.flatten().map(|value| (value, shown_timeout())),
        );
        origins.push(Some(origin));
    }
    if !valid {
        return None;
    }
    Some(
        origins
            .iter()
            .map(|origin| {
                let explicit = origin.as_ref().and_then(|origin| set.get(origin));
                let pick = |chosen: Option<usize>, default: usize| chosen.unwrap_or(default);
                UpstreamLimit {
                    max_connections: pick(
                        explicit.and_then(|set| set.max_connections.as_ref().map(|first| first.1)),
                        defaults.max_connections,
                    ),
                    max_pending: pick(
                        explicit.and_then(|set| set.max_pending.as_ref().map(|first| first.1)),
                        defaults.max_pending,
                    ),
                    pending_timeout: explicit
                        .and_then(|set| set.pending_timeout.as_ref().map(|first| first.1))
                        .unwrap_or(defaults.pending_timeout),
                }
            })
            .collect(),
    )
}

/// The first route (index) to set a key for one origin, its value, and the
/// value as written.
type First<T> = Option<(usize, T, String)>;

/// The values routes to one origin set.
#[derive(Default)]
struct Explicit {
    max_connections: First<usize>,
    max_pending: First<usize>,
    pending_timeout: First<Duration>,
}

/// Records `value` (with how it is written) for route `index`'s key `name`,
/// or reports that it differs from the one an earlier route to `origin` set.
fn agree<T: PartialEq + Copy>(
    problems: &mut Problems,
    (origin, index, name): (&str, usize, &str),
    first: &mut First<T>,
    value: Option<(T, String)>,
) -> bool {
    let Some((value, shown)) = value else {
        return true;
    };
    match first {
        None => {
            *first = Some((index, value, shown));
            true
        }
        Some((_, earlier, _)) if *earlier == value => true,
        Some((earlier_index, _, earlier_shown)) => {
            problems.report(
                format!("routes[{index}].{name}"),
                shown,
                format!(
                    "differs from routes[{earlier_index}].{name} = {earlier_shown}, and both \
                     routes go to {origin}, which has one limit"
                ),
                format!(
                    "set the same {name} on both routes, or on only one of them (the other \
                     routes to that upstream follow it)"
                ),
            );
            false
        }
    }
}

fn max_connections(problems: &mut Problems, key: &str, value: i64) -> Option<usize> {
    if (1..=MOST_CONNECTIONS).contains(&value) {
        return usize::try_from(value).ok();
    }
    problems.report(
        key,
        value.to_string(),
        format!(
            "must be between 1 and {MOST_CONNECTIONS} (the most connections open to one upstream)"
        ),
        "write e.g. max_connections = 1024 (Envoy's default), or what the upstream accepts",
    );
    None
}

fn max_pending(problems: &mut Problems, key: &str, value: i64) -> Option<usize> {
    if (0..=MOST_PENDING).contains(&value) {
        return usize::try_from(value).ok();
    }
    problems.report(
        key,
        value.to_string(),
        format!(
            "must be between 0 and {MOST_PENDING} (the most requests waiting for a connection \
             to one upstream; 0: none wait)"
        ),
        "write e.g. max_pending = 1024 (Envoy's default), or 0 to answer 503 at once when all \
         connections are busy",
    );
    None
}

fn pending_timeout(problems: &mut Problems, key: &str, text: &str) -> Option<Duration> {
    let parsed = duration(problems, key, text, false)?;
    if parsed.is_zero() {
        problems.report(
            key,
            quoted(text),
            "must be longer than zero",
            format!(
                "{DURATION_FIX}; to answer 503 at once instead of waiting, set max_pending = 0"
            ),
        );
        return None;
    }
    Some(parsed)
}

#[cfg(test)]
#[allow(clippy::expect_used, clippy::panic, clippy::unwrap_used)]
mod tests {
    use std::time::Duration;

    use super::super::parse;
    use super::super::test_support::{
        environment, errors_of, minimal, minimal_with, no_environment, problem_for,
    };
    use super::*;

    /// [`minimal`] with these `[[routes]]` blocks instead of its one.
    fn with_routes(server: &str, routes: &[&str]) -> String {
        let text = minimal_with("[server]", server);
        let (head, _) = text.split_once("[[routes]]").expect("minimal has a route");
        let mut text = head.to_owned();
        for route in routes {
            text.push_str(&format!("[[routes]]\n{route}\n"));
        }
        text
    }

    #[test]
    fn the_defaults_are_envoys_and_five_seconds() {
        let config = parse(&minimal(), &no_environment()).expect("valid");
        let expected = UpstreamLimit {
            max_connections: 1024,
            max_pending: 1024,
            pending_timeout: Duration::from_secs(5),
        };
        assert_eq!(config.server.upstream_limit, expected);
        assert_eq!(config.routes[0].upstream_limit, expected);
        assert_eq!(UpstreamLimit::default(), expected);
    }

    #[test]
    fn routes_to_one_upstream_share_the_limit_one_of_them_sets() {
        let text = with_routes(
            "max_connections = 64\nmax_pending = 0\npending_timeout = \"2s\"",
            &[
                "path_prefix = \"/a\"\nupstream = \"http://app:8080/a\"\nmax_connections = 8",
                "path_prefix = \"/b\"\nupstream = \"http://app:8080/b\"\npending_timeout = \"250ms\"",
                "path_prefix = \"/c\"\nupstream = \"http://other:8080\"",
            ],
        );
        let config = parse(&text, &no_environment()).expect("valid");
        let shared = UpstreamLimit {
            max_connections: 8,
            max_pending: 0,
            pending_timeout: Duration::from_millis(250),
        };
        assert_eq!(config.routes[0].upstream_limit, shared);
        assert_eq!(config.routes[1].upstream_limit, shared);
        assert_eq!(
            config.routes[2].upstream_limit,
            UpstreamLimit {
                max_connections: 64,
                max_pending: 0,
                pending_timeout: Duration::from_secs(2),
            },
            "another upstream keeps [server]'s"
        );
        let rendered = crate::config::render_effective(&config);
        assert!(rendered.contains("max_connections = 8\n"), "{rendered}");
        assert!(
            rendered.contains("pending_timeout = \"250ms\""),
            "{rendered}"
        );
    }

    #[test]
    fn two_routes_to_one_upstream_that_disagree_are_refused_naming_both() {
        let text = with_routes(
            "",
            &[
                "path_prefix = \"/a\"\nupstream = \"http://app:8080\"\nmax_connections = 8",
                "path_prefix = \"/b\"\nupstream = \"http://app:8080/b\"\nmax_connections = 16\n\
                 pending_timeout = \"1s\"",
                "path_prefix = \"/c\"\nupstream = \"http://app:8080/c\"\npending_timeout = \"2s\"",
            ],
        );
        let errors = errors_of(&text, &[]);
        let error = errors
            .for_key("routes[1].max_connections")
            .expect("reported");
        assert_eq!(error.value, "16");
        assert!(
            error.problem.contains("routes[0].max_connections = 8"),
            "{error}"
        );
        assert!(error.problem.contains("http://app:8080"), "{error}");
        assert!(error.fix.contains("same max_connections"), "{error}");
        let error = errors
            .for_key("routes[2].pending_timeout")
            .expect("reported");
        assert_eq!(error.value, "\"2s\"");
        assert!(
            error.problem.contains("routes[1].pending_timeout = \"1s\""),
            "{error}"
        );
    }

    #[test]
    fn values_out_of_range_are_refused_with_the_key_value_and_fix() {
        let text = minimal_with(
            "[server]",
            "max_connections = 0\nmax_pending = -1\npending_timeout = \"0s\"",
        );
        let errors = errors_of(&text, &[]);
        let error = errors.for_key("server.max_connections").expect("reported");
        assert_eq!(error.value, "0");
        assert!(error.problem.contains("between 1 and 100000"), "{error}");
        assert!(error.fix.contains("max_connections = 1024"), "{error}");
        let error = errors.for_key("server.max_pending").expect("reported");
        assert_eq!(error.value, "-1");
        assert!(error.fix.contains("max_pending = 1024"), "{error}");
        let error = errors.for_key("server.pending_timeout").expect("reported");
        assert_eq!(error.value, "\"0s\"");
        assert!(error.fix.contains("max_pending = 0"), "{error}");

        let text = minimal_with(
            "[[routes]]",
            "max_connections = 200000\npending_timeout = \"soon\"",
        );
        let errors = errors_of(&text, &[]);
        assert_eq!(
            errors
                .for_key("routes[0].max_connections")
                .expect("reported")
                .value,
            "200000"
        );
        let error = errors
            .for_key("routes[0].pending_timeout")
            .expect("reported");
        assert!(error.problem.contains("not a duration"), "{error}");
    }

    #[test]
    fn a_number_in_quotes_or_with_a_fraction_is_the_wrong_kind() {
        let error = problem_for(
            &minimal_with("[server]", "max_connections = \"1024\""),
            "server.max_connections",
        );
        assert!(error.problem.contains("expected a whole number"), "{error}");
        assert!(error.fix.contains("max_connections = 100"), "{error}");
        problem_for(
            &minimal_with("[[routes]]", "max_pending = 1.5"),
            "routes[0].max_pending",
        );
    }

    #[test]
    fn the_server_defaults_can_come_from_the_environment() {
        let config = parse(
            &minimal(),
            &environment(&[
                ("PORTICO_SERVER__MAX_CONNECTIONS", "4096"),
                ("PORTICO_SERVER__PENDING_TIMEOUT", "1s"),
            ]),
        )
        .expect("valid");
        assert_eq!(config.server.upstream_limit.max_connections, 4096);
        assert_eq!(config.routes[0].upstream_limit.max_connections, 4096);
        assert_eq!(
            config.routes[0].upstream_limit.pending_timeout,
            Duration::from_secs(1)
        );
        let errors = errors_of(&minimal(), &[("PORTICO_SERVER__MAX_PENDING", "many")]);
        assert!(errors.for_key("server.max_pending").is_some(), "{errors}");
    }
}
