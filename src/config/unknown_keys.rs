//! No key may be unknown: a misspelt key must never be silently ignored
//! (`session.tll` would leave the default lifetime in force without anyone
//! noticing).
//!
//! serde_ignored hands us every key serde skipped; each becomes a problem
//! naming the full key (`routes[0].uppstream`) and, when one is near, the
//! known key that was probably meant.

use super::errors::{Problems, MASKED};
use super::raw::{self, RawConfig, SCHEMA};
use super::value_kinds::shown;

/// Deserialises the raw configuration, reporting every key serde ignored.
/// `None` only when the document's shape is beyond repair (reported too).
pub(crate) fn deserialize_reporting_unknown(
    table: toml::Table,
    problems: &mut Problems,
) -> Option<RawConfig> {
    let document = toml::Value::Table(table);
    let mut ignored: Vec<Vec<Segment>> = Vec::new();
    let result = serde_ignored::deserialize(document.clone(), |path| ignored.push(segments(&path)));
    for path in &ignored {
        report_unknown(path, &document, problems);
    }
    match result {
        Ok(raw) => Some(raw),
        Err(error) => {
            problems.report(
                "configuration",
                "",
                format!("cannot be read: {}", error.message()),
                "lay the file out as [server], [oidc] and [session] tables plus [[routes]] tables",
            );
            None
        }
    }
}

/// One step of a key path.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Key(String),
    Index(usize),
}

fn segments(path: &serde_ignored::Path<'_>) -> Vec<Segment> {
    use serde_ignored::Path;
    match path {
        Path::Root => Vec::new(),
        Path::Seq { parent, index } => {
            let mut list = segments(parent);
            list.push(Segment::Index(*index));
            list
        }
        Path::Map { parent, key } => {
            let mut list = segments(parent);
            list.push(Segment::Key(key.clone()));
            list
        }
        Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => segments(parent),
    }
}

/// `routes[0].upstream` style.
fn key_path(path: &[Segment]) -> String {
    let mut text = String::new();
    for segment in path {
        match segment {
            Segment::Key(key) => {
                if !text.is_empty() {
                    text.push('.');
                }
                text.push_str(key);
            }
            Segment::Index(index) => text.push_str(&format!("[{index}]")),
        }
    }
    text
}

fn lookup<'a>(document: &'a toml::Value, path: &[Segment]) -> Option<&'a toml::Value> {
    path.iter()
        .try_fold(document, |value, segment| match segment {
            Segment::Key(key) => value.get(key.as_str()),
            Segment::Index(index) => value.get(*index),
        })
}

/// Tables inside a section whose keys are fixed: a typo inside one is
/// matched against that table's keys, not the section's.
const NESTED_TABLES: &[(&str, &[&str])] = &[
    ("require_tenant_roles", &["tenant", "roles"]),
    ("extra_jwt_issuers", &["issuer", "jwks_url", "audiences"]),
];

/// The fixed table the unknown key sits in (`routes[0].require_tenant_roles`
/// → its keys), when it sits in one.
fn nested_table(path: &[Segment]) -> Option<(&'static str, &'static [&'static str])> {
    let keys: Vec<&str> = path
        .iter()
        .filter_map(|segment| match segment {
            Segment::Key(key) => Some(key.as_str()),
            Segment::Index(_) => None,
        })
        .collect();
    let parent = keys
        .len()
        .checked_sub(2)
        .and_then(|index| keys.get(index))?;
    if keys.len() < 3 {
        return None;
    }
    NESTED_TABLES
        .iter()
        .find(|(name, _)| name == parent)
        .copied()
}

fn report_unknown(path: &[Segment], document: &toml::Value, problems: &mut Problems) {
    let key = key_path(path);
    let name = match path.last() {
        Some(Segment::Key(name)) => name.as_str(),
        _ => key.as_str(),
    };
    let section = match path.first() {
        Some(Segment::Key(first)) if path.len() > 1 => raw::section(first),
        _ => None,
    };
    let nested = nested_table(path);
    let (problem, suggestion) = match (section, nested) {
        (None, _) => ("unknown section", suggest_section(name)),
        (Some(_), Some((_, keys))) => (
            "unknown key",
            closest(name, keys.iter().copied()).map(str::to_owned),
        ),
        (Some(section), None) => ("unknown key", suggest_key(section, name)),
    };
    let secret = raw::is_secret_key(name) || suggestion.as_deref().is_some_and(raw::is_secret_key);
    let value = match lookup(document, path) {
        Some(value) if secret && !value.is_table() => MASKED.to_owned(),
        Some(value) => shown(name, value),
        None => String::new(),
    };
    let fix = match (&suggestion, section, nested) {
        (Some(suggestion), _, _) => format!("did you mean `{suggestion}`?"),
        (None, Some(_), Some((table, keys))) => {
            format!("remove it; `{table}` takes: {}", keys.join(", "))
        }
        (None, Some(section), None) => format!(
            "remove it; [{}] takes: {}",
            section.name,
            section.key_names().collect::<Vec<_>>().join(", ")
        ),
        (None, None, _) => {
            "remove it; the sections are [server], [oidc], [session], [telemetry] and [[routes]]"
                .to_owned()
        }
    };
    problems.report(key, value, problem, fix);
    // One typo, one error: the key that was meant is missing because it was
    // misspelt, so "missing" or "empty" reports about it would repeat the news.
    if let Some(meant) = suggestion
        .as_deref()
        .and_then(|suggestion| meant_path(path, suggestion))
    {
        if lookup(document, &meant).is_none() {
            problems.settle(key_path(&meant));
        }
    }
}

/// The full path of the suggested key: a sibling of the misspelt one, or
/// `section.key` when the suggestion names another section.
fn meant_path(path: &[Segment], suggestion: &str) -> Option<Vec<Segment>> {
    match suggestion.split_once('.') {
        Some((section, key)) => Some(vec![
            Segment::Key(section.to_owned()),
            Segment::Key(key.to_owned()),
        ]),
        None if path.len() > 1 => {
            let mut meant = path[..path.len() - 1].to_vec();
            meant.push(Segment::Key(suggestion.to_owned()));
            Some(meant)
        }
        None => None,
    }
}

fn suggest_section(name: &str) -> Option<String> {
    closest(name, SCHEMA.iter().map(|section| section.name)).map(str::to_owned)
}

/// The nearest key in the same section, else the same key in another section.
pub(crate) fn suggest_key(section: &raw::Section, name: &str) -> Option<String> {
    if let Some(near) = closest(name, section.key_names()) {
        return Some(near.to_owned());
    }
    SCHEMA
        .iter()
        .filter(|other| !other.repeated && other.kind_of(name).is_some())
        .map(|other| format!("{}.{name}", other.name))
        .next()
}

/// The candidate nearest to `name` when it is near enough to be a typo.
pub(crate) fn closest<'a>(
    name: &str,
    candidates: impl Iterator<Item = &'a str>,
) -> Option<&'a str> {
    let name = name.to_ascii_lowercase();
    candidates
        .map(|candidate| (edit_distance(&name, candidate), candidate))
        .filter(|(distance, candidate)| *distance <= (candidate.len() / 3).clamp(1, 3))
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| candidate)
}

/// Optimal-string-alignment distance: insertions, deletions, substitutions
/// and swaps of neighbours each cost one ("clinet" is one step from "client").
fn edit_distance(left: &str, right: &str) -> usize {
    let left: Vec<char> = left.chars().collect();
    let right: Vec<char> = right.chars().collect();
    let width = right.len() + 1;
    let mut table = vec![0usize; (left.len() + 1) * width];
    for (row, cell) in table.iter_mut().step_by(width).enumerate() {
        *cell = row;
    }
    for (column, cell) in table.iter_mut().take(width).enumerate() {
        *cell = column;
    }
    for row in 1..=left.len() {
        for column in 1..=right.len() {
            let cost = usize::from(left[row - 1] != right[column - 1]);
            let mut best = (table[(row - 1) * width + column] + 1)
                .min(table[row * width + column - 1] + 1)
                .min(table[(row - 1) * width + column - 1] + cost);
            if row > 1
                && column > 1
                && left[row - 1] == right[column - 2]
                && left[row - 2] == right[column - 1]
            {
                best = best.min(table[(row - 2) * width + column - 2] + 1);
            }
            table[row * width + column] = best;
        }
    }
    table[left.len() * width + right.len()]
}

#[cfg(test)]
#[allow(clippy::expect_used, clippy::panic, clippy::unwrap_used)]
mod tests {
    use super::super::test_support::check_keys_of;
    use super::*;

    #[test]
    fn misspelt_key_is_reported_with_suggestion() {
        let (_, errors) = check_keys_of("[session]\ntll = \"2h\"\n");
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].key, "session.tll");
        assert_eq!(errors[0].value, "\"2h\"");
        assert_eq!(errors[0].problem, "unknown key");
        assert_eq!(errors[0].fix, "did you mean `ttl`?");
    }

    #[test]
    fn misspelt_route_key_is_named_with_its_index() {
        let (_, errors) = check_keys_of(
            "[[routes]]\nupstream = \"http://a\"\n[[routes]]\nuppstream = \"http://b\"\n",
        );
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].key, "routes[1].uppstream");
        assert_eq!(errors[0].fix, "did you mean `upstream`?");
    }

    #[test]
    fn every_unknown_key_is_reported() {
        let (raw, errors) = check_keys_of(
            "[sever]\nlisten = \"x\"\n[oidc]\nclinet_id = \"a\"\nclient_secert = \"hunter2\"\n\
             [server]\nttl = \"1h\"\nzzzzzz = 1\n",
        );
        assert!(raw.is_some());
        let keys: Vec<&str> = errors.iter().map(|error| error.key.as_str()).collect();
        assert_eq!(keys.len(), 5, "{errors:?}");
        for expected in [
            "sever",
            "oidc.clinet_id",
            "oidc.client_secert",
            "server.ttl",
            "server.zzzzzz",
        ] {
            assert!(keys.contains(&expected), "{expected} missing from {keys:?}");
        }
        let by_key = |key: &str| {
            errors
                .iter()
                .find(|error| error.key == key)
                .expect("reported")
        };
        assert_eq!(by_key("sever").fix, "did you mean `server`?");
        assert_eq!(by_key("oidc.clinet_id").fix, "did you mean `client_id`?");
        assert_eq!(by_key("oidc.client_secert").value, MASKED);
        assert_eq!(by_key("server.ttl").fix, "did you mean `session.ttl`?");
        assert!(by_key("server.zzzzzz")
            .fix
            .starts_with("remove it; [server] takes: listen"));
    }

    #[test]
    fn a_typo_inside_a_nested_table_suggests_that_tables_key() {
        let (_, errors) = check_keys_of(
            "[[routes]]\nupstream = \"http://a\"\n\
             require_tenant_roles = { tenant = \"t1\", role = [\"admin\"] }\n",
        );
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].key, "routes[0].require_tenant_roles.role");
        assert_eq!(errors[0].fix, "did you mean `roles`?");
        let (_, errors) = check_keys_of(
            "[[routes]]\nupstream = \"http://a\"\n\
             require_tenant_roles = { tenant = \"t1\", zzzzzz = 1 }\n",
        );
        assert_eq!(
            errors[0].fix,
            "remove it; `require_tenant_roles` takes: tenant, roles"
        );
        let (_, errors) =
            check_keys_of("[oidc]\n[[oidc.extra_jwt_issuers]]\nissuer = \"a\"\njwks_ulr = \"b\"\n");
        assert_eq!(errors[0].fix, "did you mean `jwks_url`?");
    }

    #[test]
    fn one_typo_gives_one_error_even_for_a_required_key() {
        use super::super::test_support::{errors_of, minimal};
        let text = minimal().replace("client_id = \"portico\"", "clientid = \"portico\"");
        let errors = errors_of(&text, &[]);
        assert_eq!(errors.errors.len(), 1, "{errors}");
        assert_eq!(errors.errors[0].key, "oidc.clientid");
        assert_eq!(errors.errors[0].fix, "did you mean `client_id`?");

        let text = minimal().replace(
            "upstream = \"http://127.0.0.1:9100\"",
            "upstream = \"http://127.0.0.1:9100\"\n\
             require_tenant_roles = { tenant = \"t1\", role = [\"admin\"] }",
        );
        let errors = errors_of(&text, &[]);
        assert_eq!(errors.errors.len(), 1, "{errors}");
        assert_eq!(errors.errors[0].fix, "did you mean `roles`?");

        // Both spellings present: the real key's own problem is still reported.
        let text = minimal().replace(
            "client_id = \"portico\"",
            "client_id = \"\"\nclientid = \"portico\"",
        );
        assert_eq!(errors_of(&text, &[]).errors.len(), 2);
    }

    #[test]
    fn edit_distance_counts_swaps_as_one_step() {
        assert_eq!(edit_distance("tll", "ttl"), 1);
        assert_eq!(edit_distance("clinet", "client"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(
            closest("listn", ["listen", "log_format"].into_iter()),
            Some("listen")
        );
        assert_eq!(closest("completely_else", ["listen"].into_iter()), None);
    }
}
