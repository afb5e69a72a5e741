//! Configuration: one TOML file plus `PORTICO_<SECTION>__<KEY>` environment
//! overrides, validated in one step into the typed [`Config`].
//!
//! The steps, each in its own file:
//! 1. TOML syntax (`toml`), the only step that stops early: nothing else can
//!    be checked in a file that does not parse;
//! 2. environment overrides written into the table (`env.rs`);
//! 3. key checks: wrong kinds of value (`value_kinds.rs`), then serde into
//!    the as-written structs (`raw.rs`) reporting unknown keys with
//!    suggestions (`unknown_keys.rs`);
//! 4. value rules and derived defaults (`validate*.rs`, `secrets.rs`).
//!
//! Every step reports into one list, so a user sees every problem at once.
//! The module never reads the process environment (callers pass it in) and
//! its only file access is the config file (`load`) and `*_file` secrets.

mod duration;
mod env;
mod errors;
mod oidc_provider;
mod raw;
mod render;
mod secrets;
mod size;
mod types;
mod unknown_keys;
mod validate;
mod validate_branding;
mod validate_oidc;
mod validate_routes;
mod validate_session;
mod validate_telemetry;
mod validate_token_auth;
mod validate_upstream;
mod value_kinds;

#[cfg(test)]
mod parse_tests;
#[cfg(test)]
mod test_support;

use std::collections::BTreeMap;
use std::path::Path;

pub use errors::{ConfigError, ConfigErrors};
pub use render::render_effective;

/// A URL as it may be shown in logs: any password in it replaced by `***`.
pub fn shown_secret_url(url: &str) -> String {
    errors::mask_url_password(url)
}
pub use types::*;

use errors::Problems;

/// Parses and validates a configuration from TOML text and environment
/// overrides. Reads the files named by `*_file` keys; nothing else.
pub fn parse(
    toml_text: &str,
    environment: &BTreeMap<String, String>,
) -> Result<Config, ConfigErrors> {
    let mut table = toml_text
        .parse::<toml::Table>()
        .map_err(|error| ConfigErrors::single(syntax_error(&error, toml_text)))?;
    let mut problems = Problems::default();
    let origins = env::apply_overrides(&mut table, environment, &mut problems);
    value_kinds::check_kinds(&mut table, &mut problems);
    let config = unknown_keys::deserialize_reporting_unknown(table, &mut problems)
        .and_then(|raw| validate::validate(&raw, &mut problems));
    problems.note_origins(&origins);
    problems.sort_by_section();
    match config {
        Some(config) if problems.is_empty() => Ok(config),
        _ if !problems.is_empty() => Err(ConfigErrors {
            errors: problems.into_errors(),
        }),
        _ => Err(ConfigErrors::single(ConfigError {
            key: "configuration".to_owned(),
            value: String::new(),
            problem: "could not be validated, but no specific problem was found (a bug in portico)"
                .to_owned(),
            fix: "please report this with the output of `portico check`".to_owned(),
        })),
    }
}

/// Reads the config file at `path`, then [`parse`]s it.
pub fn load(path: &Path, environment: &BTreeMap<String, String>) -> Result<Config, ConfigErrors> {
    let text = std::fs::read_to_string(path).map_err(|error| {
        ConfigErrors::single(ConfigError {
            key: path.display().to_string(),
            value: String::new(),
            problem: format!("cannot read the config file: {error}"),
            fix:
                "check the path given with --config or PORTICO_CONFIG, and that portico may read it"
                    .to_owned(),
        })
    })?;
    parse(&text, environment).map_err(|mut errors| {
        // Syntax errors name a place, not a key: say which file it is in.
        for error in &mut errors.errors {
            if error.key.starts_with("line ") {
                error.key = format!("{} {}", path.display(), error.key);
            }
        }
        errors
    })
}

/// A TOML syntax error as one problem located by line and column.
fn syntax_error(error: &toml::de::Error, text: &str) -> ConfigError {
    let location = match error.span() {
        Some(span) => {
            let before = text.get(..span.start).unwrap_or(text);
            let line = before.matches('\n').count() + 1;
            let column = before
                .rsplit('\n')
                .next()
                .map_or(0, |last| last.chars().count())
                + 1;
            format!("line {line}, column {column}")
        }
        None => "TOML".to_owned(),
    };
    let message: Vec<&str> = error
        .message()
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect();
    ConfigError {
        key: location,
        value: String::new(),
        problem: format!("TOML syntax error: {}", message.join("; ")),
        fix: "correct the TOML at that line (strings need quotes, tables are [section])".to_owned(),
    }
}
