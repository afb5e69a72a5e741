//! Bearer JWTs from machine clients: is this token valid for us?
//!
//! Accepted issuers are the provider (its JWKS; audiences: `bearer_audiences`
//! when set, else the client id and `extra_audiences`) and each
//! `[[oidc.extra_jwt_issuers]]` (its own JWKS URL and audiences). The
//! algorithm must be on the allow-list (never `none`, never HMAC unless
//! configured), the token must be an access token (no ID or logout token:
//! [`check_access_token_kind`]), `exp` must be in the future and `nbf` in the
//! past (both with `clock_skew`), and `azp`, when present, must be one of the
//! audiences accepted from that issuer. An unknown `kid` triggers a JWKS
//! refetch limited per kid and overall ([`super::refetch`]).
//!
//! Subjects are scoped by issuer: a token from an extra issuer names
//! `{issuer}#{sub}`, never a bare `sub` that the provider may also have
//! given to one of its users (see docs/security.md).
//!
//! With `provider = "descope"`, a token whose `iss` is one of the project's
//! forms is a Descope session JWT: verified with the provider's or the
//! project's session keys, and judged by `descope::check_session_audience`
//! (no `aud` accepted, a foreign one refused) instead of the audience check.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use arc_swap::ArcSwap;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use openidconnect::{JsonWebKeySet, JsonWebKeySetUrl};

use super::claims::identity_from_json;
use super::jws::{unverified_kid, verify_jws, VerifiedJws};
use super::keyset::KeySet;
use super::login::unix_seconds;
use super::provider::ProviderHandle;
use super::refetch::RefetchLimiter;
use super::token_kind::{bearer_audiences, check_access_token_kind};
use super::verify::{parse_algorithms, TokenRejection};
use crate::config::OidcConfig;
use crate::error::error_chain;
use crate::session::Identity;

/// The JWKS of an issuer other than the provider, fetched on first use and
/// refetched (rate-limited) on an unknown kid.
struct IssuerKeys {
    issuer: String,
    audiences: Vec<String>,
    jwks_url: JsonWebKeySetUrl,
    /// Parsed once per fetch.
    jwks: ArcSwap<Option<KeySet>>,
    refetches: RefetchLimiter,
    /// This issuer's subjects are not the provider's users: they are named
    /// `{issuer}#{sub}`. False for keys of the provider itself (Descope
    /// session keys), whose subjects are the provider's.
    scoped_subjects: bool,
}

impl IssuerKeys {
    fn new(issuer: String, audiences: Vec<String>, jwks_url: url::Url, scoped: bool) -> Self {
        IssuerKeys {
            issuer,
            audiences,
            jwks_url: JsonWebKeySetUrl::from_url(jwks_url),
            jwks: ArcSwap::from_pointee(None),
            refetches: RefetchLimiter::default(),
            scoped_subjects: scoped,
        }
    }
}

pub struct BearerVerifier {
    provider: Arc<ProviderHandle>,
    settings: OidcConfig,
    extra: Vec<IssuerKeys>,
    /// Audiences a provider's bearer token must carry one of.
    provider_audiences: Vec<String>,
    /// Clients an `azp` in a provider's bearer token may name.
    provider_parties: Vec<String>,
    /// The Descope project's session keys (provider "descope" only).
    descope_session: Option<IssuerKeys>,
}

/// The audiences a Descope session token may name when it has one.
fn descope_audiences(settings: &OidcConfig) -> Vec<String> {
    let mut audiences = vec![settings.client_id.clone()];
    audiences.extend(settings.project_id.iter().cloned());
    audiences.extend(settings.extra_audiences.iter().cloned());
    audiences
}

/// The subject portico names for `sub` from `issuer`: `sub` itself for the
/// provider's users, `{issuer}#{sub}` for an extra issuer's, so that
/// `alice` of another issuer is never `alice` of the provider in
/// `X-Forwarded-User` and everything keyed on it.
pub fn scoped_subject(issuer: &str, sub: &str, scoped: bool) -> String {
    if scoped {
        format!("{issuer}#{sub}")
    } else {
        sub.to_string()
    }
}

impl BearerVerifier {
    pub fn new(provider: Arc<ProviderHandle>, settings: &OidcConfig) -> Self {
        let extra: Vec<IssuerKeys> = settings
            .extra_jwt_issuers
            .iter()
            .map(|issuer| {
                IssuerKeys::new(
                    issuer.issuer.clone(),
                    issuer.audiences.clone(),
                    issuer.jwks_url.clone(),
                    true,
                )
            })
            .collect();
        // Descope session JWTs: signed with the project's session keys, their
        // iss one of the project's forms (see `descope`), `aud` optional.
        // Their subjects are the provider's users (not scoped).
        let descope_session = match (
            settings.descope_session_jwks_url(),
            settings.project_id.as_ref(),
        ) {
            (Some(jwks_url), Some(project)) => Some(IssuerKeys::new(
                project.clone(),
                descope_audiences(settings),
                jwks_url,
                false,
            )),
            _ => None,
        };
        let provider_audiences = bearer_audiences(
            &settings.client_id,
            &settings.extra_audiences,
            &settings.bearer_audiences,
        );
        // azp names the client the token was issued to: portico's own
        // client may hold a token for an API audience.
        let mut provider_parties =
            bearer_audiences(&settings.client_id, &settings.extra_audiences, &[]);
        provider_parties.extend(provider_audiences.iter().cloned());
        BearerVerifier {
            provider,
            settings: settings.clone(),
            extra,
            provider_audiences,
            provider_parties,
            descope_session,
        }
    }

    /// Verifies `token` at `now`; returns who it names.
    pub async fn verify(&self, token: &str, now: SystemTime) -> Result<Identity, TokenRejection> {
        let issuer = unverified_issuer(token)?;
        let allowed = parse_algorithms(&self.settings.allowed_algs);
        let descope_session = self.descope_session.as_ref().filter(|_| {
            match (&self.settings.project_id, &self.settings.base_url) {
                (Some(project), Some(base)) => super::descope::is_project_session_issuer(
                    &issuer,
                    project,
                    base,
                    &self.settings.issuer,
                ),
                _ => false,
            }
        });
        let (verified, audiences, parties, scoped) = if issuer == self.settings.issuer {
            let provider = self
                .provider
                .get()
                .ok_or_else(|| TokenRejection::Malformed("provider keys not loaded yet".into()))?;
            let mut verified = verify_jws(token, &provider.jwks(), &allowed);
            if verified
                .as_ref()
                .is_err_and(|error| *error == TokenRejection::UnknownKey)
                && self
                    .provider
                    .refresh_jwks_for_client_token(unverified_kid(token).as_deref(), Instant::now())
                    .await
            {
                if let Some(provider) = self.provider.get() {
                    verified = verify_jws(token, &provider.jwks(), &allowed);
                }
            }
            match (verified, descope_session) {
                // Same issuer, other keys (Descope session tokens).
                (Err(TokenRejection::UnknownKey), Some(keys)) => (
                    self.verify_extra(keys, token, &allowed).await?,
                    keys.audiences.as_slice(),
                    keys.audiences.as_slice(),
                    keys.scoped_subjects,
                ),
                (verified, _) => (
                    verified?,
                    self.provider_audiences.as_slice(),
                    self.provider_parties.as_slice(),
                    false,
                ),
            }
        } else if let Some(keys) = descope_session {
            (
                self.verify_extra(keys, token, &allowed).await?,
                keys.audiences.as_slice(),
                keys.audiences.as_slice(),
                keys.scoped_subjects,
            )
        } else if let Some(keys) = self.extra.iter().find(|keys| keys.issuer == issuer) {
            (
                self.verify_extra(keys, token, &allowed).await?,
                keys.audiences.as_slice(),
                keys.audiences.as_slice(),
                keys.scoped_subjects,
            )
        } else {
            return Err(TokenRejection::Issuer(format!(
                "{issuer} is not an accepted issuer"
            )));
        };
        check_access_token_kind(&verified.header, &verified.claims)?;
        let claims = verified.claims;
        if descope_session.is_some() {
            // A Descope session token: `aud` optional, never foreign.
            super::descope::check_session_audience(&claims, &descope_audiences(&self.settings))?;
            check_times(&claims, self.settings.clock_skew, now)?;
        } else {
            check_claims(&claims, audiences, parties, self.settings.clock_skew, now)?;
        }
        let mut identity = identity_from_json(&claims, &self.settings);
        identity.access_token_expires_at = claims.get("exp").and_then(|exp| exp.as_i64());
        if identity.sub.is_empty() {
            return Err(TokenRejection::Malformed("no sub".into()));
        }
        identity.sub = scoped_subject(&issuer, &identity.sub, scoped);
        Ok(identity)
    }

    async fn verify_extra(
        &self,
        keys: &IssuerKeys,
        token: &str,
        allowed: &[openidconnect::core::CoreJwsSigningAlgorithm],
    ) -> Result<VerifiedJws, TokenRejection> {
        let current = keys.jwks.load_full();
        let first = match current.as_ref() {
            Some(jwks) => verify_jws(token, jwks, allowed),
            None => Err(TokenRejection::UnknownKey),
        };
        match first {
            Err(TokenRejection::UnknownKey) if self.fetch_extra(keys, token).await => {
                match keys.jwks.load_full().as_ref() {
                    Some(jwks) => verify_jws(token, jwks, allowed),
                    None => Err(TokenRejection::UnknownKey),
                }
            }
            other => other,
        }
    }

    /// Fetches an extra issuer's JWKS for `token`'s unknown kid, when its
    /// limiter allows.
    async fn fetch_extra(&self, keys: &IssuerKeys, token: &str) -> bool {
        if !keys
            .refetches
            .allow(unverified_kid(token).as_deref(), Instant::now())
        {
            return false;
        }
        match crate::telemetry::traced(
            "oidc.jwks_fetch",
            JsonWebKeySet::fetch_async(&keys.jwks_url, self.provider.http()),
        )
        .await
        {
            Ok(jwks) => {
                keys.jwks.store(Arc::new(Some(KeySet::new(jwks))));
                true
            }
            Err(error) => {
                tracing::warn!(issuer = %keys.issuer, error = %error_chain(&error), "JWKS fetch failed");
                false
            }
        }
    }
}

/// The `iss` a token claims, read before verification only to pick its keys.
fn unverified_issuer(token: &str) -> Result<String, TokenRejection> {
    let payload = token
        .split('.')
        .nth(1)
        .ok_or_else(|| TokenRejection::Malformed("not a compact JWS".into()))?;
    let bytes = URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|_| TokenRejection::Malformed("not base64url".into()))?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|_| TokenRejection::Malformed("claims are not JSON".into()))?;
    claims
        .get("iss")
        .and_then(|iss| iss.as_str())
        .map(str::to_string)
        .ok_or_else(|| TokenRejection::Issuer("no iss".into()))
}

/// Audience, azp and time checks on verified claims. `azp`, when present,
/// must be one of `accepted_parties` (the clients allowed to hold such a
/// token).
pub fn check_claims(
    claims: &serde_json::Map<String, serde_json::Value>,
    accepted_audiences: &[String],
    accepted_parties: &[String],
    clock_skew: std::time::Duration,
    now: SystemTime,
) -> Result<(), TokenRejection> {
    let audiences: Vec<&str> = match claims.get("aud") {
        Some(serde_json::Value::String(single)) => vec![single.as_str()],
        Some(serde_json::Value::Array(items)) => {
            items.iter().filter_map(|item| item.as_str()).collect()
        }
        _ => Vec::new(),
    };
    if !audiences.iter().any(|audience| {
        accepted_audiences
            .iter()
            .any(|accepted| accepted == audience)
    }) {
        return Err(TokenRejection::Audience(audiences.join(" ")));
    }
    if let Some(party) = claims.get("azp").and_then(|azp| azp.as_str()) {
        if !accepted_parties.iter().any(|accepted| accepted == party) {
            return Err(TokenRejection::AuthorizedParty(party.to_string()));
        }
    }
    check_times(claims, clock_skew, now)
}

/// `exp` (required), `nbf` and `iat` against `now`, with `clock_skew`.
pub fn check_times(
    claims: &serde_json::Map<String, serde_json::Value>,
    clock_skew: std::time::Duration,
    now: SystemTime,
) -> Result<(), TokenRejection> {
    let now = unix_seconds(now);
    let skew = i64::try_from(clock_skew.as_secs()).unwrap_or(0);
    let Some(expires_at) = claims.get("exp").and_then(|exp| exp.as_i64()) else {
        return Err(TokenRejection::Malformed("no exp".into()));
    };
    if now >= expires_at + skew {
        return Err(TokenRejection::Expired(format!("exp {expires_at}")));
    }
    if let Some(not_before) = claims.get("nbf").and_then(|nbf| nbf.as_i64()) {
        if now + skew < not_before {
            return Err(TokenRejection::IssuedInFuture(format!("nbf {not_before}")));
        }
    }
    if let Some(issued_at) = claims.get("iat").and_then(|iat| iat.as_i64()) {
        if issued_at > now + skew {
            return Err(TokenRejection::IssuedInFuture(format!("iat {issued_at}")));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::time::Duration;

    fn claims(value: serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
        value.as_object().unwrap().clone()
    }

    fn at(seconds: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(seconds)
    }

    #[test]
    fn audience_must_include_an_accepted_one() {
        let accepted = vec!["api".to_string()];
        let skew = Duration::from_secs(30);
        assert!(check_claims(
            &claims(json!({"aud": ["x", "api"], "exp": 2000})),
            &accepted,
            &accepted,
            skew,
            at(1000)
        )
        .is_ok());
        assert!(matches!(
            check_claims(
                &claims(json!({"aud": "x", "exp": 2000})),
                &accepted,
                &accepted,
                skew,
                at(1000)
            ),
            Err(TokenRejection::Audience(_))
        ));
        assert!(matches!(
            check_claims(
                &claims(json!({"aud": "api", "azp": "other", "exp": 2000})),
                &accepted,
                &accepted,
                skew,
                at(1000)
            ),
            Err(TokenRejection::AuthorizedParty(_))
        ));
    }

    #[test]
    fn only_extra_issuers_subjects_are_scoped() {
        assert_eq!(scoped_subject("https://op", "alice", false), "alice");
        assert_eq!(
            scoped_subject("https://ci.example", "alice", true),
            "https://ci.example#alice"
        );
        assert_ne!(
            scoped_subject("https://ci.example", "alice", true),
            scoped_subject("https://other.example", "alice", true)
        );
    }

    #[test]
    fn time_claims_are_checked_with_skew() {
        let accepted = vec!["api".to_string()];
        let skew = Duration::from_secs(30);
        let token = |value| claims(value);
        assert!(check_claims(
            &token(json!({"aud": "api", "exp": 1000})),
            &accepted,
            &accepted,
            skew,
            at(1020)
        )
        .is_ok());
        assert!(matches!(
            check_claims(
                &token(json!({"aud": "api", "exp": 1000})),
                &accepted,
                &accepted,
                skew,
                at(1030)
            ),
            Err(TokenRejection::Expired(_))
        ));
        assert!(matches!(
            check_claims(
                &token(json!({"aud": "api", "exp": 5000, "nbf": 2000})),
                &accepted,
                &accepted,
                skew,
                at(1000)
            ),
            Err(TokenRejection::IssuedInFuture(_))
        ));
        assert!(matches!(
            check_claims(
                &token(json!({"aud": "api"})),
                &accepted,
                &accepted,
                skew,
                at(1000)
            ),
            Err(TokenRejection::Malformed(_))
        ));
    }
}
