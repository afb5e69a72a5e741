//! The dev OP's plain-data inputs and outputs: users, options, misbehaviours, counters.

use std::time::Duration;

use serde_json::{Map, Value};

use super::descope::DescopeShape;
use super::signers::SigningAlg;

/// A user the dev OP can sign in.
#[derive(Clone, Debug)]
pub struct DevUser {
    pub sub: String,
    pub email: String,
    pub name: String,
    pub preferred_username: String,
    pub roles: Vec<String>,
    pub groups: Vec<String>,
    /// Added to the ID token and userinfo as they are (they cannot replace iss, sub, aud, azp,
    /// exp, iat, auth_time or nonce).
    pub extra_claims: Map<String, Value>,
}

impl DevUser {
    /// A user with email `{sub}@example.test`, name and username derived from `sub`, no roles.
    pub fn new(sub: &str) -> DevUser {
        let mut name = String::new();
        let mut characters = sub.chars();
        if let Some(first) = characters.next() {
            name.extend(first.to_uppercase());
            name.push_str(characters.as_str());
        }
        DevUser {
            sub: sub.to_owned(),
            email: format!("{sub}@example.test"),
            name: format!("{name} Example"),
            preferred_username: sub.to_owned(),
            roles: Vec::new(),
            groups: Vec::new(),
            extra_claims: Map::new(),
        }
    }

    /// The same user with these roles.
    pub fn with_roles(mut self, roles: &[&str]) -> Self {
        self.roles = roles.iter().map(|role| (*role).to_owned()).collect();
        self
    }
}

/// Which client authentication methods the token endpoint accepts (RFC 6749 §2.3.1).
#[derive(Clone, Debug, Copy, PartialEq, Eq)]
pub enum TokenAuthMethods {
    /// `client_secret_basic` and `client_secret_post`.
    BasicAndPost,
    /// `client_secret_post` only.
    PostOnly,
    /// `client_secret_basic` only.
    BasicOnly,
}

impl TokenAuthMethods {
    /// The names for the discovery document.
    pub(crate) fn names(self) -> &'static [&'static str] {
        match self {
            TokenAuthMethods::BasicAndPost => &["client_secret_basic", "client_secret_post"],
            TokenAuthMethods::PostOnly => &["client_secret_post"],
            TokenAuthMethods::BasicOnly => &["client_secret_basic"],
        }
    }

    pub(crate) fn allows_basic(self) -> bool {
        self != TokenAuthMethods::PostOnly
    }

    pub(crate) fn allows_post(self) -> bool {
        self != TokenAuthMethods::BasicOnly
    }
}

/// How the dev OP is set up; `Default` gives the test setup.
#[derive(Clone, Debug)]
pub struct DevOpOptions {
    pub client_id: String,
    pub client_secret: String,
    /// Exact match required at /authorize and /token; empty accepts any http(s) loopback URI.
    pub redirect_uris: Vec<String>,
    /// Exact match required at /end_session; empty accepts any.
    pub post_logout_redirect_uris: Vec<String>,
    pub users: Vec<DevUser>,
    pub token_auth_methods: TokenAuthMethods,
    pub id_token_ttl: Duration,
    pub access_token_ttl: Duration,
    /// Send the RFC 9207 `iss` parameter on the authorization response.
    pub send_iss_in_callback: bool,
    /// When set (e.g. "localhost"), the issuer is `http://{public_host}:{port}`.
    pub public_host: Option<String>,
    /// The strict `descope` profile: Descope's paths, claims, tokens and
    /// access-key exchange (see `descope.rs` for each behaviour's source).
    pub descope: Option<DescopeShape>,
    /// The algorithm ID tokens are signed with (access tokens stay RS256).
    pub signing_alg: SigningAlg,
    /// Algorithms whose keys the JWKS publishes from the start, besides the
    /// signing one and the RSA key (so tests can switch without a refetch).
    pub published_algs: Vec<SigningAlg>,
    /// Public JWKs of the client's `private_key_jwt` keys; empty: the token
    /// endpoint takes no client assertions.
    pub client_assertion_keys: Vec<Value>,
    /// Serve End-User claims (email, name, roles, groups, extra claims) at
    /// userinfo only, the ID token carrying just `sub` and the protocol
    /// claims, as conforming providers do for the code flow (OpenID Connect
    /// Core 1.0 §5.4). Ignored in the Descope shape, which keeps Descope's own
    /// behaviour.
    pub claims_at_userinfo: bool,
    /// Answer userinfo with a signed JWT (`application/jwt`, with `iss` and
    /// `aud`) instead of JSON (Core §5.3.2).
    pub signed_userinfo: bool,
}

impl Default for DevOpOptions {
    fn default() -> Self {
        DevOpOptions {
            client_id: "portico-test".to_owned(),
            client_secret: "devop-secret".to_owned(),
            redirect_uris: Vec::new(),
            post_logout_redirect_uris: Vec::new(),
            users: vec![
                DevUser::new("alice").with_roles(&["admin"]),
                DevUser::new("bob"),
            ],
            token_auth_methods: TokenAuthMethods::BasicAndPost,
            id_token_ttl: Duration::from_secs(300),
            access_token_ttl: Duration::from_secs(300),
            send_iss_in_callback: true,
            public_host: None,
            descope: None,
            signing_alg: SigningAlg::Rs256,
            published_algs: Vec::new(),
            client_assertion_keys: Vec::new(),
            claims_at_userinfo: false,
            signed_userinfo: false,
        }
    }
}

/// A way the dev OP can misbehave, so tests can prove the relying party refuses it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Misbehavior {
    None,
    /// Signature bytes corrupted.
    BadSignature,
    /// `iss` = "{issuer}/other".
    WrongIssuer,
    /// `aud` = "someone-else" only.
    WrongAudience,
    /// `aud` = [client_id, that].
    ExtraAudience(String),
    /// `azp` = "someone-else".
    WrongAzp,
    /// Never send `azp` (normally `azp` = client_id).
    OmitAzp,
    /// `exp` 10 minutes in the past (`iat` 20 minutes in the past).
    Expired,
    /// `iat` 10 minutes in the future.
    IssuedInFuture,
    /// `nonce` = "not-the-nonce" (also on refreshed ID tokens).
    WrongNonce,
    OmitNonce,
    /// Header `{"alg":"none"}`, empty signature.
    AlgNone,
    /// HS256 keyed with the client secret.
    HmacWithClientSecret,
    /// Signed with a key whose kid is never in the JWKS.
    UnknownKid,
    /// /token answers 400 `invalid_grant` for code grants.
    TokenEndpointError,
    /// /authorize redirects back with `error=access_denied`.
    AuthorizeError,
    /// The RFC 9207 `iss` parameter on the callback is wrong (sent even when
    /// `send_iss_in_callback` is off).
    WrongIssParam,
    /// The discovery document's `issuer` differs from the real one.
    DiscoveryWrongIssuer,
    /// Every endpoint answers 503.
    Unavailable,
    /// Every endpoint answers only after this long (at most two minutes).
    Slow(Duration),
    /// ID tokens carry no `kid` header; the JWKS holds one key
    /// (RP certification rp-id_token-kid-absent-single-jwks).
    OmitKid,
    /// ID tokens carry no `kid` header and the JWKS holds a second RSA key
    /// besides the signing one (rp-id_token-kid-absent-multiple-jwks).
    OmitKidAmongSeveralKeys,
    /// ID tokens carry no `sub` (rp-id_token-sub).
    OmitSub,
    /// ID tokens carry no `iat` (rp-id_token-iat).
    OmitIat,
    /// Userinfo answers about `sub` "someone-else" (rp-userinfo-bad-sub-claim).
    UserinfoWrongSub,
    /// Userinfo (only) answers 503.
    UserinfoUnavailable,
    /// Userinfo answers a signed JWT whose `aud` is "someone-else".
    UserinfoWrongAudience,
    /// Refresh responses carry no `id_token` (allowed: OpenID Connect Core
    /// 1.0 §12.2 says the refresh response "might not contain an id_token").
    RefreshWithoutIdToken,
}

/// What the dev OP has been asked so far.
#[derive(Clone, Debug, Default)]
pub struct DevOpStats {
    /// Sign-ins approved (each starts a new OP session).
    pub logins: u64,
    /// The `sid` of the most recent sign-in.
    pub last_sid: Option<String>,
    pub discovery_requests: u64,
    pub jwks_requests: u64,
    /// `GET /authorize` requests (the sign-in form's POST is not counted).
    pub authorize_requests: u64,
    /// Token requests with `grant_type=authorization_code`, successful or not.
    pub code_exchanges: u64,
    /// Token requests with `grant_type=refresh_token`, successful or not.
    pub refreshes: u64,
    pub end_session_requests: u64,
    /// Userinfo requests, answered or not.
    pub userinfo_requests: u64,
    /// The raw query string of the last `GET /authorize`.
    pub last_authorize_query: Option<String>,
    /// The `amr` of the last ID token issued (`["pwd"]` or `["webauthn"]`).
    pub last_amr: Vec<String>,
    /// The `alg` of the last ID token issued ("RS256", "ES384", …).
    pub last_id_token_alg: Option<String>,
    /// Token requests whose client authenticated with a `private_key_jwt` assertion.
    pub client_assertions: u64,
    /// Passkeys registered so far.
    pub passkeys_registered: u64,
    /// Passkey ceremonies refused (bad answer, unknown or used challenge, unknown credential).
    pub passkeys_refused: u64,
}
