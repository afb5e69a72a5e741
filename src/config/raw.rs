//! The configuration exactly as written: one serde struct per TOML section.
//!
//! Fields are deliberately permissive (URLs, addresses and durations are plain
//! strings) so that serde only checks the shape of the file and `validate.rs`
//! judges every value, reporting all problems at once instead of stopping at
//! the first one serde would trip over. Each default here is the one the
//! config contract in DESIGN.md shows.
//!
//! [`SCHEMA`] lists every key with the kind of TOML value it takes. The type
//! check, the environment overrides and the "did you mean" suggestions all
//! read it; a test keeps it in step with the structs.

use std::collections::BTreeMap;

use serde::Deserialize;

/// The whole file.
#[derive(Clone, Default, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(default)]
pub(crate) struct RawConfig {
    pub server: RawServer,
    pub oidc: RawOidc,
    pub session: RawSession,
    pub routes: Vec<RawRoute>,
    pub telemetry: RawTelemetry,
}

/// `[telemetry]` (issue 21): OpenTelemetry traces, off unless an endpoint is set.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(default)]
pub(crate) struct RawTelemetry {
    pub otlp_endpoint: String,
    pub sample_ratio: f64,
}

impl Default for RawTelemetry {
    fn default() -> Self {
        RawTelemetry {
            otlp_endpoint: String::new(),
            sample_ratio: 1.0,
        }
    }
}

/// `[server]`
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(default)]
pub(crate) struct RawServer {
    pub listen: String,
    pub public_url: String,
    pub trusted_proxies: Vec<String>,
    pub allowed_redirect_hosts: Vec<String>,
    pub metrics_listen: String,
    pub ext_authz_grpc_listen: String,
    pub log_format: String,
    pub shutdown_timeout: String,
    pub upstream_timeout: String,
    pub upstream_connect_timeout: String,
    pub upstream_read_timeout: String,
    pub upstream_send_timeout: String,
    pub h2c: bool,
    pub tls_cert: String,
    pub tls_key: String,
    pub setup_page: bool,
    pub identity_key: String,
    pub identity_key_file: String,
    pub max_header_bytes: String,
    pub max_cookie_bytes: String,
    pub max_query_bytes: String,
    pub max_body_bytes: String,
    pub app_name: String,
    pub logo_url: String,
}

impl Default for RawServer {
    fn default() -> Self {
        RawServer {
            listen: "127.0.0.1:4180".to_owned(),
            public_url: String::new(),
            trusted_proxies: Vec::new(),
            allowed_redirect_hosts: Vec::new(),
            metrics_listen: String::new(),
            ext_authz_grpc_listen: String::new(),
            log_format: "text".to_owned(),
            shutdown_timeout: "30s".to_owned(),
            upstream_timeout: "30s".to_owned(),
            upstream_connect_timeout: "5s".to_owned(),
            upstream_read_timeout: "60s".to_owned(),
            upstream_send_timeout: "60s".to_owned(),
            h2c: true,
            tls_cert: String::new(),
            tls_key: String::new(),
            setup_page: false,
            identity_key: String::new(),
            identity_key_file: String::new(),
            max_header_bytes: "64KiB".to_owned(),
            max_cookie_bytes: "16KiB".to_owned(),
            max_query_bytes: "8KiB".to_owned(),
            max_body_bytes: "10MiB".to_owned(),
            app_name: "portico".to_owned(),
            logo_url: String::new(),
        }
    }
}

/// `[oidc]`. Holds secrets, so it has no `Debug`.
#[derive(Clone, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(default)]
pub(crate) struct RawOidc {
    pub provider: String,
    pub issuer: String,
    pub client_id: String,
    pub client_secret: String,
    pub client_secret_file: String,
    pub redirect_url: String,
    pub post_logout_redirect_url: String,
    /// None: the provider's default (Descope asks for more, see validate_oidc).
    pub scopes: Option<Vec<String>>,
    pub extra_auth_params: BTreeMap<String, String>,
    pub extra_audiences: Vec<String>,
    pub bearer_audiences: Vec<String>,
    pub require_azp: bool,
    pub allowed_algs: Vec<String>,
    pub clock_skew: String,
    pub jwks_refresh: String,
    pub provider_timeout: String,
    pub roles_claim: String,
    pub groups_claim: String,
    pub permissions_claim: String,
    pub userinfo: String,
    pub extra_jwt_issuers: Vec<RawExtraJwtIssuer>,
    pub project_id: String,
    pub base_url: String,
    pub flow: String,
    pub token_auth_method: String,
    pub client_assertion_key_file: String,
    pub client_assertion_kid: String,
}

impl Default for RawOidc {
    fn default() -> Self {
        RawOidc {
            provider: "generic".to_owned(),
            issuer: String::new(),
            client_id: String::new(),
            client_secret: String::new(),
            client_secret_file: String::new(),
            redirect_url: String::new(),
            post_logout_redirect_url: String::new(),
            scopes: None,
            extra_auth_params: BTreeMap::new(),
            extra_audiences: Vec::new(),
            bearer_audiences: Vec::new(),
            require_azp: false,
            allowed_algs: strings(crate::oidc::ASYMMETRIC_ALGORITHMS),
            clock_skew: "30s".to_owned(),
            jwks_refresh: "15m".to_owned(),
            provider_timeout: "10s".to_owned(),
            roles_claim: "roles".to_owned(),
            groups_claim: "groups".to_owned(),
            permissions_claim: "permissions".to_owned(),
            userinfo: "auto".to_owned(),
            extra_jwt_issuers: Vec::new(),
            project_id: String::new(),
            base_url: String::new(),
            flow: String::new(),
            token_auth_method: String::new(),
            client_assertion_key_file: String::new(),
            client_assertion_kid: String::new(),
        }
    }
}

/// `[session]`. Holds secrets, so it has no `Debug`.
#[derive(Clone, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(default)]
pub(crate) struct RawSession {
    pub store: String,
    pub redis_url: String,
    pub key_prefix: String,
    pub cookie_name: String,
    pub cookie_secret: String,
    pub cookie_secret_file: String,
    /// `None`: derived from `server.public_url` (true for https).
    pub cookie_secure: Option<bool>,
    pub cookie_domain: String,
    pub ttl: String,
    pub idle_timeout: String,
    pub refresh_before: String,
    pub local_cache: bool,
}

impl Default for RawSession {
    fn default() -> Self {
        RawSession {
            store: "redis".to_owned(),
            redis_url: "redis://127.0.0.1:6379/0".to_owned(),
            key_prefix: "portico:".to_owned(),
            cookie_name: "portico_session".to_owned(),
            cookie_secret: String::new(),
            cookie_secret_file: String::new(),
            cookie_secure: None,
            cookie_domain: String::new(),
            ttl: "12h".to_owned(),
            idle_timeout: "1h".to_owned(),
            refresh_before: "60s".to_owned(),
            local_cache: true,
        }
    }
}

/// One `[[routes]]` table. `upstream` has no useful default; validation
/// reports it when missing, alongside every other problem.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(default)]
pub(crate) struct RawRoute {
    pub path_prefix: String,
    pub host: String,
    pub upstream: String,
    pub upstream_ca_file: String,
    pub public: bool,
    pub api: bool,
    pub require_roles: Vec<String>,
    pub require_all_roles: Option<Vec<String>>,
    pub require_permissions: Option<Vec<String>>,
    pub require_tenant_roles: Option<RawTenantRoles>,
    pub allowed_emails: Option<Vec<String>>,
    pub allowed_email_domains: Option<Vec<String>>,
    pub require_claims: Option<BTreeMap<String, Vec<String>>>,
    pub require_amr: Option<Vec<String>>,
    pub login_params: BTreeMap<String, String>,
    pub token_cookie: String,
    pub identity_jwt: bool,
    pub pass_access_token: bool,
    pub allow_encoded_slashes: bool,
    pub allow_path_parameters: bool,
    pub case_insensitive: bool,
    pub cache_control_private: bool,
}

/// `require_tenant_roles = { tenant = "…", roles = ["…"] }`
#[derive(Debug, Clone, Default, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(default)]
pub(crate) struct RawTenantRoles {
    pub tenant: String,
    pub roles: Vec<String>,
}

/// `[[oidc.extra_jwt_issuers]]`
#[derive(Debug, Clone, Default, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(default)]
pub(crate) struct RawExtraJwtIssuer {
    pub issuer: String,
    pub jwks_url: String,
    pub audiences: Vec<String>,
}

impl Default for RawRoute {
    fn default() -> Self {
        RawRoute {
            path_prefix: "/".to_owned(),
            host: String::new(),
            upstream: String::new(),
            upstream_ca_file: String::new(),
            public: false,
            api: false,
            require_roles: Vec::new(),
            require_all_roles: None,
            require_permissions: None,
            require_tenant_roles: None,
            allowed_emails: None,
            allowed_email_domains: None,
            require_claims: None,
            require_amr: None,
            login_params: BTreeMap::new(),
            token_cookie: String::new(),
            identity_jwt: false,
            pass_access_token: false,
            allow_encoded_slashes: false,
            allow_path_parameters: false,
            case_insensitive: false,
            cache_control_private: true,
        }
    }
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|item| (*item).to_owned()).collect()
}

/// The kind of TOML value a key takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Text,
    Flag,
    TextList,
    /// A table of string values, e.g. `{ prompt = "login" }`.
    TextTable,
    /// A table whose entries validation judges.
    Table,
    /// A list of tables (`[[section.key]]`).
    TableList,
    /// An integer or a floating-point number.
    Number,
}

impl Kind {
    /// How the kind is described in an error ("expected …").
    pub(crate) fn describe(self) -> &'static str {
        match self {
            Kind::Text => "a string",
            Kind::Flag => "true or false",
            Kind::TextList => "a list of strings",
            Kind::TextTable => "a table of strings",
            Kind::Table => "a table",
            Kind::TableList => "a list of tables",
            Kind::Number => "a number",
        }
    }
}

/// One section of the file and its keys.
pub(crate) struct Section {
    pub name: &'static str,
    /// `[[routes]]` is an array of tables; the others are single tables.
    pub repeated: bool,
    pub keys: &'static [(&'static str, Kind)],
}

impl Section {
    pub(crate) fn kind_of(&self, key: &str) -> Option<Kind> {
        self.keys
            .iter()
            .find(|(name, _)| *name == key)
            .map(|(_, kind)| *kind)
    }

    pub(crate) fn key_names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.keys.iter().map(|(name, _)| *name)
    }
}

/// Every section and key portico accepts.
pub(crate) const SCHEMA: &[Section] = &[
    Section {
        name: "server",
        repeated: false,
        keys: &[
            ("listen", Kind::Text),
            ("public_url", Kind::Text),
            ("trusted_proxies", Kind::TextList),
            ("allowed_redirect_hosts", Kind::TextList),
            ("metrics_listen", Kind::Text),
            ("ext_authz_grpc_listen", Kind::Text),
            ("log_format", Kind::Text),
            ("shutdown_timeout", Kind::Text),
            ("upstream_timeout", Kind::Text),
            ("upstream_connect_timeout", Kind::Text),
            ("upstream_read_timeout", Kind::Text),
            ("upstream_send_timeout", Kind::Text),
            ("h2c", Kind::Flag),
            ("tls_cert", Kind::Text),
            ("tls_key", Kind::Text),
            ("setup_page", Kind::Flag),
            ("identity_key", Kind::Text),
            ("identity_key_file", Kind::Text),
            ("max_header_bytes", Kind::Text),
            ("max_cookie_bytes", Kind::Text),
            ("max_query_bytes", Kind::Text),
            ("max_body_bytes", Kind::Text),
            ("app_name", Kind::Text),
            ("logo_url", Kind::Text),
        ],
    },
    Section {
        name: "oidc",
        repeated: false,
        keys: &[
            ("provider", Kind::Text),
            ("issuer", Kind::Text),
            ("client_id", Kind::Text),
            ("client_secret", Kind::Text),
            ("client_secret_file", Kind::Text),
            ("redirect_url", Kind::Text),
            ("post_logout_redirect_url", Kind::Text),
            ("scopes", Kind::TextList),
            ("extra_auth_params", Kind::TextTable),
            ("extra_audiences", Kind::TextList),
            ("bearer_audiences", Kind::TextList),
            ("require_azp", Kind::Flag),
            ("allowed_algs", Kind::TextList),
            ("clock_skew", Kind::Text),
            ("jwks_refresh", Kind::Text),
            ("provider_timeout", Kind::Text),
            ("roles_claim", Kind::Text),
            ("groups_claim", Kind::Text),
            ("permissions_claim", Kind::Text),
            ("userinfo", Kind::Text),
            ("extra_jwt_issuers", Kind::TableList),
            ("project_id", Kind::Text),
            ("base_url", Kind::Text),
            ("flow", Kind::Text),
            ("token_auth_method", Kind::Text),
            ("client_assertion_key_file", Kind::Text),
            ("client_assertion_kid", Kind::Text),
        ],
    },
    Section {
        name: "session",
        repeated: false,
        keys: &[
            ("store", Kind::Text),
            ("redis_url", Kind::Text),
            ("key_prefix", Kind::Text),
            ("cookie_name", Kind::Text),
            ("cookie_secret", Kind::Text),
            ("cookie_secret_file", Kind::Text),
            ("cookie_secure", Kind::Flag),
            ("cookie_domain", Kind::Text),
            ("ttl", Kind::Text),
            ("idle_timeout", Kind::Text),
            ("refresh_before", Kind::Text),
            ("local_cache", Kind::Flag),
        ],
    },
    Section {
        name: "routes",
        repeated: true,
        keys: &[
            ("path_prefix", Kind::Text),
            ("host", Kind::Text),
            ("upstream", Kind::Text),
            ("upstream_ca_file", Kind::Text),
            ("public", Kind::Flag),
            ("api", Kind::Flag),
            ("require_roles", Kind::TextList),
            ("require_all_roles", Kind::TextList),
            ("require_permissions", Kind::TextList),
            ("require_tenant_roles", Kind::Table),
            ("allowed_emails", Kind::TextList),
            ("allowed_email_domains", Kind::TextList),
            ("require_claims", Kind::Table),
            ("require_amr", Kind::TextList),
            ("login_params", Kind::TextTable),
            ("token_cookie", Kind::Text),
            ("identity_jwt", Kind::Flag),
            ("pass_access_token", Kind::Flag),
            ("allow_encoded_slashes", Kind::Flag),
            ("allow_path_parameters", Kind::Flag),
            ("case_insensitive", Kind::Flag),
            ("cache_control_private", Kind::Flag),
        ],
    },
    Section {
        name: "telemetry",
        repeated: false,
        keys: &[
            ("otlp_endpoint", Kind::Text),
            ("sample_ratio", Kind::Number),
        ],
    },
];

pub(crate) fn section(name: &str) -> Option<&'static Section> {
    SCHEMA.iter().find(|section| section.name == name)
}

/// Whether a key holds a secret, so its value is never shown.
pub(crate) fn is_secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    ["secret", "password", "token", "credential"]
        .iter()
        .any(|word| key.contains(word))
        && !key.ends_with("_file")
}

#[cfg(test)]
#[allow(clippy::expect_used, clippy::panic, clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn schema_lists_exactly_the_struct_fields() {
        let mut raw = RawConfig::default();
        raw.session.cookie_secure = Some(true);
        raw.oidc.scopes = Some(Vec::new());
        // Optional rule keys serialise only when present.
        raw.routes.push(RawRoute {
            require_all_roles: Some(Vec::new()),
            require_permissions: Some(Vec::new()),
            require_tenant_roles: Some(RawTenantRoles::default()),
            allowed_emails: Some(Vec::new()),
            allowed_email_domains: Some(Vec::new()),
            require_claims: Some(BTreeMap::new()),
            require_amr: Some(Vec::new()),
            ..RawRoute::default()
        });
        let written = toml::Value::try_from(&raw).expect("raw config serialises");
        for section in SCHEMA {
            let table = if section.repeated {
                &written[section.name][0]
            } else {
                &written[section.name]
            };
            let table = table.as_table().expect("section is a table");
            let mut fields: Vec<&str> = table.keys().map(String::as_str).collect();
            let mut keys: Vec<&str> = section.key_names().collect();
            fields.sort_unstable();
            keys.sort_unstable();
            assert_eq!(fields, keys, "section {}", section.name);
        }
    }

    #[test]
    fn defaults_are_the_contract_defaults() {
        let raw = RawConfig::default();
        assert_eq!(raw.server.listen, "127.0.0.1:4180");
        assert_eq!(raw.server.upstream_timeout, "30s");
        assert_eq!(raw.oidc.scopes, None);
        assert_eq!(
            raw.oidc.allowed_algs,
            [
                "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512",
                "EdDSA"
            ]
        );
        assert_eq!(raw.oidc.groups_claim, "groups");
        assert_eq!(raw.session.redis_url, "redis://127.0.0.1:6379/0");
        assert_eq!(raw.session.cookie_name, "portico_session");
        assert_eq!(RawRoute::default().path_prefix, "/");
    }

    #[test]
    fn secret_keys_are_recognised() {
        assert!(is_secret_key("client_secret"));
        assert!(is_secret_key("PASSWORD"));
        assert!(!is_secret_key("client_secret_file"));
        assert!(!is_secret_key("key_prefix"));
    }
}
