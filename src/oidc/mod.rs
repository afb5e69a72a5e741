//! OpenID Connect: provider discovery and keys, login, token verification.

mod algorithms;
mod bearer;
mod claims;
mod client_auth;
mod descope;
mod http;
mod id_claims;
mod jws;
mod keyset;
mod login;
mod logout;
mod provider;
mod refetch;
mod refresh;
mod token_kind;
mod types;
mod userinfo;
mod verify;

pub use algorithms::{key_fits, signature_verifies, ASYMMETRIC_ALGORITHMS};
pub use bearer::{check_claims, BearerVerifier};
pub use claims::{claim_at, identity_from_claims, identity_from_json, string_list};
pub use client_auth::{
    assertion_key_algorithm, auth_type, choose_auth_method, client_assertion, CLIENT_ASSERTION_TYPE,
};
pub use http::{provider_call, ProviderCallError, ProviderHttp};
pub use jws::{unverified_kid, verify_jws, VerifiedJws};
pub use keyset::KeySet;
pub use login::{
    check_callback_issuer, cookie_tag, finish_login, start_login, unix_seconds, LoginError,
    LoginStart, LoginState, MAX_CONCURRENT_LOGINS,
};
pub use logout::{validate_logout_token, LogoutRequest, LogoutTokenError, LOGOUT_TOKEN_MAX_AGE};
pub use provider::{switch_account_prompt, Provider, ProviderError, ProviderHandle};
pub use refetch::{
    GLOBAL_INTERVAL as JWKS_CLIENT_REFETCH_INTERVAL, PER_KID_INTERVAL as JWKS_PER_KID_INTERVAL,
};
pub use refresh::{ensure_fresh, needs_refresh, RefreshError};
pub use token_kind::{bearer_audiences, check_access_token_kind};
pub use types::{OtherClaims, PorticoIdToken, PorticoIdTokenClaims};
pub use userinfo::{UserinfoError, MAX_USERINFO_BYTES};
pub use verify::{parse_algorithms, verify_id_token, Expectations, NonceCheck, TokenRejection};
