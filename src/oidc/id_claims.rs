//! The checks of an ID token's header and claims (OpenID Connect Core
//! §3.1.3.7), made on its claims as JSON, decoded once from the token
//! whose signature `jws` has checked.
//!
//! They are the checks openidconnect's `IdTokenVerifier` makes (and in its
//! order, so that a token wrong in several ways is refused for the same
//! reason): the header's `typ`, `cty` and `crit`; the claims an ID token
//! must carry, with their JSON types; `iss` byte for byte; `aud` holding the
//! client and no audience not configured; `exp`; the nonce. Then portico's
//! own: `iat` not in the future, `azp`. Time comes in as a parameter.

use std::time::{SystemTime, UNIX_EPOCH};

use openidconnect::JsonWebTokenType;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::verify::{Expectations, NonceCheck, TokenRejection};

/// The header: a `typ`, when present, says JWT (`application/jwt` or
/// `application/jose`, as RFC 7515 §4.1.9 normalises it); no `cty` (no
/// nested token) and no `crit` (portico understands no extension).
pub(crate) fn check_header(header: &Map<String, Value>) -> Result<(), TokenRejection> {
    if let Some(typ) = header.get("typ") {
        let normalized = typ
            .as_str()
            .and_then(|typ| JsonWebTokenType::new(typ.to_string()).normalize().ok());
        let allowed = normalized
            .as_ref()
            .is_some_and(|typ| matches!(typ.as_str(), "application/jwt" | "application/jose"));
        if !allowed {
            return Err(TokenRejection::Malformed(format!(
                "unexpected or unsupported JWT type {typ}"
            )));
        }
    }
    if header.contains_key("cty") {
        return Err(TokenRejection::Malformed(
            "nested or typed JWT content (cty) is not supported".into(),
        ));
    }
    if header.contains_key("crit") {
        return Err(TokenRejection::Malformed(
            "critical JWT header fields are unsupported".into(),
        ));
    }
    Ok(())
}

fn text<'a>(claims: &'a Map<String, Value>, name: &str) -> Result<Option<&'a str>, TokenRejection> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::String(value)) => Ok(Some(value)),
        Some(_) => Err(TokenRejection::Malformed(format!("{name} is not a string"))),
    }
}

fn required_text<'a>(
    claims: &'a Map<String, Value>,
    name: &str,
) -> Result<&'a str, TokenRejection> {
    text(claims, name)?.ok_or_else(|| TokenRejection::Malformed(format!("missing field `{name}`")))
}

/// A NumericDate (RFC 7519 §2), seconds since the epoch.
fn required_time(claims: &Map<String, Value>, name: &str) -> Result<f64, TokenRejection> {
    match claims.get(name) {
        None => Err(TokenRejection::Malformed(format!("missing field `{name}`"))),
        Some(value) => value
            .as_f64()
            .filter(|seconds| seconds.is_finite())
            .ok_or_else(|| TokenRejection::Malformed(format!("{name} is not a number"))),
    }
}

/// `aud`: one string or an array of strings (RFC 7519 §4.1.3).
fn audiences(claims: &Map<String, Value>) -> Result<Vec<&str>, TokenRejection> {
    let malformed = || TokenRejection::Malformed("aud is not a string or a list of strings".into());
    match claims.get("aud") {
        None => Err(TokenRejection::Malformed("missing field `aud`".into())),
        Some(Value::String(one)) => Ok(vec![one.as_str()]),
        Some(Value::Array(many)) => many
            .iter()
            .map(|value| value.as_str().ok_or_else(malformed))
            .collect(),
        Some(_) => Err(malformed()),
    }
}

/// Equal nonces, compared through their digests so that the time taken says
/// nothing about how much of the nonce matched.
fn same_nonce(found: &str, expected: &str) -> bool {
    Sha256::digest(found.as_bytes()) == Sha256::digest(expected.as_bytes())
}

fn seconds(time: SystemTime) -> f64 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(since) => since.as_secs_f64(),
        Err(before) => -before.duration().as_secs_f64(),
    }
}

/// Checks an ID token's claims against `expectations` at time `now`.
pub(crate) fn check_id_token_claims(
    claims: &Map<String, Value>,
    expectations: &Expectations,
    nonce: NonceCheck<'_>,
    now: SystemTime,
) -> Result<(), TokenRejection> {
    // What an ID token must carry (Core §2), and the types of what portico reads.
    let issuer = required_text(claims, "iss")?;
    required_text(claims, "sub")?;
    let audiences = audiences(claims)?;
    let expires = required_time(claims, "exp")?;
    let issued = required_time(claims, "iat")?;
    let token_nonce = text(claims, "nonce")?;
    let party = text(claims, "azp")?;

    if issuer != expectations.issuer.as_str() {
        return Err(TokenRejection::Issuer(format!(
            "expected `{}` (found `{issuer}`)",
            expectations.issuer.as_str()
        )));
    }
    let client_id = expectations.client_id.as_str();
    if !audiences.contains(&client_id) {
        return Err(TokenRejection::Audience(format!(
            "must contain `{client_id}` (found {audiences:?})"
        )));
    }
    if let Some(untrusted) = audiences.iter().find(|audience| {
        **audience != client_id
            && !expectations
                .extra_audiences
                .iter()
                .any(|extra| extra == *audience)
    }) {
        return Err(TokenRejection::Audience(format!(
            "`{untrusted}` is not a trusted audience"
        )));
    }
    let now = seconds(now);
    let skew = expectations.clock_skew.as_secs_f64();
    // Accepted until exp plus the allowed skew.
    if now - skew >= expires {
        return Err(TokenRejection::Expired(format!(
            "ID token expired at {expires} (now {now}, skew {skew} s)"
        )));
    }
    match (nonce, token_nonce) {
        (NonceCheck::Equal(_), None) => {
            return Err(TokenRejection::Nonce("missing nonce claim".into()))
        }
        (NonceCheck::Equal(expected) | NonceCheck::EqualWhenPresent(expected), Some(found))
            if !same_nonce(found, expected.secret()) =>
        {
            return Err(TokenRejection::Nonce("nonce mismatch".into()))
        }
        _ => {}
    }
    if issued > now + skew {
        return Err(TokenRejection::IssuedInFuture(format!(
            "iat {issued} is after now {now} plus skew"
        )));
    }
    match party {
        Some(party) if party != client_id => {
            Err(TokenRejection::AuthorizedParty(party.to_string()))
        }
        None if expectations.require_azp => {
            Err(TokenRejection::AuthorizedParty("missing".to_string()))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
#[path = "id_claims_tests.rs"]
mod tests;
