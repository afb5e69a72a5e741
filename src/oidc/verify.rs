//! Is this ID token valid for us? One function, time passed in.
//!
//! The signature of an asymmetric token is checked by `jws` against the
//! provider's keys as parsed when they were fetched (`keyset`), with the
//! allow-listed algorithms only; an HMAC one (only when configured) by
//! openidconnect with the client secret. The header and claims are checked
//! by `id_claims` (openidconnect's checks, `iss` byte for byte, `aud`, `exp`,
//! the nonce, and portico's: `azp`, `iat` in the future, clock skew, extra
//! audiences only when configured) on the claims as JSON, decoded once: the
//! token is never also decoded into openidconnect's typed claims.

use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};
use openidconnect::core::{CoreJsonWebKeySet, CoreJwsSigningAlgorithm};
use openidconnect::{
    ClaimsVerificationError, ClientId, ClientSecret, IdTokenVerifier, IssuerUrl, Nonce,
    SignatureVerificationError,
};
use serde_json::{Map, Value};

use super::id_claims::{check_header, check_id_token_claims};
use super::jws::{refuse_ambiguous_missing_kid, verify_signature, CompactJws};
use super::keyset::KeySet;
use super::types::PorticoIdToken;

/// What a valid ID token must satisfy.
#[derive(Clone, Debug)]
pub struct Expectations {
    pub issuer: IssuerUrl,
    pub client_id: ClientId,
    /// Only used when an HS* algorithm is explicitly allowed.
    pub client_secret: Option<ClientSecret>,
    pub extra_audiences: Vec<String>,
    pub require_azp: bool,
    pub allowed_algs: Vec<CoreJwsSigningAlgorithm>,
    pub clock_skew: Duration,
}

/// Why an ID token was refused; the label goes to logs and metrics.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenRejection {
    #[error("signature is not valid: {0}")]
    Signature(String),
    #[error("no key in the provider's JWKS matches the token's kid")]
    UnknownKey,
    #[error("the token names no kid and several of the provider's keys could have signed it")]
    AmbiguousKey,
    #[error("signing algorithm not allowed: {0}")]
    Algorithm(String),
    #[error("wrong issuer: {0}")]
    Issuer(String),
    #[error("wrong audience: {0}")]
    Audience(String),
    #[error("authorized party (azp) is not our client: {0}")]
    AuthorizedParty(String),
    #[error("token expired: {0}")]
    Expired(String),
    #[error("token issued in the future: {0}")]
    IssuedInFuture(String),
    #[error("nonce does not match the login: {0}")]
    Nonce(String),
    #[error("token is malformed: {0}")]
    Malformed(String),
    #[error("not an access token: {0}")]
    NotAnAccessToken(String),
}

impl TokenRejection {
    /// A short, stable name for logs and metrics.
    pub fn label(&self) -> &'static str {
        match self {
            TokenRejection::Signature(_) => "bad_signature",
            TokenRejection::UnknownKey => "unknown_kid",
            TokenRejection::AmbiguousKey => "kid_absent_ambiguous",
            TokenRejection::Algorithm(_) => "alg_not_allowed",
            TokenRejection::Issuer(_) => "wrong_iss",
            TokenRejection::Audience(_) => "wrong_aud",
            TokenRejection::AuthorizedParty(_) => "wrong_azp",
            TokenRejection::Expired(_) => "expired",
            TokenRejection::IssuedInFuture(_) => "iat_in_future",
            TokenRejection::Nonce(_) => "bad_nonce",
            TokenRejection::Malformed(_) => "malformed",
            TokenRejection::NotAnAccessToken(_) => "not_access_token",
        }
    }
}

/// Nonce handling: at login the nonce must equal the one sent; on refresh
/// there is none to compare.
pub enum NonceCheck<'a> {
    Equal(&'a Nonce),
    /// Equal when the token carries one; an absent nonce is accepted. For
    /// providers not known to echo it (Descope's docs do not say), where the
    /// code flow's PKCE and one-use state already bind the answer to this
    /// login (OpenID Connect Core §3.1.2.1: nonce is optional in the code flow).
    EqualWhenPresent(&'a Nonce),
    Skip,
}

/// Verifies the ID token `raw` (compact JWS, as the provider sent it)
/// against `keys` and `expectations` at time `now`; returns its claims.
pub fn verify_id_token(
    raw: &str,
    keys: &KeySet,
    expectations: &Expectations,
    nonce: NonceCheck<'_>,
    now: SystemTime,
) -> Result<Map<String, Value>, TokenRejection> {
    let jws = CompactJws::parse(raw)?;
    let uses_asymmetric = jws.alg().is_none_or(|alg| !alg.starts_with("HS"));
    if uses_asymmetric {
        // Every asymmetric algorithm, key type and curve matched to it.
        refuse_ambiguous_missing_kid(&jws, keys)?;
        verify_signature(&jws, keys, &expectations.allowed_algs)?;
    } else {
        verify_hmac(raw, expectations, now)?;
    }
    check_header(&jws.header)?;
    // The claims as the provider sent them, decoded once, for the checks and
    // everything portico reads (identity, kept claims, userinfo's completion).
    let claims = jws.claims()?;
    check_id_token_claims(&claims, expectations, nonce, now)?;
    Ok(claims)
}

/// An HMAC-signed ID token (only when an HS* algorithm is configured, with
/// the client secret as key) is checked by openidconnect; refused otherwise.
/// Its claims are checked afterwards like any other's.
fn verify_hmac(
    raw: &str,
    expectations: &Expectations,
    now: SystemTime,
) -> Result<(), TokenRejection> {
    let token: PorticoIdToken = raw
        .parse()
        .map_err(|error: serde_json::Error| TokenRejection::Malformed(error.to_string()))?;
    let uses_hmac = expectations.allowed_algs.iter().any(|alg| {
        matches!(
            alg,
            CoreJwsSigningAlgorithm::HmacSha256
                | CoreJwsSigningAlgorithm::HmacSha384
                | CoreJwsSigningAlgorithm::HmacSha512
        )
    });
    // openidconnect never needs the provider's keys here.
    let no_keys = CoreJsonWebKeySet::new(Vec::new());
    let verifier = match (&expectations.client_secret, uses_hmac) {
        (Some(secret), true) => IdTokenVerifier::new_confidential_client(
            expectations.client_id.clone(),
            secret.clone(),
            expectations.issuer.clone(),
            no_keys,
        ),
        _ => IdTokenVerifier::new_public_client(
            expectations.client_id.clone(),
            expectations.issuer.clone(),
            no_keys,
        ),
    };
    let now_utc: DateTime<Utc> = now.into();
    let skew = chrono::Duration::from_std(expectations.clock_skew).unwrap_or_default();
    let extra_audiences = &expectations.extra_audiences;
    let verifier = verifier
        .set_allowed_algs(expectations.allowed_algs.clone())
        .set_other_audience_verifier_fn(move |audience| {
            extra_audiences
                .iter()
                .any(|extra| extra == audience.as_str())
        })
        .set_time_fn(move || now_utc - skew)
        .set_issue_time_verifier_fn(|_| Ok(()));
    // The nonce is compared by `check_id_token_claims`.
    token
        .claims(&verifier, |_: Option<&Nonce>| Ok(()))
        .map(|_| ())
        .map_err(classify)
}

fn classify(error: ClaimsVerificationError) -> TokenRejection {
    match error {
        ClaimsVerificationError::Expired(text) => TokenRejection::Expired(text),
        ClaimsVerificationError::InvalidAudience(text) => TokenRejection::Audience(text),
        ClaimsVerificationError::InvalidIssuer(text) => TokenRejection::Issuer(text),
        ClaimsVerificationError::InvalidNonce(text) => TokenRejection::Nonce(text),
        ClaimsVerificationError::SignatureVerification(inner) => match inner {
            SignatureVerificationError::NoMatchingKey => TokenRejection::UnknownKey,
            // A token without `kid`: openidconnect keeps the keys whose type,
            // use and alg fit the token's alg and uses the one left; with
            // several left it refuses, as Core §10.1 requires a kid "if there
            // are multiple keys in the referenced JWK Set document". RP
            // certification: rp-id_token-kid-absent-single-jwks (accepted),
            // rp-id_token-kid-absent-multiple-jwks (refusing is one of the two
            // answers the test plan allows).
            SignatureVerificationError::AmbiguousKeyId(_) => TokenRejection::AmbiguousKey,
            SignatureVerificationError::NoSignature => {
                TokenRejection::Algorithm("unsigned token (alg none)".to_string())
            }
            SignatureVerificationError::DisallowedAlg(text)
            | SignatureVerificationError::UnsupportedAlg(text) => TokenRejection::Algorithm(text),
            other => TokenRejection::Signature(other.to_string()),
        },
        other => TokenRejection::Malformed(other.to_string()),
    }
}

/// Parses configured algorithm names ("RS256", "EdDSA", …).
pub fn parse_algorithms(names: &[String]) -> Vec<CoreJwsSigningAlgorithm> {
    names
        .iter()
        .filter_map(|name| serde_json::from_value(serde_json::Value::String(name.clone())).ok())
        .filter(|alg| *alg != CoreJwsSigningAlgorithm::None)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn algorithm_names_parse_and_none_is_dropped() {
        let algs = parse_algorithms(&[
            "RS256".into(),
            "EdDSA".into(),
            "none".into(),
            "bogus".into(),
        ]);
        assert_eq!(
            algs,
            vec![
                CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
                CoreJwsSigningAlgorithm::EdDsa
            ]
        );
    }

    #[test]
    fn rejection_labels_are_distinct() {
        let all = [
            TokenRejection::Signature(String::new()),
            TokenRejection::UnknownKey,
            TokenRejection::AmbiguousKey,
            TokenRejection::Algorithm(String::new()),
            TokenRejection::Issuer(String::new()),
            TokenRejection::Audience(String::new()),
            TokenRejection::AuthorizedParty(String::new()),
            TokenRejection::Expired(String::new()),
            TokenRejection::IssuedInFuture(String::new()),
            TokenRejection::Nonce(String::new()),
            TokenRejection::Malformed(String::new()),
            TokenRejection::NotAnAccessToken(String::new()),
        ];
        let labels: std::collections::BTreeSet<_> = all.iter().map(TokenRejection::label).collect();
        assert_eq!(labels.len(), all.len());
    }
}
