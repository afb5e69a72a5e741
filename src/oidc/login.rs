//! Starting a login and finishing it at the callback.
//!
//! The login state (state, nonce, PKCE verifier, return URL, expiry) lives in
//! a short-lived encrypted cookie, one per attempt, so anonymous traffic never
//! writes to the store and several tabs can log in at once. The callback
//! accepts a state only if a live cookie for it exists; the cookie is removed
//! as it is used, so a state works once.

use std::time::SystemTime;

use openidconnect::core::CoreResponseType;
use openidconnect::{
    AuthenticationFlow, AuthorizationCode, CsrfToken, Nonce, OAuth2TokenResponse,
    PkceCodeChallenge, PkceCodeVerifier, RequestTokenError, Scope,
};
use serde::{Deserialize, Serialize};
use url::Url;

use super::claims::identity_from_json;
use super::provider::{Provider, ProviderHandle};
use super::userinfo::{complete_claims, UserinfoError};
use super::verify::{verify_id_token, NonceCheck, TokenRejection};
use crate::config::OidcConfig;
use crate::error::error_chain;
use crate::session::{Identity, TokenSet};

/// At most this many logins in flight per browser; the oldest is dropped.
pub const MAX_CONCURRENT_LOGINS: usize = 4;

/// What a login attempt remembers between start and callback.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LoginState {
    pub state: String,
    pub nonce: String,
    pub pkce_verifier: String,
    pub return_to: String,
    /// Unix seconds.
    pub expires_at: i64,
}

impl LoginState {
    /// The login cookie's name suffix: a prefix of the state, enough to find
    /// the right cookie; the whole state is compared after decryption.
    pub fn tag(&self) -> String {
        cookie_tag(&self.state)
    }
}

pub fn cookie_tag(state: &str) -> String {
    state
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(12)
        .collect()
}

/// A login to start: where to send the browser and what to remember.
pub struct LoginStart {
    pub authorize_url: Url,
    pub state: LoginState,
}

/// Builds the authorization request: code flow, state, nonce, PKCE S256,
/// configured scopes and extra parameters.
pub fn start_login(
    provider: &Provider,
    settings: &OidcConfig,
    extra_params: &[(String, String)],
    return_to: &Url,
    now: i64,
) -> LoginStart {
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let mut request = provider.client.authorize_url(
        AuthenticationFlow::<CoreResponseType>::AuthorizationCode,
        CsrfToken::new_random,
        Nonce::new_random,
    );
    for scope in settings.scopes.iter().filter(|scope| *scope != "openid") {
        request = request.add_scope(Scope::new(scope.clone()));
    }
    if provider.offers_offline_access
        && !settings
            .scopes
            .iter()
            .any(|scope| scope == "offline_access")
    {
        request = request.add_scope(Scope::new("offline_access".to_string()));
    }
    // A parameter this login sets itself (a route's `login_params`, the
    // `prompt` of a step-up or an account switch) replaces the configured one:
    // a provider seeing `prompt` twice may take either, or refuse.
    for (name, value) in settings.extra_auth_params.iter() {
        if !extra_params.iter().any(|(extra, _)| extra == name) {
            request = request.add_extra_param(name.clone(), value.clone());
        }
    }
    for (name, value) in extra_params {
        request = request.add_extra_param(name.clone(), value.clone());
    }
    // Descope's hosted flow; a route's own `flow` login parameter wins.
    if let Some(flow) = &settings.flow {
        if !extra_params.iter().any(|(name, _)| name == "flow") {
            request = request.add_extra_param("flow", flow.clone());
        }
    }
    let (authorize_url, state, nonce) = request.set_pkce_challenge(challenge).url();
    LoginStart {
        authorize_url,
        state: LoginState {
            state: state.secret().clone(),
            nonce: nonce.secret().clone(),
            pkce_verifier: verifier.secret().clone(),
            return_to: return_to.to_string(),
            expires_at: now + super::super::session::LOGIN_COOKIE_LIFETIME.whole_seconds(),
        },
    }
}

/// Why a callback did not produce a session.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error("the provider answered with error {error}")]
    ProviderRefused {
        error: String,
        description: Option<String>,
    },
    #[error("the callback carries no code or state")]
    MissingParameters,
    #[error("no live login matches this state (used, expired, or from another browser)")]
    UnknownState,
    #[error("the login expired before the callback")]
    Expired,
    #[error("the callback's iss parameter is not our provider's issuer")]
    IssuerMismatch,
    #[error("the provider promised an iss parameter on the callback and sent none")]
    MissingIssuer,
    #[error("the token endpoint refused the code: {0}")]
    TokenEndpointRefused(String),
    /// `invalid_client` (RFC 6749 §5.2): the provider does not accept how
    /// portico authenticates, a setup problem the operator must fix.
    #[error("the token endpoint refused portico's client authentication (invalid_client{method}): check oidc.client_id, oidc.client_secret (for Descope: an access key of this project) and oidc.token_auth_method")]
    ClientRejected { method: String },
    #[error("the token endpoint could not be reached: {0}")]
    TokenEndpointUnreachable(String),
    #[error("the token response has no ID token")]
    MissingIdToken,
    #[error("the ID token was refused: {0}")]
    InvalidIdToken(TokenRejection),
    #[error("userinfo: {0}")]
    Userinfo(UserinfoError),
}

impl LoginError {
    /// A short, stable name for logs and metrics.
    pub fn label(&self) -> &'static str {
        match self {
            LoginError::ProviderRefused { .. } => "provider_error",
            LoginError::MissingParameters => "missing_parameters",
            LoginError::UnknownState => "bad_state",
            LoginError::Expired => "login_expired",
            LoginError::IssuerMismatch => "iss_mismatch",
            LoginError::MissingIssuer => "iss_missing",
            LoginError::TokenEndpointRefused(_) => "token_endpoint_refused",
            LoginError::ClientRejected { .. } => "invalid_client",
            LoginError::TokenEndpointUnreachable(_) => "token_endpoint_unreachable",
            LoginError::MissingIdToken => "no_id_token",
            LoginError::InvalidIdToken(rejection) => rejection.label(),
            LoginError::Userinfo(error) => error.label(),
        }
    }
}

/// Checks the callback's `iss` parameter (RFC 9207) against the issuer.
pub fn check_callback_issuer(
    provider: &Provider,
    iss_parameter: Option<&str>,
) -> Result<(), LoginError> {
    match iss_parameter {
        Some(iss) if iss == provider.expectations.issuer.as_str() => Ok(()),
        Some(_) => Err(LoginError::IssuerMismatch),
        None if provider.sends_iss_parameter => Err(LoginError::MissingIssuer),
        None => Ok(()),
    }
}

/// Exchanges the code (with the PKCE verifier), verifies the ID token and
/// returns who signed in and their tokens.
pub async fn finish_login(
    handle: &ProviderHandle,
    provider: &Provider,
    settings: &OidcConfig,
    login: &LoginState,
    code: String,
    now: SystemTime,
) -> Result<(Identity, TokenSet), LoginError> {
    let mut request = provider
        .client
        .exchange_code(AuthorizationCode::new(code))
        .map_err(|error| LoginError::TokenEndpointUnreachable(error.to_string()))?
        .set_pkce_verifier(PkceCodeVerifier::new(login.pkce_verifier.clone()));
    for (name, value) in provider
        .client_assertion_params(settings, unix_seconds(now))
        .map_err(|error| LoginError::TokenEndpointUnreachable(error.to_string()))?
    {
        request = request.add_extra_param(name, value);
    }
    let http = handle.http();
    let response = crate::telemetry::traced(
        "oidc.token_exchange",
        request.request_async(&super::http::ProviderHttp(http)),
    )
    .await
    .map_err(|error| match error {
        RequestTokenError::ServerResponse(body)
            if *body.error() == openidconnect::core::CoreErrorResponseType::InvalidClient =>
        {
            LoginError::ClientRejected {
                method: format!(", sent as {}", provider.token_auth_method.name()),
            }
        }
        RequestTokenError::ServerResponse(body) => {
            LoginError::TokenEndpointRefused(body.error().to_string())
        }
        RequestTokenError::Request(inner) => {
            LoginError::TokenEndpointUnreachable(error_chain(&inner))
        }
        // The ID token is kept as text here (`PorticoTokenResponse`): one
        // without `sub` or `iat` is refused by `verify_id_token`, below.
        RequestTokenError::Parse(error, _) => LoginError::TokenEndpointRefused(error_chain(&error)),
        other => LoginError::TokenEndpointRefused(error_chain(&other)),
    })?;
    let id_token = response.raw_id_token().ok_or(LoginError::MissingIdToken)?;
    let nonce = Nonce::new(login.nonce.clone());
    let nonce_check = || {
        if settings.provider == crate::config::ProviderKind::Descope {
            NonceCheck::EqualWhenPresent(&nonce)
        } else {
            NonceCheck::Equal(&nonce)
        }
    };
    let id_token_claims = match verify_id_token(
        id_token,
        &provider.jwks(),
        &provider.expectations,
        nonce_check(),
        now,
    ) {
        Err(TokenRejection::UnknownKey) => {
            // The provider has rotated its keys (this token came in its own
            // authenticated answer): refetch at once and retry once.
            let kid = super::jws::unverified_kid(id_token);
            if handle
                .refresh_jwks_for_provider_answer(kid.as_deref())
                .await
            {
                let provider = handle
                    .get()
                    .ok_or(LoginError::InvalidIdToken(TokenRejection::UnknownKey))?;
                verify_id_token(
                    id_token,
                    &provider.jwks(),
                    &provider.expectations,
                    nonce_check(),
                    now,
                )
            } else {
                Err(TokenRejection::UnknownKey)
            }
        }
        other => other,
    }
    .map_err(LoginError::InvalidIdToken)?;

    let (all_claims, _asked) = complete_claims(
        handle,
        provider,
        settings,
        id_token_claims,
        response.access_token().secret(),
    )
    .await
    .map_err(LoginError::Userinfo)?;

    let now_seconds = unix_seconds(now);
    let mut identity = identity_from_json(&all_claims, settings);
    identity.access_token_expires_at = response
        .expires_in()
        .map(|lifetime| now_seconds + i64::try_from(lifetime.as_secs()).unwrap_or(i64::MAX / 4));
    let tokens = TokenSet {
        access_token: response.access_token().secret().clone(),
        refresh_token: response.refresh_token().map(|token| token.secret().clone()),
        id_token: id_token.to_string(),
    };
    Ok((identity, tokens))
}

pub fn unix_seconds(time: SystemTime) -> i64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map(|duration| i64::try_from(duration.as_secs()).unwrap_or(i64::MAX / 4))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookie_tag_is_a_short_alphanumeric_prefix() {
        assert_eq!(cookie_tag("ab-_cd12345678901234"), "abcd12345678");
        assert_eq!(cookie_tag("x"), "x");
    }
}
