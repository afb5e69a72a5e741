//! Tests of the `[session]` rules through `parse`.
// Tests may fail loudly.
#![allow(clippy::expect_used, clippy::panic, clippy::unwrap_used)]

use std::time::Duration;

use super::super::parse;
use super::super::test_support::{
    errors_of, minimal, minimal_with, no_environment, problem_for, COOKIE_SECRET,
};
use super::super::StoreKind;

#[test]
fn cookie_secret_is_required_and_says_how_to_make_one() {
    let text = minimal().replace(&format!("cookie_secret = \"{COOKIE_SECRET}\""), "");
    let error = problem_for(&text, "session.cookie_secret");
    assert!(error.fix.contains("openssl rand -base64 32"));
}

#[test]
fn cookie_secret_that_is_not_base64_is_masked() {
    let text = minimal().replace(COOKIE_SECRET, "not base64 at all!!");
    let error = problem_for(&text, "session.cookie_secret");
    assert_eq!(error.value, "\"***\"");
    assert_eq!(error.problem, "is not base64");
}

#[test]
fn cookie_secret_and_its_file_together_are_refused() {
    let text = minimal_with("[session]", "cookie_secret_file = \"/run/cookie\"");
    problem_for(&text, "session.cookie_secret");
}

#[test]
fn memory_store_ignores_the_redis_url() {
    let text = minimal_with("[session]", "store = \"memory\"\nredis_url = \"whatever\"");
    let config = parse(&text, &no_environment()).expect("valid");
    assert_eq!(config.session.store, StoreKind::Memory);
    problem_for(
        &minimal_with("[session]", "redis_url = \"whatever\""),
        "session.redis_url",
    );
    problem_for(
        &minimal_with("[session]", "store = \"postgres\""),
        "session.store",
    );
}

#[test]
fn explicit_insecure_cookie_with_https_is_allowed() {
    let text = minimal_with("[session]", "cookie_secure = false");
    let config = parse(&text, &no_environment()).expect("valid");
    assert!(!config.session.cookie_secure);
}

#[test]
fn idle_timeout_cannot_exceed_ttl() {
    let error = problem_for(
        &minimal_with("[session]", "ttl = \"1h\"\nidle_timeout = \"2h\""),
        "session.idle_timeout",
    );
    assert!(error.problem.starts_with("is longer than session.ttl (1h)"));
    let text = minimal_with(
        "[session]",
        "ttl = \"0s\"\nidle_timeout = \"-1s\"\nrefresh_before = \"0s\"",
    );
    let errors = errors_of(&text, &[]);
    let keys: Vec<&str> = errors
        .errors
        .iter()
        .map(|error| error.key.as_str())
        .collect();
    assert_eq!(keys, ["session.ttl", "session.idle_timeout"]);
    let text = minimal_with(
        "[session]",
        "ttl = \"1d\"\nidle_timeout = \"1d\"\nrefresh_before = \"0s\"",
    );
    let config = parse(&text, &no_environment()).expect("valid");
    assert_eq!(config.session.idle_timeout, Duration::from_secs(86_400));
    assert_eq!(config.session.refresh_before, Duration::ZERO);
}

#[test]
fn cookie_name_and_key_prefix_are_checked() {
    let text = minimal_with(
        "[session]",
        "cookie_name = \"portico session\"\nkey_prefix = \"\"",
    );
    let errors = errors_of(&text, &[]);
    assert!(errors.for_key("session.cookie_name").is_some());
    assert!(errors.for_key("session.key_prefix").is_some());
}
