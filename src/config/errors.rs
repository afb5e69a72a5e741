//! Configuration problems, and how they are shown to the person who has to fix them.
//!
//! A typo in a gateway's config can silently switch a check off, so portico
//! refuses to start on any problem, and it reports all of them in one go:
//! every pass (environment, key shapes, unknown keys, validation) pushes into
//! one [`Problems`] list instead of returning at the first error. Each entry
//! names the key, shows the value as written (secrets as `"***"`) and says how
//! to fix it, so `portico check` output is a to-do list.

use std::fmt;

/// The value shown in place of a secret.
pub(crate) const MASKED: &str = "\"***\"";

/// One problem with one key.
///
/// `value` is the TOML rendering of what was found (`"text"`, `["a", "b"]`,
/// `true`), with secrets shown as `"***"`. It is empty when the problem is not
/// about a value (a syntax error, an unreadable file); `key` then says where
/// the problem is instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub key: String,
    pub value: String,
    pub problem: String,
    pub fix: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.value.is_empty() {
            write!(formatter, "{}: {}", self.key, self.problem)?;
        } else {
            write!(formatter, "{} = {}: {}", self.key, self.value, self.problem)?;
        }
        if !self.fix.is_empty() {
            write!(formatter, " — fix: {}", self.fix)?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// Every problem found in one configuration, in the order they were found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", render_list(.errors))]
pub struct ConfigErrors {
    pub errors: Vec<ConfigError>,
}

impl ConfigErrors {
    /// A list holding a single problem.
    pub fn single(error: ConfigError) -> Self {
        ConfigErrors {
            errors: vec![error],
        }
    }

    /// The problem reported for `key`, if any (first one).
    pub fn for_key(&self, key: &str) -> Option<&ConfigError> {
        self.errors.iter().find(|error| error.key == key)
    }
}

fn render_list(errors: &[ConfigError]) -> String {
    let count = errors.len();
    let noun = if count == 1 { "problem" } else { "problems" };
    let mut text = format!("found {count} {noun} in the configuration:");
    for error in errors {
        text.push('\n');
        text.push_str(&error.to_string());
    }
    text
}

/// The list every pass reports into.
#[derive(Debug, Default)]
pub(crate) struct Problems {
    errors: Vec<ConfigError>,
    /// Keys whose value was unusable (wrong type): later reports about the
    /// same key, or about keys inside it, would only repeat the news.
    settled_keys: Vec<String>,
}

impl Problems {
    pub(crate) fn report(
        &mut self,
        key: impl Into<String>,
        value: impl Into<String>,
        problem: impl Into<String>,
        fix: impl Into<String>,
    ) {
        let key = key.into();
        if self.is_settled(&key) {
            return;
        }
        self.errors.push(ConfigError {
            key,
            value: value.into(),
            problem: problem.into(),
            fix: fix.into(),
        });
    }

    /// Reports a problem and silences any later report about the same key.
    pub(crate) fn report_and_settle(
        &mut self,
        key: impl Into<String>,
        value: impl Into<String>,
        problem: impl Into<String>,
        fix: impl Into<String>,
    ) {
        let key = key.into();
        self.report(key.clone(), value, problem, fix);
        self.settled_keys.push(key);
    }

    /// Silences later reports about `key` (and keys inside it).
    pub(crate) fn settle(&mut self, key: impl Into<String>) {
        self.settled_keys.push(key.into());
    }

    fn is_settled(&self, key: &str) -> bool {
        self.settled_keys
            .iter()
            .any(|settled| is_within(key, settled))
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }

    /// Adds "(set by environment variable …)" to problems about keys that an
    /// environment variable set, so the reader looks in the right place.
    pub(crate) fn note_origins(&mut self, origins: &std::collections::BTreeMap<String, String>) {
        for error in &mut self.errors {
            let origin = origins.iter().find(|(key, _)| is_within(&error.key, key));
            if let Some((_, variable)) = origin {
                if !error.problem.contains(variable.as_str()) {
                    error
                        .problem
                        .push_str(&format!(" (set by environment variable {variable})"));
                }
            }
        }
    }

    /// Orders problems as the file is laid out: problems not about one key
    /// (environment variable names) first, then `[server]`, `[oidc]`,
    /// `[session]`, `[[routes]]`; discovery order within each.
    pub(crate) fn sort_by_section(&mut self) {
        const ORDER: &[&str] = &["server", "oidc", "session", "routes", "telemetry"];
        self.errors.sort_by_key(|error| {
            let section = error.key.split(['.', '[']).next().unwrap_or_default();
            ORDER
                .iter()
                .position(|name| *name == section)
                .map_or(0, |position| position + 1)
        });
    }

    pub(crate) fn into_errors(self) -> Vec<ConfigError> {
        self.errors
    }
}

/// Whether `key` is `outer` or a key inside it (`outer.x`, `outer[0]`).
fn is_within(key: &str, outer: &str) -> bool {
    match key.strip_prefix(outer) {
        Some(rest) => rest.is_empty() || rest.starts_with('.') || rest.starts_with('['),
        None => false,
    }
}

/// A string as shown in an error: a TOML literal (`"text"`, with quotes and
/// escapes), with any password inside a URL masked.
pub(crate) fn quoted(text: &str) -> String {
    toml::Value::String(mask_url_password(text)).to_string()
}

/// A TOML value as shown in an error, URL passwords in its strings masked.
pub(crate) fn shown_value(value: &toml::Value) -> String {
    fn masked(value: &toml::Value) -> toml::Value {
        match value {
            toml::Value::String(text) => toml::Value::String(mask_url_password(text)),
            toml::Value::Array(items) => toml::Value::Array(items.iter().map(masked).collect()),
            toml::Value::Table(entries) => toml::Value::Table(
                entries
                    .iter()
                    .map(|(name, entry)| (name.clone(), masked(entry)))
                    .collect(),
            ),
            other => other.clone(),
        }
    }
    masked(value).to_string()
}

/// A list of strings as shown in an error: `["a", "b"]`.
pub(crate) fn quoted_list(items: &[String]) -> String {
    shown_value(&toml::Value::Array(
        items.iter().cloned().map(toml::Value::String).collect(),
    ))
}

/// A URL-like string with any password (userinfo or a `…Password=` query
/// parameter) replaced by `***`. Works on text that is not a valid URL too,
/// since the value may be shown precisely because it did not parse.
pub(crate) fn mask_url_password(text: &str) -> String {
    let Some(scheme_end) = text.find("://") else {
        return text.to_owned();
    };
    let authority_start = scheme_end + 3;
    let authority_length = text[authority_start..]
        .find(['/', '?', '#'])
        .unwrap_or(text.len() - authority_start);
    let authority = &text[authority_start..authority_start + authority_length];
    let mut masked = text[..authority_start].to_owned();
    match authority.rfind('@') {
        Some(at) => {
            let userinfo = &authority[..at];
            if let Some(colon) = userinfo.find(':') {
                masked.push_str(&userinfo[..=colon]);
            }
            masked.push_str("***");
            masked.push_str(&authority[at..]);
        }
        None => masked.push_str(authority),
    }
    let rest = &text[authority_start + authority_length..];
    masked.push_str(&mask_password_parameters(rest));
    masked
}

/// Masks the values of query parameters whose name ends in "password".
fn mask_password_parameters(rest: &str) -> String {
    let Some(question) = rest.find('?') else {
        return rest.to_owned();
    };
    let (before, query) = rest.split_at(question + 1);
    let (query, fragment) = match query.find('#') {
        Some(hash) => query.split_at(hash),
        None => (query, ""),
    };
    let pairs: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, _)) if name.to_ascii_lowercase().ends_with("password") => {
                format!("{name}=***")
            }
            _ => pair.to_owned(),
        })
        .collect();
    format!("{before}{}{fragment}", pairs.join("&"))
}

#[cfg(test)]
#[allow(clippy::expect_used, clippy::panic, clippy::unwrap_used)]
mod tests {
    use super::*;

    fn error(key: &str, value: &str) -> ConfigError {
        ConfigError {
            key: key.to_owned(),
            value: value.to_owned(),
            problem: "is wrong".to_owned(),
            fix: "make it right".to_owned(),
        }
    }

    #[test]
    fn display_counts_problems_and_prints_one_line_each() {
        let errors = ConfigErrors {
            errors: vec![
                error("server.listen", "\"x\""),
                error("line 3, column 1", ""),
            ],
        };
        let text = errors.to_string();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0], "found 2 problems in the configuration:");
        assert_eq!(
            lines[1],
            "server.listen = \"x\": is wrong — fix: make it right"
        );
        assert_eq!(lines[2], "line 3, column 1: is wrong — fix: make it right");
    }

    #[test]
    fn a_single_problem_is_counted_in_the_singular() {
        let text = ConfigErrors::single(error("a", "1")).to_string();
        assert!(text.starts_with("found 1 problem in the configuration:"));
    }

    #[test]
    fn settled_key_silences_later_reports_inside_it() {
        let mut problems = Problems::default();
        problems.report_and_settle("routes[1]", "1", "not a table", "");
        problems.report("routes[1].upstream", "\"\"", "required", "");
        problems.report("routes[10].upstream", "\"\"", "required", "");
        let keys: Vec<String> = problems.into_errors().into_iter().map(|e| e.key).collect();
        assert_eq!(keys, ["routes[1]", "routes[10].upstream"]);
    }

    #[test]
    fn url_passwords_are_masked() {
        assert_eq!(
            mask_url_password("redis://user:hunter2@redis:6379/0"),
            "redis://user:***@redis:6379/0"
        );
        assert_eq!(
            mask_url_password("redis://hunter2@redis/0"),
            "redis://***@redis/0"
        );
        assert_eq!(
            mask_url_password("redis://redis:6379/0"),
            "redis://redis:6379/0"
        );
        assert_eq!(
            mask_url_password(
                "redis-sentinel://h:26379/0?sentinelServiceName=m&sentinelPassword=pw#x"
            ),
            "redis-sentinel://h:26379/0?sentinelServiceName=m&sentinelPassword=***#x"
        );
        assert_eq!(mask_url_password("not a url"), "not a url");
    }

    #[test]
    fn values_shown_in_errors_hide_url_passwords() {
        assert_eq!(
            quoted("https://user:pw@app.example.com"),
            "\"https://user:***@app.example.com\""
        );
        assert_eq!(
            quoted_list(&["redis://:pw@a/0".to_owned(), "plain".to_owned()]),
            "[\"redis://:***@a/0\", \"plain\"]"
        );
    }
}
