//! Helpers shared by the config tests: a minimal valid file, environments,
//! temp files.
// Tests may fail loudly.
#![allow(clippy::expect_used, clippy::panic, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::{parse, ConfigErrors};

/// 32 bytes, base64.
pub(crate) const COOKIE_SECRET: &str = "q83vEjRWeJq83vEjRWeJq83vEjRWeJq83vEjRWeJq80=";

pub(crate) fn minimal() -> String {
    format!(
        r#"
[server]
public_url = "https://app.example.com"

[oidc]
issuer = "https://op.example.com"
client_id = "portico"

[session]
cookie_secret = "{COOKIE_SECRET}"

[[routes]]
upstream = "http://127.0.0.1:9100"
"#
    )
}

pub(crate) fn no_environment() -> BTreeMap<String, String> {
    BTreeMap::new()
}

pub(crate) fn environment(variables: &[(&str, &str)]) -> BTreeMap<String, String> {
    variables
        .iter()
        .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
        .collect()
}

pub(crate) fn errors_of(text: &str, variables: &[(&str, &str)]) -> ConfigErrors {
    match parse(text, &environment(variables)) {
        Ok(_) => panic!("expected problems in:\n{text}"),
        Err(errors) => errors,
    }
}

/// A file under the temp directory with a name no other test uses.
pub(crate) fn temp_file(name: &str, contents: &str) -> PathBuf {
    let path =
        std::env::temp_dir().join(format!("portico-config-test-{}-{name}", std::process::id()));
    std::fs::write(&path, contents).expect("write temp file");
    path
}

/// [`minimal`] with `lines` added under the section `header` (e.g. "[session]").
pub(crate) fn minimal_with(header: &str, lines: &str) -> String {
    minimal().replacen(header, &format!("{header}\n{lines}"), 1)
}

/// The problem reported for `key`; panics (failing the test) when none is.
pub(crate) fn problem_for(text: &str, key: &str) -> super::ConfigError {
    let errors = errors_of(text, &[]);
    match errors.for_key(key) {
        Some(error) => error.clone(),
        None => panic!("no problem reported for {key}; got:\n{errors}"),
    }
}

/// Runs the key checks (kinds, then unknown keys) over a TOML text.
pub(crate) fn check_keys_of(
    text: &str,
) -> (Option<super::raw::RawConfig>, Vec<super::ConfigError>) {
    let mut table: toml::Table = text.parse().expect("valid toml");
    let mut problems = super::errors::Problems::default();
    super::value_kinds::check_kinds(&mut table, &mut problems);
    let raw = super::unknown_keys::deserialize_reporting_unknown(table, &mut problems);
    (raw, problems.into_errors())
}
