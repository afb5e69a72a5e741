//! The `[oidc]` rules: who the OpenID Provider is, who we are to it, and
//! which tokens we accept.
//!
//! The Descope preset lives here too: from a project id it derives the base
//! URL (regional for new-style ids), the issuer and the client id, so a
//! Descope user writes one key instead of three and cannot get the issuer's
//! exact spelling wrong.

use std::collections::BTreeMap;

use url::Url;

use super::errors::{quoted, quoted_list, Problems};
use super::raw::RawOidc;
use super::secrets::{read_secret, SecretInput};
use super::types::{OidcConfig, ProviderKind, Secret};
use super::validate::{duration, http_url, is_loopback};

/// The JOSE algorithms portico can verify, in their canonical spelling.
const SUPPORTED_ALGORITHMS: &[&str] = &[
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA", "HS256",
    "HS384", "HS512",
];

/// Authorization request parameters portico sets itself; letting
/// `extra_auth_params` replace them would break the login's protections.
const RESERVED_AUTH_PARAMS: &[&str] = &[
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "nonce",
    "code_challenge",
    "code_challenge_method",
];

/// Who the provider is and who we are to it.
struct Identity {
    issuer: String,
    client_id: String,
    project_id: Option<String>,
    base_url: Option<Url>,
    flow: Option<String>,
}

pub(crate) fn oidc(
    problems: &mut Problems,
    raw: &RawOidc,
    public_url: Option<&Url>,
) -> Option<OidcConfig> {
    let provider = match raw.provider.as_str() {
        "generic" => Some(ProviderKind::Generic),
        "descope" => Some(ProviderKind::Descope),
        other => {
            problems.report(
                "oidc.provider",
                quoted(other),
                "is not a provider kind",
                "use \"generic\" (any OpenID Provider) or \"descope\"",
            );
            None
        }
    };
    let identity = match provider {
        Some(ProviderKind::Generic) => generic_identity(problems, raw),
        Some(ProviderKind::Descope) => descope_identity(problems, raw),
        None => None,
    };
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
    let scopes = scopes(problems, &raw.scopes);
    let extra_auth_params = extra_auth_params(problems, &raw.extra_auth_params);
    let extra_audiences = non_empty_items(problems, "oidc.extra_audiences", &raw.extra_audiences);
    let has_client_secret = matches!(client_secret, Some(Some(_)));
    let allowed_algs = allowed_algorithms(problems, &raw.allowed_algs, has_client_secret);
    let clock_skew = duration(problems, "oidc.clock_skew", &raw.clock_skew, false);
    let jwks_refresh = duration(problems, "oidc.jwks_refresh", &raw.jwks_refresh, true);
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
    let identity = identity?;
    Some(OidcConfig {
        provider: provider?,
        issuer: identity.issuer,
        client_id: identity.client_id,
        client_secret: client_secret?,
        redirect_url: redirect_url?,
        post_logout_redirect_url: post_logout_redirect_url?,
        scopes: scopes?,
        extra_auth_params: extra_auth_params?,
        extra_audiences: extra_audiences?,
        require_azp: raw.require_azp,
        allowed_algs: allowed_algs?,
        clock_skew: clock_skew?,
        jwks_refresh: jwks_refresh?,
        roles_claim: roles_claim?,
        groups_claim: groups_claim?,
        project_id: identity.project_id,
        base_url: identity.base_url,
        flow: identity.flow,
    })
}

fn generic_identity(problems: &mut Problems, raw: &RawOidc) -> Option<Identity> {
    let issuer = if raw.issuer.is_empty() {
        problems.report(
            "oidc.issuer",
            quoted(""),
            "is required when provider is \"generic\"",
            "set it to the issuer URL exactly as your provider's discovery document shows it",
        );
        None
    } else {
        issuer(problems, "oidc.issuer", &raw.issuer)
    };
    for (name, value) in [
        ("project_id", &raw.project_id),
        ("base_url", &raw.base_url),
        ("flow", &raw.flow),
    ] {
        if !value.is_empty() {
            problems.report(
                format!("oidc.{name}"),
                quoted(value),
                "is only used with provider \"descope\"",
                format!("set oidc.provider = \"descope\", or remove oidc.{name}"),
            );
        }
    }
    let client_id = non_empty(
        problems,
        "oidc.client_id",
        &raw.client_id,
        "set it to the client id your provider issued",
    );
    Some(Identity {
        issuer: issuer?,
        client_id: client_id?,
        project_id: None,
        base_url: None,
        flow: None,
    })
}

fn descope_identity(problems: &mut Problems, raw: &RawOidc) -> Option<Identity> {
    const PROJECT_FIX: &str = "copy the project id from the Descope console (Project settings)";
    let project_id = if raw.project_id.is_empty() {
        problems.report(
            "oidc.project_id",
            quoted(""),
            "is required when provider is \"descope\"",
            PROJECT_FIX,
        );
        None
    } else if !raw.project_id.chars().all(|c| c.is_ascii_alphanumeric()) {
        problems.report(
            "oidc.project_id",
            quoted(&raw.project_id),
            "may only contain letters and digits",
            PROJECT_FIX,
        );
        None
    } else {
        Some(raw.project_id.clone())
    };
    let base_url = if raw.base_url.is_empty() {
        project_id
            .as_deref()
            .and_then(|id| Url::parse(&descope_base_url(id)).ok())
    } else {
        secure_url(
            problems,
            "oidc.base_url",
            &raw.base_url,
            "write your Descope base URL, e.g. \"https://auth.example.com\"",
        )
    };
    let issuer = if raw.issuer.is_empty() {
        match (&base_url, &project_id) {
            (Some(base_url), Some(project_id)) => Some(format!(
                "{}/{project_id}",
                base_url.as_str().trim_end_matches('/')
            )),
            _ => None,
        }
    } else {
        issuer(problems, "oidc.issuer", &raw.issuer)
    };
    let client_id = if raw.client_id.is_empty() {
        project_id.clone()
    } else {
        Some(raw.client_id.clone())
    };
    Some(Identity {
        issuer: issuer?,
        client_id: client_id?,
        project_id: Some(project_id?),
        base_url: Some(base_url?),
        flow: (!raw.flow.is_empty()).then(|| raw.flow.clone()),
    })
}

/// Descope's API host: regional projects (ids of 32+ characters) carry the
/// region in characters 1 to 4, e.g. "Peuc1…" → `https://api.euc1.descope.com`.
fn descope_base_url(project_id: &str) -> String {
    match project_id.get(1..5) {
        Some(region) if project_id.len() >= 32 => {
            format!("https://api.{}.descope.com", region.to_ascii_lowercase())
        }
        _ => "https://api.descope.com".to_owned(),
    }
}

/// An issuer: kept exactly as written, since tokens are compared byte for byte.
fn issuer(problems: &mut Problems, key: &str, text: &str) -> Option<String> {
    const FIX: &str = "write the issuer exactly as your provider's discovery document shows it, e.g. \"https://op.example.com\"";
    if text.trim() != text {
        problems.report(
            key,
            quoted(text),
            "has spaces around it, so no token's issuer would match",
            FIX,
        );
        return None;
    }
    let url = secure_url(problems, key, text, FIX)?;
    if url.query().is_some() || url.fragment().is_some() {
        problems.report(key, quoted(text), "must not have a query or fragment", FIX);
        return None;
    }
    Some(text.to_owned())
}

/// An https URL (http only on loopback) without user name or password.
fn secure_url(problems: &mut Problems, key: &str, text: &str, fix: &str) -> Option<Url> {
    let url = http_url(problems, key, text, fix)?;
    if url.scheme() != "https" && !is_loopback(&url) {
        problems.report(
            key,
            quoted(text),
            "must use https (http is allowed only for localhost)",
            fix,
        );
        return None;
    }
    if !url.username().is_empty() || url.password().is_some() {
        problems.report(
            key,
            quoted(text),
            "must not contain a user name or password",
            fix,
        );
        return None;
    }
    Some(url)
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

fn scopes(problems: &mut Problems, scopes: &[String]) -> Option<Vec<String>> {
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

fn non_empty(problems: &mut Problems, key: &str, text: &str, fix: &str) -> Option<String> {
    if text.trim().is_empty() {
        problems.report(key, quoted(text), "must not be empty", fix);
        None
    } else {
        Some(text.to_owned())
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
mod tests {
    use super::*;

    #[test]
    fn descope_regional_project_derives_regional_base_url() {
        assert_eq!(
            descope_base_url("Peuc12vQ8bS1ZiSXHCCOh5cDlEsSxxxx"),
            "https://api.euc1.descope.com"
        );
        assert_eq!(descope_base_url("P2abcdef"), "https://api.descope.com");
    }
}
