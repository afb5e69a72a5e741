//! The validated configuration: what the rest of portico reads.
//!
//! Everything here has already passed validation, so the types are the
//! strong ones (socket addresses, URLs, durations, decoded secrets) and no
//! caller has to re-check a value. The raw, as-written form lives in `raw.rs`.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;
use url::Url;

/// A secret value that never shows itself in `Debug` or `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret<T>(T);

impl<T> Secret<T> {
    pub fn new(value: T) -> Self {
        Secret(value)
    }
    /// The secret itself. Call sites that use it are the only ones that see it.
    pub fn expose(&self) -> &T {
        &self.0
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("\"***\"")
    }
}

impl<T> fmt::Display for Secret<T> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("***")
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerConfig,
    pub oidc: OidcConfig,
    pub session: SessionConfig,
    pub routes: Vec<RouteConfig>,
    pub telemetry: TelemetryConfig,
}

/// `[telemetry]`: OpenTelemetry traces exported over OTLP/HTTP (protobuf).
#[derive(Debug, Clone, PartialEq)]
pub struct TelemetryConfig {
    /// Where spans go (`…/v1/traces`); `None` (key empty): no tracing at all.
    pub otlp_endpoint: Option<Url>,
    /// The share of new traces recorded, 0.0–1.0 (default 1.0). A trace
    /// continued from a trusted proxy's `traceparent` follows its sampled flag.
    pub sample_ratio: f64,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        TelemetryConfig {
            otlp_endpoint: None,
            sample_ratio: 1.0,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// The origin browsers use, normalised to `scheme://host[:port]/` (path "/").
    pub public_url: Url,
    pub trusted_proxies: Vec<IpNet>,
    /// Lower-cased host names; a leading dot (".example.com") admits the
    /// domain and its subdomains.
    pub allowed_redirect_hosts: Vec<String>,
    pub metrics_listen: Option<SocketAddr>,
    /// Envoy's gRPC external authorization (`Authorization/Check`) listens
    /// here when set.
    pub ext_authz_grpc_listen: Option<SocketAddr>,
    pub log_format: LogFormat,
    pub shutdown_timeout: Duration,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub setup_page: bool,
    /// The key that signs `X-Portico-Identity` (32 bytes, base64), from
    /// `identity_key` or `identity_key_file`; None: generated once and kept
    /// in Redis (sealed) so replicas agree.
    pub identity_key: Option<Secret<String>>,
    /// How long portico waits for an upstream's response headers (504 after).
    /// Key `upstream_timeout`, default "30s". An extension of the contract.
    pub upstream_timeout: Duration,
    /// Connecting to an upstream (TCP and TLS handshake); 504 after. Key
    /// `upstream_connect_timeout`, default "5s" (nginx's `proxy_connect_timeout`).
    pub upstream_connect_timeout: Duration,
    /// Between two reads of an upstream's response body; the body is cut
    /// after. Key `upstream_read_timeout`, default "60s" (`proxy_read_timeout`).
    pub upstream_read_timeout: Duration,
    /// Between two writes of a request body to an upstream (or two pieces of
    /// it from the client); 504 (408 when the client is the slow one) after.
    /// Key `upstream_send_timeout`, default "60s" (`proxy_send_timeout`).
    pub upstream_send_timeout: Duration,
    /// Serve HTTP/2 with prior knowledge (h2c) on the plain listener, beside
    /// HTTP/1.1. Key `h2c`, default true.
    pub h2c: bool,
    /// Request size limits (extensions of the contract), in bytes.
    pub limits: RequestLimits,
    /// What portico's own pages call the application (keys `app_name`, `logo_url`).
    pub branding: Branding,
}

/// The application's name on portico's pages (default "portico") and an
/// optional logo: an https URL or a path on portico's origin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Branding {
    pub app_name: String,
    pub logo_url: Option<String>,
}

impl Default for Branding {
    fn default() -> Self {
        Branding {
            app_name: "portico".to_owned(),
            logo_url: None,
        }
    }
}

/// How large a request may be. Keys `max_header_bytes` (all header names and
/// values together, default 64 KiB), `max_cookie_bytes` (the Cookie headers,
/// 16 KiB), `max_query_bytes` (the query string, 8 KiB) and `max_body_bytes`
/// (a proxied body, counted as it streams, 10 MiB).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestLimits {
    pub max_header_bytes: u64,
    pub max_cookie_bytes: u64,
    pub max_query_bytes: u64,
    pub max_body_bytes: u64,
}

impl Default for RequestLimits {
    fn default() -> Self {
        RequestLimits {
            max_header_bytes: 64 * 1024,
            max_cookie_bytes: 16 * 1024,
            max_query_bytes: 8 * 1024,
            max_body_bytes: 10 * 1024 * 1024,
        }
    }
}

/// `[oidc] userinfo`: when portico asks the provider's userinfo endpoint
/// for the End-User claims (OpenID Connect Core 1.0 §5.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserinfoMode {
    /// Only when the ID token lacks a claim portico uses (`wanted_claims`).
    Auto,
    /// At every sign-in and refresh.
    Always,
    /// Never: the ID token's claims are all there is.
    Never,
}

impl UserinfoMode {
    pub fn name(self) -> &'static str {
        match self {
            UserinfoMode::Auto => "auto",
            UserinfoMode::Always => "always",
            UserinfoMode::Never => "never",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderKind {
    Generic,
    Descope,
}

#[derive(Debug, Clone)]
pub struct OidcConfig {
    pub provider: ProviderKind,
    /// Exactly as configured (or derived for Descope); compared byte for byte.
    pub issuer: String,
    pub client_id: String,
    pub client_secret: Option<Secret<String>>,
    pub redirect_url: Url,
    pub post_logout_redirect_url: Url,
    pub scopes: Vec<String>,
    pub extra_auth_params: BTreeMap<String, String>,
    pub extra_audiences: Vec<String>,
    /// Audiences a bearer token from the provider must carry. Empty: the
    /// client id and `extra_audiences` (ID-token audiences) are accepted;
    /// set: only these, so a token meant for portico itself (an ID token,
    /// whose audience is the client id) never opens an API.
    pub bearer_audiences: Vec<String>,
    pub require_azp: bool,
    /// Upper-case JOSE names, each one of RS256 RS384 RS512 PS256 PS384 PS512
    /// ES256 ES384 ES512 EdDSA (HS* only when explicitly listed).
    pub allowed_algs: Vec<String>,
    pub clock_skew: Duration,
    pub jwks_refresh: Duration,
    /// How long one call to the provider (discovery, JWKS, token endpoint)
    /// may take. Key `provider_timeout`, default "10s"; an extension.
    pub provider_timeout: Duration,
    pub roles_claim: String,
    pub groups_claim: String,
    /// Where permissions live (Descope: "permissions").
    pub permissions_claim: String,
    /// More issuers whose bearer JWTs are accepted (machine clients).
    pub extra_jwt_issuers: Vec<ExtraJwtIssuer>,
    /// Claims a session keeps beyond the standard ones, because a route rule
    /// reads them (derived from the routes, not a key).
    pub kept_claims: Vec<String>,
    /// Key `userinfo`, default "auto".
    pub userinfo: UserinfoMode,
    /// The claims (dot paths) portico reads from a person's claims: email,
    /// name, preferred_username, the roles and groups claims, the
    /// permissions claim when a route requires permissions, and every claim a
    /// route rule names. With `userinfo = "auto"`, an ID token lacking one of
    /// them sends portico to the userinfo endpoint. Derived, not a key.
    pub wanted_claims: Vec<String>,
    /// Descope only.
    pub project_id: Option<String>,
    pub base_url: Option<Url>,
    pub flow: Option<String>,
    /// How portico authenticates at the token endpoint.
    pub token_auth_method: TokenAuthMethod,
    /// `private_key_jwt` only: the PKCS#8 key (DER) that signs client
    /// assertions, and the kid to name (RFC 7523).
    pub client_assertion_key: Option<Secret<Vec<u8>>>,
    pub client_assertion_kid: Option<String>,
}

/// `oidc.token_auth_method`: client authentication at the token endpoint
/// (OpenID Connect Core §9).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenAuthMethod {
    /// Basic, unless discovery lists only `client_secret_post` (key unset).
    FromDiscovery,
    ClientSecretBasic,
    ClientSecretPost,
    /// A JWT signed with the client's private key (RFC 7523 §2.2).
    PrivateKeyJwt,
}

impl TokenAuthMethod {
    pub fn name(self) -> &'static str {
        match self {
            TokenAuthMethod::FromDiscovery => "",
            TokenAuthMethod::ClientSecretBasic => "client_secret_basic",
            TokenAuthMethod::ClientSecretPost => "client_secret_post",
            TokenAuthMethod::PrivateKeyJwt => "private_key_jwt",
        }
    }
}

impl OidcConfig {
    /// Descope's session-token JWKS (`{base_url}/v2/keys/{project_id}`), for
    /// bearer Descope session JWTs; None for other providers.
    pub fn descope_session_jwks_url(&self) -> Option<Url> {
        if self.provider != ProviderKind::Descope {
            return None;
        }
        let base = self.base_url.as_ref()?;
        let project = self.project_id.as_ref()?;
        base.join(&format!("/v2/keys/{project}")).ok()
    }
}

/// `[[oidc.extra_jwt_issuers]]`: an issuer of bearer JWTs besides the provider.
#[derive(Debug, Clone)]
pub struct ExtraJwtIssuer {
    pub issuer: String,
    pub jwks_url: Url,
    /// Audiences accepted from this issuer (a token must carry one).
    pub audiences: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    Redis,
    Memory,
}

#[derive(Debug, Clone)]
pub struct SessionConfig {
    pub store: StoreKind,
    pub redis_url: Secret<String>,
    pub key_prefix: String,
    pub cookie_name: String,
    /// Decoded bytes, at least 32.
    pub cookie_secret: Secret<Vec<u8>>,
    pub cookie_secure: bool,
    pub cookie_domain: Option<String>,
    /// Cookie names carry `__Host-` (derived: https public URL, Secure, no
    /// `cookie_domain`; not a key).
    pub cookie_host_prefix: bool,
    pub ttl: Duration,
    pub idle_timeout: Duration,
    pub refresh_before: Duration,
    pub local_cache: bool,
}

#[derive(Debug, Clone)]
pub struct RouteConfig {
    /// Starts with "/".
    pub path_prefix: String,
    /// Lower-case host (may carry ":port"), matched against the request's Host.
    pub host: Option<String>,
    pub upstream: Url,
    /// `upstream`'s origin ("http://host:port"), the label in metrics;
    /// kept here so requests need not serialise it each time.
    pub upstream_origin: std::sync::Arc<str>,
    /// The `Host` header for `upstream` (its host, and its port unless the
    /// scheme's default), made once rather than per request.
    pub upstream_host: Option<http::HeaderValue>,
    /// `upstream_ca_file`: certificate authorities trusted for this https
    /// upstream besides the built-in (webpki) roots.
    pub upstream_ca: Option<UpstreamCa>,
    pub public: bool,
    pub api: bool,
    pub require_roles: Vec<String>,
    pub rules: RouteRules,
    /// Extra authorization parameters for logins started on this route
    /// (and step-up logins), e.g. a Descope flow.
    pub login_params: BTreeMap<String, String>,
    /// Read a bearer JWT from this cookie when there is no Authorization header.
    pub token_cookie: Option<String>,
    /// Add `X-Portico-Identity`, a short-lived JWT signed by portico.
    pub identity_jwt: bool,
    /// Add `X-Forwarded-Access-Token`.
    pub pass_access_token: bool,
    /// Pass paths holding an encoded slash (`%2F`, `%5C`) or a `\`
    /// (refused with 400 otherwise; see `request_path`).
    pub allow_encoded_slashes: bool,
    /// Pass paths holding `;` path parameters (refused with 400 otherwise).
    pub allow_path_parameters: bool,
    /// Match `path_prefix` in any letter case, for case-insensitive upstreams.
    pub case_insensitive: bool,
    /// Tighten the upstream's `Cache-Control` to at least `private` on this
    /// protected route's answers (default true).
    pub cache_control_private: bool,
}

/// Rules a request must pass, each one given (all of them, together).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouteRules {
    /// Every one of these roles.
    pub require_all_roles: Vec<String>,
    /// Every one of these permissions.
    pub require_permissions: Vec<String>,
    /// Any one of these roles in this tenant (Descope `tenants` claim).
    pub require_tenant_roles: Option<TenantRoles>,
    /// Exact, lower-case addresses; an email the provider marks unverified
    /// (`email_verified: false`) never matches.
    pub allowed_emails: Vec<String>,
    /// Exact, lower-case domains of a single-@ address; unverified emails never match.
    pub allowed_email_domains: Vec<String>,
    /// Claim (dot path) → accepted values; the claim must hold one of them.
    pub require_claims: BTreeMap<String, Vec<String>>,
    /// Every one of these authentication methods (e.g. "webauthn"); a browser
    /// user without them is sent to sign in again (step-up).
    pub require_amr: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantRoles {
    pub tenant: String,
    pub roles: Vec<String>,
}

/// The PEM certificates of a route's `upstream_ca_file`, read and checked
/// when the config is.
#[derive(Debug, Clone)]
pub struct UpstreamCa {
    /// The file, for messages.
    pub path: PathBuf,
    /// Each certificate of the file, DER.
    pub certificates: std::sync::Arc<[rustls_pki_types::CertificateDer<'static>]>,
}

/// An upstream's origin, the key of its connections and its label in
/// metrics: `scheme://host:port` (`h2c://` URLs have no origin of their own
/// in the URL standard, so it is written out the same way).
pub fn upstream_origin(url: &Url) -> std::sync::Arc<str> {
    match url.scheme() {
        "http" | "https" => url.origin().ascii_serialization().into(),
        scheme => {
            let host = url.host_str().unwrap_or_default();
            let port = url.port().unwrap_or(80);
            format!("{scheme}://{host}:{port}").into()
        }
    }
}

/// `Host` for requests to `url`: host, plus ":port" when the port is not
/// the scheme's default (the url crate already drops a default port).
pub fn host_header(url: &Url) -> Option<http::HeaderValue> {
    let host = url.host_str()?;
    let text = match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_string(),
    };
    http::HeaderValue::from_str(&text).ok()
}

impl RouteConfig {
    /// `login_params` as the (name, value) pairs a login request takes.
    pub fn login_param_pairs(&self) -> Vec<(String, String)> {
        self.login_params
            .iter()
            .map(|(name, value)| (name.clone(), value.clone()))
            .collect()
    }

    /// A protected route to `upstream` for everything under `path_prefix`, no rules.
    pub fn new(path_prefix: &str, upstream: Url) -> RouteConfig {
        RouteConfig {
            path_prefix: path_prefix.to_string(),
            host: None,
            upstream_origin: upstream_origin(&upstream),
            upstream_host: host_header(&upstream),
            upstream_ca: None,
            upstream,
            public: false,
            api: false,
            require_roles: Vec::new(),
            rules: RouteRules::default(),
            login_params: BTreeMap::new(),
            token_cookie: None,
            identity_jwt: false,
            pass_access_token: false,
            allow_encoded_slashes: false,
            allow_path_parameters: false,
            case_insensitive: false,
            cache_control_private: true,
        }
    }
}

#[cfg(test)]
mod host_header_tests {
    use super::*;

    #[test]
    fn the_host_header_keeps_only_a_port_that_is_not_the_default() {
        let host = |text: &str| host_header(&Url::parse(text).unwrap()).unwrap();
        assert_eq!(host("http://app.internal/"), "app.internal");
        assert_eq!(host("http://app.internal:80/x"), "app.internal");
        assert_eq!(host("https://app.internal:443"), "app.internal");
        assert_eq!(host("http://127.0.0.1:9100"), "127.0.0.1:9100");
        assert_eq!(host("https://app.internal:8443/base/"), "app.internal:8443");
        assert_eq!(host("http://[::1]:9100"), "[::1]:9100");
    }
}
