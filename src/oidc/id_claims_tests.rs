#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use openidconnect::core::CoreJwsSigningAlgorithm;
use openidconnect::{ClientId, IssuerUrl, Nonce};
use serde_json::json;

use super::*;

const NOW: u64 = 1_800_000_000;
const SKEW: u64 = 60;

fn at(seconds: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(seconds)
}

fn expectations() -> Expectations {
    Expectations {
        issuer: IssuerUrl::new("https://op.example".into()).unwrap(),
        client_id: ClientId::new("portico".into()),
        client_secret: None,
        extra_audiences: vec!["listed-api".into()],
        require_azp: false,
        allowed_algs: vec![CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256],
        clock_skew: Duration::from_secs(SKEW),
    }
}

fn claims(changes: Value) -> Map<String, Value> {
    let mut claims = json!({
        "iss": "https://op.example",
        "sub": "alice",
        "aud": "portico",
        "exp": NOW + 300,
        "iat": NOW,
        "nonce": "n-0S6_WzA2Mj",
    })
    .as_object()
    .unwrap()
    .clone();
    for (name, value) in changes.as_object().unwrap() {
        if value.is_null() {
            claims.remove(name);
        } else {
            claims.insert(name.clone(), value.clone());
        }
    }
    claims
}

fn check(changes: Value) -> Result<(), TokenRejection> {
    let nonce = Nonce::new("n-0S6_WzA2Mj".into());
    check_id_token_claims(
        &claims(changes),
        &expectations(),
        NonceCheck::Equal(&nonce),
        at(NOW),
    )
}

fn label(changes: Value) -> &'static str {
    check(changes.clone())
        .map(|()| "accepted")
        .unwrap_or_else(|rejection| rejection.label())
}

#[test]
fn a_complete_token_is_accepted() {
    assert_eq!(check(json!({})), Ok(()));
    assert_eq!(label(json!({"aud": ["portico"]})), "accepted");
    assert_eq!(label(json!({"aud": ["portico", "listed-api"]})), "accepted");
    assert_eq!(label(json!({"azp": "portico"})), "accepted");
    assert_eq!(
        label(json!({"exp": 1.8e9 + 300.5, "iat": 1.8e9})),
        "accepted"
    );
}

#[test]
fn required_claims_missing_or_mistyped_make_it_malformed() {
    for name in ["iss", "sub", "aud", "exp", "iat"] {
        assert_eq!(label(json!({ name: null })), "malformed", "without {name}");
        assert_eq!(
            label(json!({ name: {"x": 1} })),
            "malformed",
            "{name} an object"
        );
    }
    assert_eq!(label(json!({"exp": "1800000300"})), "malformed");
    assert_eq!(label(json!({"aud": ["portico", 7]})), "malformed");
    assert_eq!(label(json!({"nonce": 7})), "malformed");
    assert_eq!(label(json!({"azp": ["portico"]})), "malformed");
}

#[test]
fn the_issuer_must_match_byte_for_byte() {
    assert_eq!(label(json!({"iss": "https://op.example/"})), "wrong_iss");
    assert_eq!(label(json!({"iss": "https://OP.example"})), "wrong_iss");
    assert_eq!(
        label(json!({"iss": "https://op.example/other"})),
        "wrong_iss"
    );
}

#[test]
fn the_audience_must_hold_the_client_and_nothing_unlisted() {
    assert_eq!(label(json!({"aud": "someone-else"})), "wrong_aud");
    assert_eq!(label(json!({"aud": []})), "wrong_aud");
    assert_eq!(label(json!({"aud": ["listed-api"]})), "wrong_aud");
    assert_eq!(
        label(json!({"aud": ["portico", "another-api"]})),
        "wrong_aud"
    );
}

#[test]
fn expiry_allows_the_skew_and_no_more() {
    assert_eq!(label(json!({"exp": NOW - SKEW + 1})), "accepted");
    assert_eq!(label(json!({"exp": NOW - SKEW})), "expired");
    assert_eq!(label(json!({"exp": NOW - 3600})), "expired");
}

#[test]
fn issue_time_in_the_future_allows_the_skew_and_no_more() {
    assert_eq!(label(json!({"iat": NOW + SKEW})), "accepted");
    assert_eq!(label(json!({"iat": NOW + SKEW + 1})), "iat_in_future");
}

#[test]
fn the_nonce_is_checked_as_asked() {
    assert_eq!(label(json!({"nonce": null})), "bad_nonce");
    assert_eq!(label(json!({"nonce": "other"})), "bad_nonce");
    assert_eq!(label(json!({"nonce": ""})), "bad_nonce");
    let expected = Nonce::new("n-0S6_WzA2Mj".into());
    let run = |changes: Value, nonce: NonceCheck<'_>| {
        check_id_token_claims(&claims(changes), &expectations(), nonce, at(NOW))
    };
    let when_present = || NonceCheck::EqualWhenPresent(&expected);
    assert_eq!(run(json!({"nonce": null}), when_present()), Ok(()));
    assert_eq!(run(json!({}), when_present()), Ok(()));
    assert_eq!(
        run(json!({"nonce": "other"}), when_present())
            .unwrap_err()
            .label(),
        "bad_nonce"
    );
    assert_eq!(run(json!({"nonce": "other"}), NonceCheck::Skip), Ok(()));
    assert_eq!(run(json!({"nonce": null}), NonceCheck::Skip), Ok(()));
}

#[test]
fn the_authorized_party_must_be_the_client() {
    assert_eq!(label(json!({"azp": "someone-else"})), "wrong_azp");
    let mut strict = expectations();
    strict.require_azp = true;
    let nonce = Nonce::new("n-0S6_WzA2Mj".into());
    let run = |changes: Value| {
        check_id_token_claims(
            &claims(changes),
            &strict,
            NonceCheck::Equal(&nonce),
            at(NOW),
        )
    };
    assert_eq!(run(json!({})).unwrap_err().label(), "wrong_azp");
    assert_eq!(run(json!({"azp": "portico"})), Ok(()));
}

#[test]
fn checks_come_in_openidconnects_order() {
    // Wrong in several ways: refused for the first of iss, aud, exp, nonce.
    let all_wrong = json!({"iss": "https://x", "aud": "x", "exp": 1, "nonce": "x"});
    assert_eq!(label(all_wrong), "wrong_iss");
    assert_eq!(
        label(json!({"aud": "x", "exp": 1, "nonce": "x"})),
        "wrong_aud"
    );
    assert_eq!(label(json!({"exp": 1, "nonce": "x"})), "expired");
}

#[test]
fn the_header_says_jwt_and_asks_for_nothing_more() {
    let header = |value: Value| check_header(value.as_object().unwrap());
    assert_eq!(header(json!({"alg": "RS256"})), Ok(()));
    for typ in ["JWT", "jwt", "application/jwt", "JOSE", "application/JOSE"] {
        assert_eq!(header(json!({"alg": "RS256", "typ": typ})), Ok(()), "{typ}");
    }
    for refused in [
        json!({"alg": "RS256", "typ": "at+jwt"}),
        json!({"alg": "RS256", "typ": "logout+jwt"}),
        json!({"alg": "RS256", "typ": 1}),
        json!({"alg": "RS256", "cty": "JWT"}),
        json!({"alg": "RS256", "crit": ["exp"]}),
    ] {
        assert_eq!(
            header(refused.clone()).unwrap_err().label(),
            "malformed",
            "{refused}"
        );
    }
}
