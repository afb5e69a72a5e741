//! openidconnect's generic types, pinned to what portico uses.
//!
//! portico reads claims beyond the standard ones (roles, groups, sid, amr,
//! Descope's tenants), so the client is the core client with one change:
//! every other claim is kept in `OtherClaims`. Provider metadata keeps the
//! two fields portico needs that the core metadata lacks.

use openidconnect::core::{
    CoreAuthDisplay, CoreAuthPrompt, CoreClaimName, CoreClaimType, CoreClientAuthMethod,
    CoreErrorResponseType, CoreGenderClaim, CoreGrantType, CoreJsonWebKey,
    CoreJweContentEncryptionAlgorithm, CoreJweKeyManagementAlgorithm, CoreJwsSigningAlgorithm,
    CoreResponseMode, CoreResponseType, CoreRevocableToken, CoreRevocationErrorResponse,
    CoreSubjectIdentifierType, CoreTokenIntrospectionResponse, CoreTokenType,
};
use std::sync::OnceLock;
use std::time::Duration;

use openidconnect::{
    AccessToken, AdditionalClaims, AdditionalProviderMetadata, Client, EndpointMaybeSet,
    EndpointNotSet, EndpointSet, IdToken, IdTokenClaims, OAuth2TokenResponse, ProviderMetadata,
    RefreshToken, Scope, StandardErrorResponse,
};
use serde::{Deserialize, Serialize};

/// Every claim openidconnect does not model itself.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct OtherClaims {
    #[serde(flatten)]
    pub claims: serde_json::Map<String, serde_json::Value>,
}
impl AdditionalClaims for OtherClaims {}

/// Provider metadata fields beyond OpenID Connect Discovery's core set.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ExtraProviderMetadata {
    /// RP-Initiated Logout.
    #[serde(default)]
    pub end_session_endpoint: Option<String>,
    /// RFC 9207: the provider sends `iss` on the authorization response.
    #[serde(default)]
    pub authorization_response_iss_parameter_supported: Option<bool>,
    /// Back-Channel Logout.
    #[serde(default)]
    pub backchannel_logout_supported: Option<bool>,
    /// The `prompt` values the provider honours (Initiating User Registration
    /// via OpenID Connect 1.0, §4.1: the discovery field `prompt_values_supported`).
    #[serde(default)]
    pub prompt_values_supported: Option<Vec<String>>,
}
impl AdditionalProviderMetadata for ExtraProviderMetadata {}

pub type Metadata = ProviderMetadata<
    ExtraProviderMetadata,
    CoreAuthDisplay,
    CoreClientAuthMethod,
    CoreClaimName,
    CoreClaimType,
    CoreGrantType,
    CoreJweContentEncryptionAlgorithm,
    CoreJweKeyManagementAlgorithm,
    CoreJsonWebKey,
    CoreResponseMode,
    CoreResponseType,
    CoreSubjectIdentifierType,
>;

pub type PorticoIdToken = IdToken<
    OtherClaims,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJwsSigningAlgorithm,
>;
pub type PorticoIdTokenClaims = IdTokenClaims<OtherClaims, CoreGenderClaim>;

/// A token endpoint's answer (RFC 6749 §5.1, OpenID Connect Core §3.1.3.3),
/// the ID token kept as the provider sent it: portico checks it from that
/// text (`verify::verify_id_token`), so it is not also decoded into
/// openidconnect's typed claims while the response is read. The fields are
/// read as oauth2's `StandardTokenResponse` reads them.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PorticoTokenResponse {
    access_token: AccessToken,
    #[serde(deserialize_with = "oauth2::helpers::deserialize_untagged_enum_case_insensitive")]
    token_type: CoreTokenType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    expires_in: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    refresh_token: Option<RefreshToken>,
    #[serde(rename = "scope", default, skip_serializing_if = "Option::is_none")]
    #[serde(deserialize_with = "oauth2::helpers::deserialize_space_delimited_vec")]
    #[serde(serialize_with = "oauth2::helpers::serialize_space_delimited_vec")]
    scopes: Option<Vec<Scope>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    id_token: Option<String>,
    /// The ID token as openidconnect types it, decoded only if asked for
    /// ([`openidconnect::TokenResponse::id_token`]); None when there is
    /// none or it does not decode.
    #[serde(skip)]
    typed_id_token: OnceLock<Option<PorticoIdToken>>,
}

impl PorticoTokenResponse {
    /// The ID token, as the provider sent it.
    pub fn raw_id_token(&self) -> Option<&str> {
        self.id_token.as_deref()
    }
}

impl OAuth2TokenResponse for PorticoTokenResponse {
    type TokenType = CoreTokenType;
    fn access_token(&self) -> &AccessToken {
        &self.access_token
    }
    fn token_type(&self) -> &CoreTokenType {
        &self.token_type
    }
    fn expires_in(&self) -> Option<Duration> {
        self.expires_in.map(Duration::from_secs)
    }
    fn refresh_token(&self) -> Option<&RefreshToken> {
        self.refresh_token.as_ref()
    }
    fn scopes(&self) -> Option<&Vec<Scope>> {
        self.scopes.as_ref()
    }
}

impl
    openidconnect::TokenResponse<
        OtherClaims,
        CoreGenderClaim,
        CoreJweContentEncryptionAlgorithm,
        CoreJwsSigningAlgorithm,
    > for PorticoTokenResponse
{
    fn id_token(&self) -> Option<&PorticoIdToken> {
        self.typed_id_token
            .get_or_init(|| self.id_token.as_deref()?.parse().ok())
            .as_ref()
    }
}

/// The client as built from discovery: auth URL set, token and userinfo URLs maybe.
pub type PorticoClient = Client<
    OtherClaims,
    CoreAuthDisplay,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJsonWebKey,
    CoreAuthPrompt,
    StandardErrorResponse<CoreErrorResponseType>,
    PorticoTokenResponse,
    CoreTokenIntrospectionResponse,
    CoreRevocableToken,
    CoreRevocationErrorResponse,
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;
