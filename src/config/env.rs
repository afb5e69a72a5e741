//! Environment overrides: `PORTICO_<SECTION>__<KEY>=value`.
//!
//! Secrets normally reach portico this way (`PORTICO_OIDC__CLIENT_SECRET`),
//! and container platforms tweak single keys without editing the file. The
//! environment is passed in as a map so parsing never reads the process
//! environment and tests never have to set variables.
//!
//! Overrides are written into the parsed TOML table before deserialising, so
//! they go through exactly the same checks as values from the file. A
//! variable naming an unknown section or key is an error like an unknown key
//! in the file: a misspelt override must not be silently ignored.

use std::collections::BTreeMap;

use super::errors::{Problems, MASKED};
use super::raw::{self, Kind, SCHEMA};
use super::unknown_keys::{closest, suggest_key};
use super::value_kinds::shown_text;

/// Variables that share the prefix but are not overrides.
const NOT_OVERRIDES: &[&str] = &["PORTICO_CONFIG"];

const PREFIX: &str = "PORTICO_";

/// Writes every override into `table`. Returns, for each key set this way,
/// the variable that set it (`"oidc.client_secret"` → `"PORTICO_OIDC__CLIENT_SECRET"`).
pub(crate) fn apply_overrides(
    table: &mut toml::Table,
    environment: &BTreeMap<String, String>,
    problems: &mut Problems,
) -> BTreeMap<String, String> {
    let mut origins = BTreeMap::new();
    for (variable, text) in environment {
        let Some(rest) = variable.strip_prefix(PREFIX) else {
            continue;
        };
        if NOT_OVERRIDES.contains(&variable.as_str()) {
            continue;
        }
        let Some((section_name, key_name)) = rest.split_once("__") else {
            report_missing_separator(variable, rest, text, problems);
            continue;
        };
        let section_name = section_name.to_ascii_lowercase();
        let key_name = key_name.to_ascii_lowercase();
        let key = format!("{section_name}.{key_name}");
        let Some(section) = raw::section(&section_name) else {
            let fix = match closest(&section_name, SCHEMA.iter().map(|section| section.name)) {
                Some(near) => format!("did you mean `{}`?", variable_name(near, &key_name)),
                None => "the sections are SERVER, OIDC, SESSION and TELEMETRY".to_owned(),
            };
            problems.report(
                key,
                shown_text(&key_name, text),
                format!("unknown section `{section_name}` (from environment variable {variable})"),
                fix,
            );
            continue;
        };
        if section.repeated {
            problems.report(
                key,
                shown_text(&key_name, text),
                format!(
                    "[[{section_name}]] cannot be set from the environment (variable {variable})"
                ),
                format!("define [[{section_name}]] tables in the config file and unset {variable}"),
            );
            continue;
        }
        if section.kind_of(&key_name).is_none() {
            let suggestion = suggest_key(section, &key_name);
            // A near miss of a secret key probably holds the secret.
            let shown = match &suggestion {
                Some(near) if raw::is_secret_key(near) => MASKED.to_owned(),
                _ => shown_text(&key_name, text),
            };
            let fix = match suggestion {
                Some(near) => {
                    let (near_section, near_key) = near
                        .split_once('.')
                        .unwrap_or((section_name.as_str(), near.as_str()));
                    format!("did you mean `{}`?", variable_name(near_section, near_key))
                }
                None => format!("unset {variable}"),
            };
            problems.report(
                key,
                shown,
                format!("unknown key (from environment variable {variable})"),
                fix,
            );
            continue;
        }
        let section_table = table
            .entry(section_name.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        // A section of the wrong kind is reported by the kind check.
        if let toml::Value::Table(section_table) = section_table {
            let value = match section.kind_of(&key_name) {
                Some(Kind::Number | Kind::Integer) => number_value(text),
                _ => typed_value(text),
            };
            section_table.insert(key_name, value);
            origins.insert(key, variable.clone());
        }
    }
    origins
}

/// `PORTICO_OIDC_CLIENT_SECRET` (one underscore) is almost certainly meant
/// as an override; anything else under the prefix may belong to someone else.
fn report_missing_separator(variable: &str, rest: &str, text: &str, problems: &mut Problems) {
    let lower = rest.to_ascii_lowercase();
    for section in SCHEMA.iter().filter(|section| !section.repeated) {
        if let Some(key_name) = lower.strip_prefix(&format!("{}_", section.name)) {
            problems.report(
                variable,
                shown_text(key_name, text),
                "looks like a config override but lacks the `__` between section and key",
                format!("did you mean `{}`?", variable_name(section.name, key_name)),
            );
            return;
        }
    }
}

fn variable_name(section: &str, key: &str) -> String {
    format!(
        "{PREFIX}{}__{}",
        section.to_ascii_uppercase(),
        key.to_ascii_uppercase()
    )
}

/// For a number key: the number when the text is one (`0.25`, `1`);
/// otherwise the text, which the kind check then reports.
fn number_value(text: &str) -> toml::Value {
    let text = text.trim();
    if let Ok(integer) = text.parse::<i64>() {
        return toml::Value::Integer(integer);
    }
    match text.parse::<f64>() {
        Ok(float) if float.is_finite() => toml::Value::Float(float),
        _ => toml::Value::String(text.to_owned()),
    }
}

/// A TOML boolean, array or inline table when the text is one; otherwise
/// the text as a string (so `123` stays the string "123").
fn typed_value(text: &str) -> toml::Value {
    if let Ok(mut document) = format!("value = {text}").parse::<toml::Table>() {
        if document.len() == 1 {
            if let Some(value) = document.remove("value") {
                if matches!(
                    value,
                    toml::Value::Boolean(_) | toml::Value::Array(_) | toml::Value::Table(_)
                ) {
                    return value;
                }
            }
        }
    }
    toml::Value::String(text.to_owned())
}

#[cfg(test)]
#[allow(clippy::expect_used, clippy::panic, clippy::unwrap_used)]
mod tests {
    use super::*;

    fn apply(
        file: &str,
        variables: &[(&str, &str)],
    ) -> (
        toml::Table,
        BTreeMap<String, String>,
        Vec<super::super::ConfigError>,
    ) {
        let mut table: toml::Table = file.parse().expect("valid toml");
        let environment = variables
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect();
        let mut problems = Problems::default();
        let origins = apply_overrides(&mut table, &environment, &mut problems);
        (table, origins, problems.into_errors())
    }

    #[test]
    fn env_override_replaces_client_secret() {
        let (table, origins, errors) = apply(
            "[oidc]\nclient_secret = \"from-file\"\n",
            &[("PORTICO_OIDC__CLIENT_SECRET", "from-env")],
        );
        assert!(errors.is_empty());
        assert_eq!(table["oidc"]["client_secret"].as_str(), Some("from-env"));
        assert_eq!(origins["oidc.client_secret"], "PORTICO_OIDC__CLIENT_SECRET");
    }

    #[test]
    fn env_values_are_typed_only_as_booleans_arrays_and_tables() {
        let (table, _, errors) = apply(
            "",
            &[
                ("PORTICO_SESSION__COOKIE_SECURE", "false"),
                ("PORTICO_OIDC__CLIENT_ID", "123"),
                ("PORTICO_OIDC__SCOPES", "[\"openid\", \"groups\"]"),
                ("PORTICO_OIDC__EXTRA_AUTH_PARAMS", "{ prompt = \"login\" }"),
                ("PORTICO_SERVER__LISTEN", "0.0.0.0:8080"),
                ("PORTICO_OIDC__ISSUER", "true\nsneaky = 1"),
            ],
        );
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(table["session"]["cookie_secure"].as_bool(), Some(false));
        assert_eq!(table["oidc"]["client_id"].as_str(), Some("123"));
        assert_eq!(table["oidc"]["scopes"].as_array().map(Vec::len), Some(2));
        assert_eq!(
            table["oidc"]["extra_auth_params"]["prompt"].as_str(),
            Some("login")
        );
        assert_eq!(table["server"]["listen"].as_str(), Some("0.0.0.0:8080"));
        assert_eq!(table["oidc"]["issuer"].as_str(), Some("true\nsneaky = 1"));
    }

    #[test]
    fn unknown_env_key_is_reported_with_the_variable_name() {
        let (table, _, errors) = apply(
            "",
            &[
                ("PORTICO_SESSION__TLL", "2h"),
                ("PORTICO_SESION__TTL", "2h"),
                ("PORTICO_SESSION__COOKIE_SECRT", "hunter2"),
                ("PORTICO_OIDC_CLIENT_SECRET", "hunter2"),
                ("PORTICO_ROUTES__UPSTREAM", "http://a"),
                ("PORTICO_CONFIG", "/etc/portico.toml"),
                ("PORTICO_SOMETHING", "not ours"),
                ("PATH", "/usr/bin"),
            ],
        );
        assert!(table.is_empty());
        let keys: Vec<&str> = errors.iter().map(|error| error.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "PORTICO_OIDC_CLIENT_SECRET",
                "routes.upstream",
                "sesion.ttl",
                "session.cookie_secrt",
                "session.tll"
            ]
        );
        assert_eq!(errors[0].value, "\"***\"");
        assert_eq!(errors[0].fix, "did you mean `PORTICO_OIDC__CLIENT_SECRET`?");
        assert_eq!(errors[2].fix, "did you mean `PORTICO_SESSION__TTL`?");
        assert_eq!(errors[3].value, "\"***\"");
        assert_eq!(
            errors[3].fix,
            "did you mean `PORTICO_SESSION__COOKIE_SECRET`?"
        );
        assert!(errors[4]
            .problem
            .contains("from environment variable PORTICO_SESSION__TLL"));
        assert_eq!(errors[4].fix, "did you mean `PORTICO_SESSION__TTL`?");
    }
}
