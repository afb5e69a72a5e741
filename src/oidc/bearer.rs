//! Bearer JWTs from machine clients: is this token valid for us?
//!
//! Accepted issuers are the provider (its JWKS, its audiences: the client id
//! and `extra_audiences`) and each `[[oidc.extra_jwt_issuers]]` (its own JWKS
//! URL and audiences). The algorithm must be on the allow-list (never
//! `none`, never HMAC unless configured), `exp` must be in the future and
//! `nbf` in the past (both with `clock_skew`), and `azp`, when present, must
//! be one of the audiences accepted from that issuer. An unknown `kid`
//! triggers at most one JWKS refetch per issuer every 10 seconds.
//!
//! With `provider = "descope"`, a token whose `iss` is one of the project's
//! forms is a Descope session JWT: verified with the provider's or the
//! project's session keys, and judged by `descope::check_session_audience`
//! (no `aud` accepted, a foreign one refused) instead of the audience check.

use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use arc_swap::ArcSwap;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use openidconnect::core::CoreJsonWebKeySet;
use openidconnect::{JsonWebKeySet, JsonWebKeySetUrl};

use super::claims::identity_from_json;
use super::jws::verify_jws;
use super::login::unix_seconds;
use super::provider::{ProviderHandle, JWKS_ON_DEMAND_INTERVAL};
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
    jwks: ArcSwap<Option<CoreJsonWebKeySet>>,
    last_fetch: Mutex<Option<Instant>>,
}

pub struct BearerVerifier {
    provider: Arc<ProviderHandle>,
    settings: OidcConfig,
    extra: Vec<IssuerKeys>,
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

impl BearerVerifier {
    pub fn new(provider: Arc<ProviderHandle>, settings: &OidcConfig) -> Self {
        let extra: Vec<IssuerKeys> = settings
            .extra_jwt_issuers
            .iter()
            .map(|issuer| IssuerKeys {
                issuer: issuer.issuer.clone(),
                audiences: issuer.audiences.clone(),
                jwks_url: JsonWebKeySetUrl::from_url(issuer.jwks_url.clone()),
                jwks: ArcSwap::from_pointee(None),
                last_fetch: Mutex::new(None),
            })
            .collect();
        // Descope session JWTs: signed with the project's session keys, their
        // iss one of the project's forms (see `descope`), `aud` optional.
        let descope_session = match (
            settings.descope_session_jwks_url(),
            settings.project_id.as_ref(),
        ) {
            (Some(jwks_url), Some(project)) => Some(IssuerKeys {
                issuer: project.clone(),
                audiences: descope_audiences(settings),
                jwks_url: JsonWebKeySetUrl::from_url(jwks_url),
                jwks: ArcSwap::from_pointee(None),
                last_fetch: Mutex::new(None),
            }),
            _ => None,
        };
        BearerVerifier {
            provider,
            settings: settings.clone(),
            extra,
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
        let (claims, audiences) = if issuer == self.settings.issuer {
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
                    .refresh_jwks_for_unknown_kid(Instant::now())
                    .await
            {
                if let Some(provider) = self.provider.get() {
                    verified = verify_jws(token, &provider.jwks(), &allowed);
                }
            }
            let mut audiences = vec![self.settings.client_id.clone()];
            audiences.extend(self.settings.extra_audiences.iter().cloned());
            match (verified, descope_session) {
                // Same issuer, other keys (Descope session tokens).
                (Err(TokenRejection::UnknownKey), Some(keys)) => (
                    self.verify_extra(keys, token, &allowed).await?,
                    keys.audiences.clone(),
                ),
                (verified, _) => (verified?.claims, audiences),
            }
        } else if let Some(keys) = descope_session {
            (
                self.verify_extra(keys, token, &allowed).await?,
                keys.audiences.clone(),
            )
        } else if let Some(keys) = self.extra.iter().find(|keys| keys.issuer == issuer) {
            (
                self.verify_extra(keys, token, &allowed).await?,
                keys.audiences.clone(),
            )
        } else {
            return Err(TokenRejection::Issuer(format!(
                "{issuer} is not an accepted issuer"
            )));
        };
        if descope_session.is_some() {
            // A Descope session token: `aud` optional, never foreign.
            super::descope::check_session_audience(&claims, &descope_audiences(&self.settings))?;
            check_times(&claims, self.settings.clock_skew, now)?;
        } else {
            check_claims(&claims, &audiences, self.settings.clock_skew, now)?;
        }
        let mut identity = identity_from_json(&claims, &self.settings);
        identity.access_token_expires_at = claims.get("exp").and_then(|exp| exp.as_i64());
        if identity.sub.is_empty() {
            return Err(TokenRejection::Malformed("no sub".into()));
        }
        Ok(identity)
    }

    async fn verify_extra(
        &self,
        keys: &IssuerKeys,
        token: &str,
        allowed: &[openidconnect::core::CoreJwsSigningAlgorithm],
    ) -> Result<serde_json::Map<String, serde_json::Value>, TokenRejection> {
        let current = keys.jwks.load_full();
        let first = match current.as_ref() {
            Some(jwks) => verify_jws(token, jwks, allowed),
            None => Err(TokenRejection::UnknownKey),
        };
        match first {
            Err(TokenRejection::UnknownKey) if self.fetch_extra(keys).await => {
                match keys.jwks.load_full().as_ref() {
                    Some(jwks) => verify_jws(token, jwks, allowed).map(|verified| verified.claims),
                    None => Err(TokenRejection::UnknownKey),
                }
            }
            other => other.map(|verified| verified.claims),
        }
    }

    /// Fetches an extra issuer's JWKS unless fetched within the last 10 s.
    async fn fetch_extra(&self, keys: &IssuerKeys) -> bool {
        {
            let mut last = keys
                .last_fetch
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let now = Instant::now();
            if last.is_some_and(|at| now.saturating_duration_since(at) < JWKS_ON_DEMAND_INTERVAL) {
                return false;
            }
            *last = Some(now);
        }
        match JsonWebKeySet::fetch_async(&keys.jwks_url, self.provider.http()).await {
            Ok(jwks) => {
                keys.jwks.store(Arc::new(Some(jwks)));
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

/// Audience, azp and time checks on verified claims.
pub fn check_claims(
    claims: &serde_json::Map<String, serde_json::Value>,
    accepted_audiences: &[String],
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
        if !accepted_audiences.iter().any(|accepted| accepted == party) {
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
            skew,
            at(1000)
        )
        .is_ok());
        assert!(matches!(
            check_claims(
                &claims(json!({"aud": "x", "exp": 2000})),
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
                skew,
                at(1000)
            ),
            Err(TokenRejection::AuthorizedParty(_))
        ));
    }

    #[test]
    fn time_claims_are_checked_with_skew() {
        let accepted = vec!["api".to_string()];
        let skew = Duration::from_secs(30);
        let token = |value| claims(value);
        assert!(check_claims(
            &token(json!({"aud": "api", "exp": 1000})),
            &accepted,
            skew,
            at(1020)
        )
        .is_ok());
        assert!(matches!(
            check_claims(
                &token(json!({"aud": "api", "exp": 1000})),
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
                skew,
                at(1000)
            ),
            Err(TokenRejection::IssuedInFuture(_))
        ));
        assert!(matches!(
            check_claims(&token(json!({"aud": "api"})), &accepted, skew, at(1000)),
            Err(TokenRejection::Malformed(_))
        ));
    }
}
