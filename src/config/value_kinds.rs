//! Each known key must hold the kind of value it takes (a string, a flag,
//! a list of strings, a table of strings).
//!
//! Values of the wrong kind (`ttl = 3600` instead of `"3600s"`, or
//! `cookie_secure = "false"`) are reported here and removed before serde
//! runs, so one such slip does not hide every other problem behind serde's
//! first error. Later reports about the same key are silenced.

use super::errors::{quoted, shown_value, Problems, MASKED};
use super::raw::{self, Kind};

/// Reports and removes sections and keys whose value has the wrong kind.
pub(crate) fn check_kinds(table: &mut toml::Table, problems: &mut Problems) {
    let section_names: Vec<String> = table.keys().cloned().collect();
    for name in section_names {
        let Some(section) = raw::section(&name) else {
            continue; // unknown sections are reported by `deserialize_reporting_unknown`
        };
        let Some(value) = table.get_mut(&name) else {
            continue;
        };
        if section.repeated {
            match value {
                toml::Value::Array(items) => {
                    for (index, item) in items.iter_mut().enumerate() {
                        let item_key = format!("{name}[{index}]");
                        match item {
                            toml::Value::Table(route) => {
                                check_keys(&item_key, section, route, problems)
                            }
                            other => {
                                problems.report_and_settle(
                                    &item_key,
                                    shown(&name, other),
                                    format!("expected a table, found {}", describe(other)),
                                    format!("write each entry as a [[{name}]] table"),
                                );
                                *other = toml::Value::Table(toml::Table::new());
                            }
                        }
                    }
                }
                other => {
                    problems.report_and_settle(
                        &name,
                        shown(&name, other),
                        format!("expected a list of tables, found {}", describe(other)),
                        format!("write each entry as a [[{name}]] table"),
                    );
                    table.remove(&name);
                }
            }
        } else {
            match value {
                toml::Value::Table(keys) => check_keys(&name, section, keys, problems),
                other => {
                    problems.report_and_settle(
                        &name,
                        shown(&name, other),
                        format!("expected a table, found {}", describe(other)),
                        format!("write the keys under a [{name}] header"),
                    );
                    table.remove(&name);
                }
            }
        }
    }
}

fn check_keys(
    prefix: &str,
    section: &raw::Section,
    keys: &mut toml::Table,
    problems: &mut Problems,
) {
    let mut wrong = Vec::new();
    for (name, value) in keys.iter() {
        let Some(kind) = section.kind_of(name) else {
            continue;
        };
        if !has_kind(value, kind) {
            let key = format!("{prefix}.{name}");
            problems.report_and_settle(
                &key,
                shown(name, value),
                format!("expected {}, found {}", kind.describe(), describe(value)),
                fix_for_kind(name, kind),
            );
            wrong.push(name.clone());
        }
    }
    for name in wrong {
        keys.remove(&name);
    }
}

fn has_kind(value: &toml::Value, kind: Kind) -> bool {
    match kind {
        Kind::Text => value.is_str(),
        Kind::Flag => value.is_bool(),
        Kind::TextList => value
            .as_array()
            .is_some_and(|items| items.iter().all(toml::Value::is_str)),
        Kind::TextTable => value
            .as_table()
            .is_some_and(|entries| entries.values().all(toml::Value::is_str)),
        Kind::Table => value.is_table(),
        Kind::TableList => value
            .as_array()
            .is_some_and(|items| items.iter().all(toml::Value::is_table)),
        Kind::Number => value.is_integer() || value.is_float(),
        Kind::Integer => value.is_integer(),
    }
}

fn fix_for_kind(name: &str, kind: Kind) -> String {
    match kind {
        Kind::Text => format!("put the value in quotes: {name} = \"…\""),
        Kind::Flag => format!("write {name} = true or {name} = false, without quotes"),
        Kind::TextList => format!("write a list of quoted strings: {name} = [\"…\"]"),
        Kind::TextTable => {
            format!("write a table of quoted strings: {name} = {{ name = \"value\" }}")
        }
        Kind::Table => format!("write a table: {name} = {{ … }}"),
        Kind::TableList => format!("write each entry as a [[…{name}]] table"),
        Kind::Number => format!("write a number without quotes: {name} = 0.5"),
        Kind::Integer => format!("write a whole number without quotes: {name} = 100"),
    }
}

fn describe(value: &toml::Value) -> String {
    match value {
        toml::Value::String(_) => "a string".to_owned(),
        toml::Value::Integer(number) => format!("the number {number}"),
        toml::Value::Float(number) => format!("the number {number}"),
        toml::Value::Boolean(flag) => format!("{flag}"),
        toml::Value::Datetime(_) => "a date/time".to_owned(),
        toml::Value::Array(_) => "a list (containing something other than strings)".to_owned(),
        toml::Value::Table(_) => "a table".to_owned(),
    }
}

/// How a value is shown in an error: tables are left out (they may be big
/// and hold secrets), secrets are masked.
pub(crate) fn shown(name: &str, value: &toml::Value) -> String {
    match value {
        toml::Value::Table(_) => String::new(),
        _ if raw::is_secret_key(name) => MASKED.to_owned(),
        toml::Value::Array(items) if items.iter().any(toml::Value::is_table) => String::new(),
        other => shown_value(other),
    }
}

/// A string shown in an error, masked when `name` is a secret key.
pub(crate) fn shown_text(name: &str, text: &str) -> String {
    if raw::is_secret_key(name) {
        MASKED.to_owned()
    } else {
        quoted(text)
    }
}

#[cfg(test)]
#[allow(clippy::expect_used, clippy::panic, clippy::unwrap_used)]
mod tests {
    use super::super::test_support::check_keys_of;

    #[test]
    fn wrong_kind_is_reported_and_the_rest_still_parses() {
        let (raw, errors) = check_keys_of(
            "[session]\nttl = 3600\ncookie_secure = \"false\"\n[server]\ntrusted_proxies = \"10.0.0.0/8\"\n\
             [[routes]]\nupstream = \"http://a\"\n",
        );
        let raw = raw.expect("the rest parses");
        assert_eq!(raw.session.ttl, "12h");
        assert_eq!(raw.routes.len(), 1);
        let keys: Vec<&str> = errors.iter().map(|error| error.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "server.trusted_proxies",
                "session.cookie_secure",
                "session.ttl"
            ]
        );
        assert_eq!(
            errors[2].problem,
            "expected a string, found the number 3600"
        );
    }

    #[test]
    fn section_of_the_wrong_kind_is_reported() {
        let (raw, errors) = check_keys_of("server = 5\nroutes = { upstream = \"http://a\" }\n");
        assert!(raw.is_some());
        let keys: Vec<&str> = errors.iter().map(|error| error.key.as_str()).collect();
        assert_eq!(keys, ["routes", "server"]);
    }
}
