//! The `[oidc]` rules: how we talk to the OpenID Provider (secret, redirect
//! URLs, scopes, parameters) and which tokens we accept (algorithms, clock
//! skew, claims). Who the provider is lives in `oidc_provider.rs`.

use std::collections::BTreeMap;

use url::Url;

use super::errors::{quoted, quoted_list, Problems};
use super::oidc_provider::identity;
use super::raw::RawOidc;
use super::secrets::{read_secret, SecretInput};
use super::types::{OidcConfig, Secret, UserinfoMode};
use super::validate::{duration, http_url, is_loopback, non_empty};

/// The JOSE algorithms portico can verify, in their canonical spelling.
const SUPPORTED_ALGORITHMS: &[&str] = &[
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA",
    "HS256", "HS384", "HS512",
];

/// Authorization request parameters portico sets itself; letting
/// `extra_auth_params` replace them would break the login's protections.
pub(crate) const RESERVED_AUTH_PARAMS: &[&str] = &[
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "nonce",
    "code_challenge",
    "code_challenge_method",
];

pub(crate) fn oidc(
    problems: &mut Problems,
    raw: &RawOidc,
    public_url: Option<&Url>,
) -> Option<OidcConfig> {
    let identity = identity(problems, raw);
    let client_secret = match read_secret(
        problems,
        "oidc",
        "client_secret",
        &raw.client_secret,
        &raw.client_secret_file,
    ) {
        SecretInput::Missing => Some(None),
        SecretInput::Found(secret) => Some(Some(Secret::new(secret.text))),
        SecretInput::Broken => None,
    };
    let redirect_url = redirect_url(problems, raw, public_url);
    let post_logout_redirect_url = post_logout_redirect_url(problems, raw, public_url);
    let default_scopes = if raw.provider == "descope" {
        DESCOPE_DEFAULT_SCOPES
    } else {
        GENERIC_DEFAULT_SCOPES
    };
    let scopes = match &raw.scopes {
        Some(scopes) => scopes.clone(),
        None => default_scopes
            .iter()
            .map(|scope| (*scope).to_owned())
            .collect(),
    };
    let scopes = scopes_valid(problems, &scopes);
    let token_auth = super::validate_token_auth::token_auth(problems, raw, has_secret(raw));
    let extra_auth_params = extra_auth_params(problems, &raw.extra_auth_params);
    let extra_audiences = non_empty_items(problems, "oidc.extra_audiences", &raw.extra_audiences);
    let bearer_audiences =
        non_empty_items(problems, "oidc.bearer_audiences", &raw.bearer_audiences);
    let has_client_secret = matches!(client_secret, Some(Some(_)));
    let allowed_algs = allowed_algorithms(problems, &raw.allowed_algs, has_client_secret);
    let clock_skew = duration(problems, "oidc.clock_skew", &raw.clock_skew, false);
    let jwks_refresh = duration(problems, "oidc.jwks_refresh", &raw.jwks_refresh, true);
    let provider_timeout = duration(
        problems,
        "oidc.provider_timeout",
        &raw.provider_timeout,
        true,
    );
    let roles_claim = non_empty(
        problems,
        "oidc.roles_claim",
        &raw.roles_claim,
        "the name of the claim holding roles, e.g. \"roles\"",
    );
    let groups_claim = non_empty(
        problems,
        "oidc.groups_claim",
        &raw.groups_claim,
        "the name of the claim holding groups, e.g. \"groups\"",
    );
    let permissions_claim = non_empty(
        problems,
        "oidc.permissions_claim",
        &raw.permissions_claim,
        "the name of the claim holding permissions, e.g. \"permissions\"",
    );
    let extra_jwt_issuers = extra_jwt_issuers(problems, &raw.extra_jwt_issuers);
    let userinfo = userinfo_mode(problems, &raw.userinfo);
    let identity = identity?;
    let token_auth = token_auth?;
    let bearer_audiences = bearer_audiences.filter(|audiences| {
        bearer_audiences_exclude_the_client(problems, audiences, &identity.client_id)
    });
    // Descope tokens may carry the project id as an audience beside the client id.
    let extra_audiences = extra_audiences.map(|mut audiences| {
        if let Some(project) = &identity.project_id {
            if *project != identity.client_id && !audiences.contains(project) {
                audiences.push(project.clone());
            }
        }
        audiences
    });
    Some(OidcConfig {
        provider: identity.provider,
        issuer: identity.issuer,
        client_id: identity.client_id,
        client_secret: client_secret?,
        redirect_url: redirect_url?,
        post_logout_redirect_url: post_logout_redirect_url?,
        scopes: scopes?,
        extra_auth_params: extra_auth_params?,
        extra_audiences: extra_audiences?,
        bearer_audiences: bearer_audiences?,
        require_azp: raw.require_azp,
        allowed_algs: allowed_algs?,
        clock_skew: clock_skew?,
        jwks_refresh: jwks_refresh?,
        provider_timeout: provider_timeout?,
        roles_claim: roles_claim?,
        groups_claim: groups_claim?,
        permissions_claim: permissions_claim?,
        extra_jwt_issuers: extra_jwt_issuers?,
        kept_claims: Vec::new(),
        userinfo: userinfo?,
        wanted_claims: Vec::new(),
        project_id: identity.project_id,
        base_url: identity.base_url,
        flow: identity.flow,
        token_auth_method: token_auth.method,
        client_assertion_key: token_auth.key,
        client_assertion_kid: token_auth.kid,
    })
}

fn userinfo_mode(problems: &mut Problems, text: &str) -> Option<UserinfoMode> {
    match text {
        "auto" => Some(UserinfoMode::Auto),
        "always" => Some(UserinfoMode::Always),
        "never" => Some(UserinfoMode::Never),
        _ => {
            problems.report(
                "oidc.userinfo",
                quoted(text),
                "is not a userinfo mode",
                "use \"auto\" (ask the provider's userinfo endpoint when the ID token lacks \
                 a claim portico uses), \"always\" or \"never\"",
            );
            None
        }
    }
}

fn redirect_url(problems: &mut Problems, raw: &RawOidc, public_url: Option<&Url>) -> Option<Url> {
    const KEY: &str = "oidc.redirect_url";
    let (text, derived) = explicit_or_derived(&raw.redirect_url, public_url, "oauth2/callback")?;
    let fix = if derived {
        "give server.public_url an https origin, or set oidc.redirect_url"
    } else {
        "use {public_url}/oauth2/callback, e.g. \"https://app.example.com/oauth2/callback\""
    };
    let origin_note = if derived {
        " (derived from server.public_url)"
    } else {
        ""
    };
    let url = http_url(problems, KEY, &text, fix)?;
    let problem = if url.path() != "/oauth2/callback" {
        Some(format!(
            "must have the path /oauth2/callback, where portico serves the callback, not {}",
            url.path()
        ))
    } else if url.scheme() != "https" && !is_loopback(&url) {
        Some("must use https (http is allowed only for localhost)".to_owned())
    } else if url.fragment().is_some() {
        Some("must not have a fragment".to_owned())
    } else {
        None
    };
    match problem {
        Some(problem) => {
            problems.report(KEY, quoted(&text), format!("{problem}{origin_note}"), fix);
            None
        }
        None => Some(url),
    }
}

fn post_logout_redirect_url(
    problems: &mut Problems,
    raw: &RawOidc,
    public_url: Option<&Url>,
) -> Option<Url> {
    let (text, _) = explicit_or_derived(
        &raw.post_logout_redirect_url,
        public_url,
        "oauth2/signed_out",
    )?;
    http_url(
        problems,
        "oidc.post_logout_redirect_url",
        &text,
        "write an absolute URL, e.g. \"https://app.example.com/oauth2/signed_out\"",
    )
}

/// The explicit value, or `{public_url}{path}`; `None` when neither exists
/// (the public_url problem is reported already).
fn explicit_or_derived(
    explicit: &str,
    public_url: Option<&Url>,
    path: &str,
) -> Option<(String, bool)> {
    if explicit.is_empty() {
        public_url.map(|origin| (format!("{origin}{path}"), true))
    } else {
        Some((explicit.to_owned(), false))
    }
}

/// Scopes when `oidc.scopes` is not set.
const GENERIC_DEFAULT_SCOPES: &[&str] = &["openid", "profile", "email"];

/// Descope puts roles, permissions and tenants in the ID token only when the
/// scopes ask for them: its own OIDC client asks for `openid email roles
/// descope.custom_claims offline_access` (descope/descope-js,
/// packages/sdks/web-js-sdk `createOidc`), Grafana's Descope guide for
/// `openid profile email descope.claims descope.custom_claims` (grafana/grafana
/// docs, generic OAuth, "Set up OAuth2 with Descope"). `descope.claims` brings
/// roles, permissions and tenants; `descope.custom_claims` the JWT template's
/// and the user's custom claims. `offline_access` is added from discovery.
const DESCOPE_DEFAULT_SCOPES: &[&str] = &[
    "openid",
    "profile",
    "email",
    "descope.claims",
    "descope.custom_claims",
];

fn has_secret(raw: &RawOidc) -> bool {
    !raw.client_secret.is_empty() || !raw.client_secret_file.is_empty()
}

fn scopes_valid(problems: &mut Problems, scopes: &[String]) -> Option<Vec<String>> {
    let mut valid = true;
    for (index, scope) in scopes.iter().enumerate() {
        if scope.is_empty() || scope.contains(char::is_whitespace) {
            problems.report(
                format!("oidc.scopes[{index}]"),
                quoted(scope),
                "is not a scope (empty or contains spaces)",
                "write each scope as its own list item",
            );
            valid = false;
        }
    }
    if !scopes.iter().any(|scope| scope == "openid") {
        problems.report(
            "oidc.scopes",
            quoted_list(scopes),
            "does not contain \"openid\", so the provider would not return an ID token",
            "add \"openid\", e.g. scopes = [\"openid\", \"profile\", \"email\"]",
        );
        valid = false;
    }
    valid.then(|| scopes.to_vec())
}

fn extra_auth_params(
    problems: &mut Problems,
    params: &BTreeMap<String, String>,
) -> Option<BTreeMap<String, String>> {
    let mut valid = true;
    for (name, value) in params {
        if RESERVED_AUTH_PARAMS.contains(&name.as_str()) {
            problems.report(
                format!("oidc.extra_auth_params.{name}"),
                quoted(value),
                "is set by portico itself and cannot be overridden",
                format!("remove {name} from extra_auth_params"),
            );
            valid = false;
        }
    }
    valid.then(|| params.clone())
}

fn allowed_algorithms(
    problems: &mut Problems,
    names: &[String],
    has_client_secret: bool,
) -> Option<Vec<String>> {
    let supported = SUPPORTED_ALGORITHMS.join(", ");
    if names.is_empty() {
        problems.report(
            "oidc.allowed_algs",
            "[]",
            "is empty, so no token could be verified",
            "list the algorithms your provider signs with, e.g. [\"RS256\"]",
        );
        return None;
    }
    let mut algorithms = Some(Vec::new());
    for (index, name) in names.iter().enumerate() {
        let key = format!("oidc.allowed_algs[{index}]");
        if name.eq_ignore_ascii_case("none") {
            problems.report(
                key,
                quoted(name),
                "\"none\" accepts unsigned tokens, which anyone can forge; it is never allowed",
                "remove \"none\"",
            );
            algorithms = None;
            continue;
        }
        match SUPPORTED_ALGORITHMS
            .iter()
            .find(|known| known.eq_ignore_ascii_case(name))
        {
            Some(known) if known.starts_with("HS") && !has_client_secret => {
                problems.report(
                    key,
                    quoted(name),
                    "verifies with the client secret, but no client secret is set",
                    format!("set oidc.client_secret, or remove {known}"),
                );
                algorithms = None;
            }
            Some(known) => {
                if let Some(list) = algorithms.as_mut() {
                    list.push((*known).to_owned());
                }
            }
            None => {
                problems.report(
                    key,
                    quoted(name),
                    "is not a supported algorithm",
                    format!("use some of {supported}"),
                );
                algorithms = None;
            }
        }
    }
    algorithms
}

/// `bearer_audiences` exists so that ID tokens (audience: the client id)
/// never open an API; listing the client id there would undo that.
fn bearer_audiences_exclude_the_client(
    problems: &mut Problems,
    audiences: &[String],
    client_id: &str,
) -> bool {
    match audiences.iter().position(|audience| audience == client_id) {
        Some(index) => {
            problems.report(
                format!("oidc.bearer_audiences[{index}]"),
                quoted(client_id),
                "is the client id, the audience of ID tokens, so an ID token would open every API",
                "list only the audiences your provider puts in access tokens for your APIs (e.g. \"https://api.example.com\")",
            );
            false
        }
        None => true,
    }
}

fn non_empty_items(problems: &mut Problems, key: &str, items: &[String]) -> Option<Vec<String>> {
    let mut valid = true;
    for (index, item) in items.iter().enumerate() {
        if item.trim().is_empty() {
            problems.report(
                format!("{key}[{index}]"),
                quoted(item),
                "is empty",
                "remove it",
            );
            valid = false;
        }
    }
    valid.then(|| items.to_vec())
}

#[cfg(test)]
#[path = "validate_oidc_tests.rs"]
mod tests;

fn extra_jwt_issuers(
    problems: &mut Problems,
    raw: &[super::raw::RawExtraJwtIssuer],
) -> Option<Vec<super::types::ExtraJwtIssuer>> {
    let mut valid = true;
    let mut issuers = Vec::new();
    for (index, entry) in raw.iter().enumerate() {
        let key = |name: &str| format!("oidc.extra_jwt_issuers[{index}].{name}");
        if entry.issuer.trim().is_empty() || entry.issuer.trim() != entry.issuer {
            problems.report(
                key("issuer"),
                quoted(&entry.issuer),
                "must be the exact iss of the tokens, without spaces",
                "write e.g. \"https://issuer.example.com\"",
            );
            valid = false;
        }
        let jwks_url = super::validate::http_url(
            problems,
            &key("jwks_url"),
            &entry.jwks_url,
            "write the issuer's JWKS URL, e.g. \"https://issuer.example.com/.well-known/jwks.json\"",
        )
        .and_then(|url| {
            if url.scheme() == "https" || super::validate::is_loopback(&url) {
                Some(url)
            } else {
                problems.report(
                    key("jwks_url"),
                    quoted(&entry.jwks_url),
                    "keys fetched over plain http could be swapped on the way",
                    "use https (http is accepted only for loopback addresses)",
                );
                None
            }
        });
        if entry.audiences.is_empty()
            || entry
                .audiences
                .iter()
                .any(|audience| audience.trim().is_empty())
        {
            problems.report(
                key("audiences"),
                super::errors::quoted_list(&entry.audiences),
                "must list at least one audience, none empty",
                "list the audiences this issuer's tokens carry for you, e.g. [\"my-api\"]",
            );
            valid = false;
        }
        if let Some(jwks_url) = jwks_url {
            issuers.push(super::types::ExtraJwtIssuer {
                issuer: entry.issuer.clone(),
                jwks_url,
                audiences: entry.audiences.clone(),
            });
        } else {
            valid = false;
        }
    }
    valid.then_some(issuers)
}
