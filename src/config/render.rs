//! The effective configuration as TOML, for `portico check`.
//!
//! Shows what portico will actually run with: defaults filled in, Descope and
//! public_url derivations spelled out, environment overrides applied. Every
//! secret (client secret, cookie secret, passwords inside URLs) is printed as
//! `"***"`, so the output can be pasted into a ticket. The text is valid
//! TOML in the contract's key order, and reads back as the same
//! configuration once real secrets are supplied.

use std::fmt::Write as _;
use std::time::Duration;

use super::duration::format_duration;
use super::errors::{mask_url_password, MASKED};
use super::size::format_size;
use super::types::{Config, LogFormat, ProviderKind, StoreKind};
use super::validate_telemetry::format_ratio;

/// One `key = value` line per setting, grouped under section headers.
struct Document {
    text: String,
}

impl Document {
    fn section(&mut self, header: &str) {
        self.text.push('\n');
        self.text.push_str(header);
        self.text.push('\n');
    }

    fn raw(&mut self, key: &str, rendered: &str) {
        // Writing to a String cannot fail.
        let _ = writeln!(self.text, "{key} = {rendered}");
    }

    fn text(&mut self, key: &str, value: &str) {
        self.raw(key, &toml::Value::String(value.to_owned()).to_string());
    }

    fn flag(&mut self, key: &str, value: bool) {
        self.raw(key, if value { "true" } else { "false" });
    }

    fn list<T: ToString>(&mut self, key: &str, items: &[T]) {
        let array = items
            .iter()
            .map(|item| toml::Value::String(item.to_string()))
            .collect();
        self.raw(key, &toml::Value::Array(array).to_string());
    }

    fn duration(&mut self, key: &str, value: Duration) {
        self.text(key, &format_duration(value));
    }

    fn optional(&mut self, key: &str, value: Option<impl ToString>) {
        self.text(
            key,
            &value.map(|value| value.to_string()).unwrap_or_default(),
        );
    }
}

/// The effective configuration as TOML text, secrets masked.
pub fn render_effective(config: &Config) -> String {
    let mut document = Document {
        text: "# portico: effective configuration (secrets are shown as \"***\")\n".to_owned(),
    };
    let server = &config.server;
    document.section("[server]");
    document.text("listen", &server.listen.to_string());
    document.text("public_url", server.public_url.as_str());
    document.list("trusted_proxies", &server.trusted_proxies);
    document.list("allowed_redirect_hosts", &server.allowed_redirect_hosts);
    document.optional("metrics_listen", server.metrics_listen);
    document.optional("ext_authz_grpc_listen", server.ext_authz_grpc_listen);
    let log_format = match server.log_format {
        LogFormat::Text => "text",
        LogFormat::Json => "json",
    };
    document.text("log_format", log_format);
    document.duration("shutdown_timeout", server.shutdown_timeout);
    document.duration("upstream_timeout", server.upstream_timeout);
    document.duration("upstream_connect_timeout", server.upstream_connect_timeout);
    document.duration("upstream_read_timeout", server.upstream_read_timeout);
    document.duration("upstream_send_timeout", server.upstream_send_timeout);
    document.flag("h2c", server.h2c);
    document.optional(
        "tls_cert",
        server.tls_cert.as_ref().map(|path| path.display()),
    );
    document.optional(
        "tls_key",
        server.tls_key.as_ref().map(|path| path.display()),
    );
    document.flag("setup_page", server.setup_page);
    if server.identity_key.is_some() {
        document.raw("identity_key", MASKED);
    }
    let limits = &server.limits;
    document.text("max_header_bytes", &format_size(limits.max_header_bytes));
    document.text("max_cookie_bytes", &format_size(limits.max_cookie_bytes));
    document.text("max_query_bytes", &format_size(limits.max_query_bytes));
    document.text("max_body_bytes", &format_size(limits.max_body_bytes));
    document.text("app_name", &server.branding.app_name);
    document.text(
        "logo_url",
        server.branding.logo_url.as_deref().unwrap_or_default(),
    );

    let oidc = &config.oidc;
    document.section("[oidc]");
    let provider = match oidc.provider {
        ProviderKind::Generic => "generic",
        ProviderKind::Descope => "descope",
    };
    document.text("provider", provider);
    if oidc.provider == ProviderKind::Descope {
        document.optional("project_id", oidc.project_id.as_ref());
        document.optional("base_url", oidc.base_url.as_ref());
        document.optional("flow", oidc.flow.as_ref());
    }
    document.text("issuer", &oidc.issuer);
    let _ = writeln!(
        document.text,
        "# derived: discovery = {}/.well-known/openid-configuration",
        oidc.issuer.trim_end_matches('/')
    );
    if let Some(jwks) = oidc.descope_session_jwks_url() {
        let _ = writeln!(
            document.text,
            "# derived: Descope session-token keys = {jwks}"
        );
    }
    document.text("client_id", &oidc.client_id);
    match &oidc.client_secret {
        Some(_) => document.raw("client_secret", MASKED),
        None => document.text("client_secret", ""),
    }
    document.text("redirect_url", oidc.redirect_url.as_str());
    document.text(
        "post_logout_redirect_url",
        oidc.post_logout_redirect_url.as_str(),
    );
    document.list("scopes", &oidc.scopes);
    document.text("token_auth_method", oidc.token_auth_method.name());
    if oidc.token_auth_method == crate::config::TokenAuthMethod::FromDiscovery {
        let _ = writeln!(
            document.text,
            "# derived: client_secret_basic, or client_secret_post when discovery lists only that"
        );
    }
    if oidc.client_assertion_key.is_some() {
        document.raw("client_assertion_key_file", MASKED);
    }
    let parameters = oidc
        .extra_auth_params
        .iter()
        .map(|(name, value)| (name.clone(), toml::Value::String(value.clone())))
        .collect();
    document.raw(
        "extra_auth_params",
        &toml::Value::Table(parameters).to_string(),
    );
    document.list("extra_audiences", &oidc.extra_audiences);
    document.list("bearer_audiences", &oidc.bearer_audiences);
    document.flag("require_azp", oidc.require_azp);
    document.list("allowed_algs", &oidc.allowed_algs);
    document.duration("clock_skew", oidc.clock_skew);
    document.duration("jwks_refresh", oidc.jwks_refresh);
    document.duration("provider_timeout", oidc.provider_timeout);
    document.text("roles_claim", &oidc.roles_claim);
    document.text("groups_claim", &oidc.groups_claim);
    document.text("permissions_claim", &oidc.permissions_claim);
    document.text("userinfo", oidc.userinfo.name());

    let session = &config.session;
    document.section("[session]");
    let store = match session.store {
        StoreKind::Redis => "redis",
        StoreKind::Memory => "memory",
    };
    document.text("store", store);
    document.text("redis_url", &mask_url_password(session.redis_url.expose()));
    document.text("key_prefix", &session.key_prefix);
    document.text("cookie_name", &session.cookie_name);
    document.raw("cookie_secret", MASKED);
    document.flag("cookie_secure", session.cookie_secure);
    document.optional("cookie_domain", session.cookie_domain.as_ref());
    document.duration("ttl", session.ttl);
    document.duration("idle_timeout", session.idle_timeout);
    document.duration("refresh_before", session.refresh_before);
    document.flag("local_cache", session.local_cache);

    let telemetry = &config.telemetry;
    document.section("[telemetry]");
    document.text(
        "otlp_endpoint",
        &telemetry
            .otlp_endpoint
            .as_ref()
            .map(|url| mask_url_password(url.as_str()))
            .unwrap_or_default(),
    );
    document.raw("sample_ratio", &format_ratio(telemetry.sample_ratio));

    for route in &config.routes {
        document.section("[[routes]]");
        document.text("path_prefix", &route.path_prefix);
        document.optional("host", route.host.as_ref());
        document.text("upstream", &mask_url_password(route.upstream.as_str()));
        document.optional(
            "upstream_ca_file",
            route.upstream_ca.as_ref().map(|ca| ca.path.display()),
        );
        document.flag("public", route.public);
        document.flag("api", route.api);
        document.list("require_roles", &route.require_roles);
        let rules = &route.rules;
        let lists = [
            ("require_all_roles", &rules.require_all_roles),
            ("require_permissions", &rules.require_permissions),
            ("allowed_emails", &rules.allowed_emails),
            ("allowed_email_domains", &rules.allowed_email_domains),
            ("require_amr", &rules.require_amr),
        ];
        for (name, values) in lists {
            if !values.is_empty() {
                document.list(name, values);
            }
        }
        if let Some(tenant) = &rules.require_tenant_roles {
            let mut table = toml::Table::new();
            table.insert("tenant".into(), toml::Value::String(tenant.tenant.clone()));
            table.insert(
                "roles".into(),
                toml::Value::Array(
                    tenant
                        .roles
                        .iter()
                        .cloned()
                        .map(toml::Value::String)
                        .collect(),
                ),
            );
            document.raw(
                "require_tenant_roles",
                &toml::Value::Table(table).to_string(),
            );
        }
        if !rules.require_claims.is_empty() {
            let table: toml::Table = rules
                .require_claims
                .iter()
                .map(|(path, values)| {
                    (
                        path.clone(),
                        toml::Value::Array(
                            values.iter().cloned().map(toml::Value::String).collect(),
                        ),
                    )
                })
                .collect();
            document.raw("require_claims", &toml::Value::Table(table).to_string());
        }
        if !route.login_params.is_empty() {
            let table: toml::Table = route
                .login_params
                .iter()
                .map(|(name, value)| (name.clone(), toml::Value::String(value.clone())))
                .collect();
            document.raw("login_params", &toml::Value::Table(table).to_string());
        }
        document.optional("token_cookie", route.token_cookie.as_ref());
        document.flag("identity_jwt", route.identity_jwt);
        document.flag("pass_access_token", route.pass_access_token);
        document.flag("allow_encoded_slashes", route.allow_encoded_slashes);
        document.flag("allow_path_parameters", route.allow_path_parameters);
        document.flag("case_insensitive", route.case_insensitive);
        document.flag("cache_control_private", route.cache_control_private);
    }
    for issuer in &oidc.extra_jwt_issuers {
        document.section("[[oidc.extra_jwt_issuers]]");
        document.text("issuer", &issuer.issuer);
        document.text("jwks_url", issuer.jwks_url.as_str());
        document.list("audiences", &issuer.audiences);
    }
    document.text
}
