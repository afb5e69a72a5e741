//! The provider as discovered: metadata, a client, and the JWKS cache.
//!
//! Discovery runs at startup and is retried with backoff while the provider
//! is unreachable; portico serves meanwhile (login answers 503, `/readyz`
//! says not ready). The JWKS is refreshed every `jwks_refresh` and, on a token
//! whose `kid` is unknown, refetched: at once when the token came in the
//! provider's own answer (the token endpoint), rate-limited per kid and
//! overall when a client presented it (see [`super::refetch`]), so a flood of
//! bogus kids neither turns into a flood of fetches nor holds up a rotation.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::{ArcSwap, ArcSwapOption};
use openidconnect::core::CoreJsonWebKeySet;
use openidconnect::{ClientId, ClientSecret, IssuerUrl, JsonWebKeySet, RedirectUrl};
use url::Url;

use super::keyset::KeySet;
use super::refetch::RefetchLimiter;
use super::types::{Metadata, PorticoClient};
use super::verify::{parse_algorithms, Expectations};
use crate::config::OidcConfig;
use crate::error::error_chain;
use crate::ops::Metrics;

const DISCOVERY_MAX_BACKOFF: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    #[error("discovery failed: {0}")]
    Discovery(String),
    #[error("JWKS fetch failed: {0}")]
    Jwks(String),
    #[error("provider metadata is unusable: {0}")]
    Metadata(String),
}

/// A discovered provider.
pub struct Provider {
    pub client: PorticoClient,
    pub expectations: Expectations,
    pub end_session_endpoint: Option<Url>,
    pub sends_iss_parameter: bool,
    /// The client authentication method in use (configured or discovered).
    pub token_auth_method: crate::config::TokenAuthMethod,
    /// Where client assertions are addressed (`aud`, RFC 7523 §3).
    pub token_endpoint: String,
    /// The provider lists `offline_access` among its scopes: ask for it, so
    /// sessions get refresh tokens.
    pub offers_offline_access: bool,
    /// The `prompt` that "Sign in with another account" sends (see
    /// [`switch_account_prompt`]).
    pub switch_account_prompt: Option<&'static str>,
    jwks_uri: openidconnect::JsonWebKeySetUrl,
    /// The provider's keys, parsed once per fetch.
    jwks: ArcSwap<KeySet>,
    /// Refetches for kids in clients' tokens.
    client_refetches: RefetchLimiter,
    /// One refetch for the provider's answers at a time; those waiting
    /// find the key the first one fetched.
    answer_refetch: tokio::sync::Mutex<()>,
}

impl Provider {
    pub fn jwks(&self) -> Arc<KeySet> {
        self.jwks.load_full()
    }

    /// The extra token-request parameters of `private_key_jwt` (RFC 7523
    /// §2.2) at `now`; empty for the other methods.
    pub fn client_assertion_params(
        &self,
        settings: &OidcConfig,
        now: i64,
    ) -> Result<Vec<(String, String)>, super::client_auth::AssertionError> {
        let Some(key) = settings
            .client_assertion_key
            .as_ref()
            .filter(|_| self.token_auth_method == crate::config::TokenAuthMethod::PrivateKeyJwt)
        else {
            return Ok(Vec::new());
        };
        let assertion = super::client_auth::client_assertion(
            key.expose(),
            settings.client_assertion_kid.as_deref(),
            &settings.client_id,
            &self.token_endpoint,
            now,
        )?;
        Ok(vec![
            (
                "client_assertion_type".to_string(),
                super::client_auth::CLIENT_ASSERTION_TYPE.to_string(),
            ),
            ("client_assertion".to_string(), assertion),
        ])
    }

    fn from_metadata(metadata: Metadata, settings: &OidcConfig) -> Result<Provider, ProviderError> {
        let client_secret = settings
            .client_secret
            .as_ref()
            .map(|secret| ClientSecret::new(secret.expose().clone()));
        let redirect_url = RedirectUrl::new(settings.redirect_url.to_string())
            .map_err(|error| ProviderError::Metadata(error.to_string()))?;
        let token_auth_method = super::client_auth::choose_auth_method(
            settings.token_auth_method,
            metadata
                .token_endpoint_auth_methods_supported()
                .map(Vec::as_slice),
        );
        let token_endpoint = metadata
            .token_endpoint()
            .map(|url| url.url().to_string())
            .unwrap_or_default();
        // private_key_jwt proves the client with an assertion, never a secret.
        let client_secret = client_secret
            .filter(|_| token_auth_method != crate::config::TokenAuthMethod::PrivateKeyJwt);
        let extra = metadata.additional_metadata().clone();
        let offers_offline_access = metadata.scopes_supported().is_some_and(|scopes| {
            scopes
                .iter()
                .any(|scope| scope.as_str() == "offline_access")
        });
        let end_session_endpoint = extra
            .end_session_endpoint
            .as_deref()
            .and_then(|text| Url::parse(text).ok());
        let jwks = metadata.jwks().clone();
        let jwks_uri = metadata.jwks_uri().clone();
        let issuer = metadata.issuer().clone();
        let client_id = ClientId::new(settings.client_id.clone());
        let client: PorticoClient = PorticoClient::from_provider_metadata(
            metadata,
            client_id.clone(),
            client_secret.clone(),
        )
        .set_redirect_uri(redirect_url)
        .set_auth_type(super::client_auth::auth_type(token_auth_method));
        Ok(Provider {
            client,
            expectations: Expectations {
                issuer,
                client_id,
                client_secret,
                extra_audiences: settings.extra_audiences.clone(),
                require_azp: settings.require_azp,
                allowed_algs: parse_algorithms(&settings.allowed_algs),
                clock_skew: settings.clock_skew,
            },
            end_session_endpoint,
            token_auth_method,
            token_endpoint,
            offers_offline_access,
            switch_account_prompt: switch_account_prompt(extra.prompt_values_supported.as_deref()),
            sends_iss_parameter: extra
                .authorization_response_iss_parameter_supported
                .unwrap_or(false),
            jwks_uri,
            jwks: ArcSwap::from_pointee(KeySet::new(jwks)),
            client_refetches: RefetchLimiter::default(),
            answer_refetch: tokio::sync::Mutex::new(()),
        })
    }
}

/// The provider, once discovered, shared by every request.
pub struct ProviderHandle {
    current: ArcSwapOption<Provider>,
    settings: OidcConfig,
    http: reqwest::Client,
    metrics: Metrics,
}

impl ProviderHandle {
    pub fn new(settings: OidcConfig, http: reqwest::Client, metrics: Metrics) -> Arc<Self> {
        Arc::new(ProviderHandle {
            current: ArcSwapOption::empty(),
            settings,
            http,
            metrics,
        })
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The provider, or None while discovery has not succeeded yet.
    pub fn get(&self) -> Option<Arc<Provider>> {
        self.current.load_full()
    }

    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// One discovery attempt: metadata (whose issuer openidconnect requires to
    /// equal ours exactly) and its JWKS.
    pub async fn discover(&self) -> Result<(), ProviderError> {
        let outcome = self.discover_once().await;
        self.metrics.jwks_fetch("discovery", outcome.is_ok());
        outcome
    }

    async fn discover_once(&self) -> Result<(), ProviderError> {
        let issuer = IssuerUrl::new(self.settings.issuer.clone())
            .map_err(|error| ProviderError::Discovery(error.to_string()))?;
        let metadata = Metadata::discover_async(issuer, &self.http)
            .await
            .map_err(|error| ProviderError::Discovery(error_chain(&error)))?;
        let provider = Provider::from_metadata(metadata, &self.settings)?;
        self.current.store(Some(Arc::new(provider)));
        Ok(())
    }

    /// Discovers, retrying with capped exponential backoff until it succeeds,
    /// then refreshes the JWKS every `jwks_refresh`. Runs for the process's life.
    pub fn spawn_background(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let handle = Arc::clone(self);
        tokio::spawn(async move {
            let mut backoff = Duration::from_millis(100);
            loop {
                match handle.discover().await {
                    Ok(()) => {
                        tracing::info!(issuer = %handle.settings.issuer, "provider metadata loaded");
                        break;
                    }
                    Err(error) => {
                        tracing::warn!(%error, retry_in = ?backoff, "provider discovery failed");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(DISCOVERY_MAX_BACKOFF);
                    }
                }
            }
            let mut interval = tokio::time::interval(handle.settings.jwks_refresh);
            interval.tick().await;
            loop {
                interval.tick().await;
                if let Err(error) = handle.refresh_jwks("periodic").await {
                    tracing::warn!(%error, "periodic JWKS refresh failed");
                }
            }
        })
    }

    async fn refresh_jwks(&self, trigger: &'static str) -> Result<(), ProviderError> {
        let Some(provider) = self.get() else {
            return Ok(());
        };
        let fetched = crate::telemetry::traced(
            "oidc.jwks_fetch",
            JsonWebKeySet::fetch_async(&provider.jwks_uri, &self.http),
        )
        .await;
        self.metrics.jwks_fetch(trigger, fetched.is_ok());
        let jwks: CoreJsonWebKeySet =
            fetched.map_err(|error| ProviderError::Jwks(error_chain(&error)))?;
        provider.jwks.store(Arc::new(KeySet::new(jwks)));
        tracing::info!("JWKS refreshed");
        Ok(())
    }

    /// Refetches the JWKS because a token in the provider's own answer (an
    /// ID token from the token endpoint) names `kid`, which the cached set
    /// lacks: the provider has rotated its keys. Never rate-limited; if a
    /// concurrent refetch already brought the key, no second fetch is made.
    /// Returns whether the set now may hold the key.
    pub async fn refresh_jwks_for_provider_answer(&self, kid: Option<&str>) -> bool {
        let Some(provider) = self.get() else {
            return false;
        };
        let _one_at_a_time = provider.answer_refetch.lock().await;
        if let (Some(kid), Some(current)) = (kid, self.get()) {
            if super::jws::jwks_has_kid(&current.jwks(), kid) {
                return true;
            }
        }
        match self.refresh_jwks("unknown_kid_answer").await {
            Ok(()) => true,
            Err(error) => {
                tracing::warn!(%error, "JWKS refetch for a rotated key failed");
                false
            }
        }
    }

    /// Refetches the JWKS because a token a client presented (a bearer
    /// token, a back-channel logout token) names an unknown `kid`, when
    /// the limiter allows at `now`. Returns whether a fresh set was fetched.
    pub async fn refresh_jwks_for_client_token(&self, kid: Option<&str>, now: Instant) -> bool {
        let Some(provider) = self.get() else {
            return false;
        };
        if !provider.client_refetches.allow(kid, now) {
            return false;
        }
        match self.refresh_jwks("unknown_kid").await {
            Ok(()) => true,
            Err(error) => {
                tracing::warn!(%error, "JWKS refetch for an unknown kid failed");
                false
            }
        }
    }
}

/// The `prompt` value that lets a person sign in with another account,
/// given the provider's `prompt_values_supported` (None: not published).
///
/// OpenID Connect Core 1.0 §3.1.2.1 defines `select_account` ("prompt the
/// End-User to select a user account") and `login` ("prompt the End-User for
/// reauthentication"), but an OP need not honour every value, and the
/// `prompt_values_supported` discovery field (Initiating User Registration
/// via OpenID Connect 1.0, §4.1) is how it says which it does. So:
/// `select_account` when the provider lists it (the closest meaning: choose
/// another account); otherwise `login`, when listed or when nothing is
/// published (Core's values; the safe default, since a fresh sign-in can be
/// made with any account); no `prompt` when the provider lists values but
/// neither of these (sending one it refuses could end the sign-in with an
/// error). portico has ended its own session before this sign-in starts, so
/// even then the person reaches the provider's sign-in, not the old session.
pub fn switch_account_prompt(supported: Option<&[String]>) -> Option<&'static str> {
    let Some(values) = supported else {
        return Some("login");
    };
    let listed = |wanted: &str| values.iter().any(|value| value == wanted);
    if listed("select_account") {
        Some("select_account")
    } else if listed("login") {
        Some("login")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(list: &[&str]) -> Vec<String> {
        list.iter().map(|value| (*value).to_string()).collect()
    }

    #[test]
    fn switching_accounts_asks_for_select_account_when_the_provider_lists_it() {
        let listed = values(&["none", "login", "consent", "select_account"]);
        assert_eq!(switch_account_prompt(Some(&listed)), Some("select_account"));
    }

    #[test]
    fn switching_accounts_asks_for_login_when_select_account_is_not_offered() {
        assert_eq!(switch_account_prompt(None), Some("login"));
        let listed = values(&["none", "login", "create"]);
        assert_eq!(switch_account_prompt(Some(&listed)), Some("login"));
    }

    #[test]
    fn switching_accounts_sends_no_prompt_the_provider_says_it_does_not_take() {
        assert_eq!(switch_account_prompt(Some(&values(&["none"]))), None);
        assert_eq!(switch_account_prompt(Some(&[])), None);
    }
}
