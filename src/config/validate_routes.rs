//! Routes and their rules.
//!
//! A rule that can never pass is refused here rather than left to lock
//! everyone out at run time: an empty list for a rule key, an empty tenant,
//! a malformed email or domain, a claim path with no accepted values.

use std::collections::{BTreeMap, BTreeSet};

use super::errors::{quoted, quoted_list, Problems};
use super::raw::{RawRoute, RawTenantRoles};
use super::types::{OidcConfig, RouteConfig, RouteRules, TenantRoles};
use super::validate_upstream::{one_trust_per_origin, upstream_ca, upstream_url};

pub(crate) fn routes(problems: &mut Problems, raw: &[RawRoute]) -> Option<Vec<RouteConfig>> {
    if raw.is_empty() {
        problems.report(
            "routes",
            "[]",
            "no routes are configured, so portico has nothing to proxy",
            "add a [[routes]] table, e.g. path_prefix = \"/\" and upstream = \"http://127.0.0.1:9100\"",
        );
        return None;
    }
    let mut seen: BTreeMap<(Option<String>, String), usize> = BTreeMap::new();
    let mut routes = Some(Vec::new());
    for (index, route) in raw.iter().enumerate() {
        let checked = one_route(problems, index, route);
        if let Some(checked) = &checked {
            let identity = (checked.host.clone(), checked.path_prefix.clone());
            if let Some(first) = seen.insert(identity, index) {
                problems.report(
                    format!("routes[{index}].path_prefix"),
                    quoted(&route.path_prefix),
                    format!("routes[{first}] already has the same host and path_prefix"),
                    "merge the two routes, or give one a different path_prefix or host",
                );
            }
        }
        routes = routes.zip(checked).map(|(mut list, route)| {
            list.push(route);
            list
        });
    }
    if let Some(routes) = &routes {
        let trust: Vec<_> = routes
            .iter()
            .zip(raw)
            .map(|(route, raw)| {
                let file = raw.upstream_ca_file.trim();
                (
                    route.upstream_origin.clone(),
                    (!file.is_empty()).then_some(file),
                )
            })
            .collect();
        one_trust_per_origin(problems, &trust);
    }
    routes
}

fn one_route(problems: &mut Problems, index: usize, raw: &RawRoute) -> Option<RouteConfig> {
    let key = |name: &str| format!("routes[{index}].{name}");
    let mut valid = true;
    let path_prefix = if !raw.path_prefix.starts_with('/') {
        problems.report(
            key("path_prefix"),
            quoted(&raw.path_prefix),
            "must start with \"/\"",
            format!(
                "write it as \"/{}\"",
                raw.path_prefix.trim_start_matches('/')
            ),
        );
        valid = false;
        String::new()
    } else {
        // Kept in the form request paths are matched in (request_path).
        match crate::request_path::prefix_form(&raw.path_prefix) {
            Ok(form) => form,
            Err(refusal) => {
                problems.report(
                    key("path_prefix"),
                    quoted(&raw.path_prefix),
                    format!("cannot be matched safely: {refusal}"),
                    "write the path as browsers send it, without '.'/'..' segments, ';', \
                     encoded '/' or control characters, e.g. \"/admin\"",
                );
                valid = false;
                String::new()
            }
        }
    };
    let host = raw.host.trim().to_ascii_lowercase();
    if host.contains("://") || host.contains(['/', '?', '#', ' ']) {
        problems.report(
            key("host"),
            quoted(&raw.host),
            "must be a bare host name (optionally with :port)",
            "write only the host, e.g. \"app.example.com\"",
        );
        valid = false;
    }
    let upstream = upstream_url(problems, &key("upstream"), &raw.upstream);
    let upstream_ca = upstream_ca(
        problems,
        &key("upstream_ca_file"),
        &raw.upstream_ca_file,
        upstream.as_ref(),
    );
    for (role_index, role) in raw.require_roles.iter().enumerate() {
        if role.trim().is_empty() {
            problems.report(
                format!("routes[{index}].require_roles[{role_index}]"),
                quoted(role),
                "is empty",
                "remove it, or write the role's name",
            );
            valid = false;
        }
    }
    if raw.public && !raw.require_roles.is_empty() {
        problems.report(
            key("require_roles"),
            quoted_list(&raw.require_roles),
            "a public route cannot require a role (nobody is signed in to have one)",
            "remove public = true, or remove require_roles",
        );
        valid = false;
    }
    let rules = rules(problems, index, raw);
    if raw.public
        && rules
            .as_ref()
            .is_some_and(|rules| *rules != RouteRules::default())
    {
        problems.report(
            key("public"),
            "true",
            "a public route cannot have rules (nobody is signed in to pass them)",
            "remove public = true, or remove the require_*/allowed_* rules",
        );
        valid = false;
    }
    let token_cookie = raw.token_cookie.trim();
    if !token_cookie.is_empty()
        && !token_cookie
            .chars()
            .all(|character| character.is_ascii_alphanumeric() || "-_.".contains(character))
    {
        problems.report(
            key("token_cookie"),
            quoted(&raw.token_cookie),
            "is not a cookie name",
            "use letters, digits, '-', '_' or '.', e.g. \"DS\"",
        );
        valid = false;
    }
    let login_params = login_params(problems, index, &raw.login_params);
    let upstream = upstream?;
    let upstream_ca = upstream_ca?;
    let rules = rules?;
    let login_params = login_params?;
    valid.then(|| RouteConfig {
        path_prefix,
        host: (!host.is_empty()).then_some(host),
        upstream_origin: super::types::upstream_origin(&upstream),
        upstream_host: super::types::host_header(&upstream),
        upstream_ca,
        upstream,
        public: raw.public,
        api: raw.api,
        require_roles: raw.require_roles.clone(),
        rules,
        login_params,
        token_cookie: (!token_cookie.is_empty()).then(|| token_cookie.to_string()),
        identity_jwt: raw.identity_jwt,
        pass_access_token: raw.pass_access_token,
        allow_encoded_slashes: raw.allow_encoded_slashes,
        allow_path_parameters: raw.allow_path_parameters,
        case_insensitive: raw.case_insensitive,
        cache_control_private: raw.cache_control_private,
    })
}

/// A rule list: None when absent; Some(list) when every item is usable.
fn rule_list(
    problems: &mut Problems,
    key: &str,
    items: Option<&Vec<String>>,
    check: impl Fn(&str) -> Result<String, &'static str>,
) -> Option<Vec<String>> {
    let Some(items) = items else {
        return Some(Vec::new());
    };
    if items.is_empty() {
        problems.report(
            key,
            "[]",
            "an empty list is not a rule (it can never be satisfied, or means nothing)",
            "remove the key, or list what the rule requires",
        );
        return None;
    }
    let mut valid = true;
    let mut checked = Vec::new();
    for (index, item) in items.iter().enumerate() {
        match check(item) {
            Ok(value) => checked.push(value),
            Err(problem) => {
                problems.report(
                    format!("{key}[{index}]"),
                    quoted(item),
                    problem,
                    "fix or remove this entry",
                );
                valid = false;
            }
        }
    }
    valid.then_some(checked)
}

fn name(text: &str) -> Result<String, &'static str> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        Err("is empty")
    } else {
        Ok(trimmed.to_string())
    }
}

fn email(text: &str) -> Result<String, &'static str> {
    let lower = text.trim().to_ascii_lowercase();
    match lower.split('@').collect::<Vec<_>>().as_slice() {
        [local, domain] if !local.is_empty() && domain.contains('.') => Ok(lower),
        _ => Err("is not an email address with exactly one '@'"),
    }
}

fn domain(text: &str) -> Result<String, &'static str> {
    let lower = text.trim().trim_start_matches('.').to_ascii_lowercase();
    if lower.is_empty() || lower.contains('@') || !lower.contains('.') || lower.contains(['/', ' '])
    {
        Err("is not a domain name (write e.g. \"example.com\", without '@')")
    } else {
        Ok(lower)
    }
}

fn rules(problems: &mut Problems, index: usize, raw: &RawRoute) -> Option<RouteRules> {
    let key = |name: &str| format!("routes[{index}].{name}");
    let all_roles = rule_list(
        problems,
        &key("require_all_roles"),
        raw.require_all_roles.as_ref(),
        name,
    );
    let permissions = rule_list(
        problems,
        &key("require_permissions"),
        raw.require_permissions.as_ref(),
        name,
    );
    let emails = rule_list(
        problems,
        &key("allowed_emails"),
        raw.allowed_emails.as_ref(),
        email,
    );
    let domains = rule_list(
        problems,
        &key("allowed_email_domains"),
        raw.allowed_email_domains.as_ref(),
        domain,
    );
    let amr = rule_list(
        problems,
        &key("require_amr"),
        raw.require_amr.as_ref(),
        name,
    );
    let tenant = tenant_roles(
        problems,
        &key("require_tenant_roles"),
        raw.require_tenant_roles.as_ref(),
    );
    let claims = required_claims(
        problems,
        &key("require_claims"),
        raw.require_claims.as_ref(),
    );
    Some(RouteRules {
        require_all_roles: all_roles?,
        require_permissions: permissions?,
        require_tenant_roles: tenant?,
        allowed_emails: emails?,
        allowed_email_domains: domains?,
        require_claims: claims?,
        require_amr: amr?,
    })
}

fn tenant_roles(
    problems: &mut Problems,
    key: &str,
    raw: Option<&RawTenantRoles>,
) -> Option<Option<TenantRoles>> {
    let Some(raw) = raw else {
        return Some(None);
    };
    let mut valid = true;
    if raw.tenant.trim().is_empty() {
        problems.report(
            format!("{key}.tenant"),
            quoted(&raw.tenant),
            "is required",
            "name the tenant id, e.g. tenant = \"T2abc\"",
        );
        valid = false;
    }
    let roles = rule_list(problems, &format!("{key}.roles"), Some(&raw.roles), name);
    let roles = roles?;
    valid.then(|| {
        Some(TenantRoles {
            tenant: raw.tenant.trim().to_string(),
            roles,
        })
    })
}

fn required_claims(
    problems: &mut Problems,
    key: &str,
    raw: Option<&BTreeMap<String, Vec<String>>>,
) -> Option<BTreeMap<String, Vec<String>>> {
    let Some(raw) = raw else {
        return Some(BTreeMap::new());
    };
    if raw.is_empty() {
        problems.report(
            key,
            "{}",
            "an empty table is not a rule",
            "remove the key, or name a claim and its accepted values",
        );
        return None;
    }
    let mut valid = true;
    let mut claims = BTreeMap::new();
    for (path, values) in raw {
        let path_ok = !path.is_empty() && path.split('.').all(|segment| !segment.is_empty());
        if !path_ok {
            problems.report(
                format!("{key}.\"{path}\""),
                quoted_list(values),
                "is not a claim name or dot path",
                "write e.g. \"department\" or \"org.team\"",
            );
            valid = false;
            continue;
        }
        match rule_list(problems, &format!("{key}.\"{path}\""), Some(values), name) {
            Some(values) => {
                claims.insert(path.clone(), values);
            }
            None => valid = false,
        }
    }
    valid.then_some(claims)
}

fn login_params(
    problems: &mut Problems,
    index: usize,
    raw: &BTreeMap<String, String>,
) -> Option<BTreeMap<String, String>> {
    let mut valid = true;
    for name in raw.keys() {
        if super::validate_oidc::RESERVED_AUTH_PARAMS.contains(&name.as_str()) {
            problems.report(
                format!("routes[{index}].login_params.{name}"),
                quoted(&raw[name]),
                "portico sets this parameter itself",
                "remove it",
            );
            valid = false;
        }
    }
    valid.then(|| raw.clone())
}

/// The top-level claims a session must keep for the routes' rules.
pub(crate) fn kept_claims(routes: &[RouteConfig]) -> Vec<String> {
    let mut kept = BTreeSet::new();
    for route in routes {
        for path in route.rules.require_claims.keys() {
            if let Some(first) = path.split('.').next() {
                kept.insert(first.to_string());
            }
        }
        if route.rules.require_tenant_roles.is_some() {
            kept.insert("tenants".to_string());
        }
    }
    kept.into_iter().collect()
}

/// The claims portico reads about a person (see `OidcConfig::wanted_claims`):
/// with `userinfo = "auto"`, an ID token lacking one of them is completed
/// from the userinfo endpoint. Permissions count only when a route requires
/// some, since nothing else reads them.
pub(crate) fn wanted_claims(oidc: &OidcConfig, routes: &[RouteConfig]) -> Vec<String> {
    let mut wanted: Vec<String> = ["email", "name", "preferred_username"]
        .iter()
        .map(|name| (*name).to_string())
        .collect();
    wanted.push(oidc.roles_claim.clone());
    wanted.push(oidc.groups_claim.clone());
    if routes
        .iter()
        .any(|route| !route.rules.require_permissions.is_empty())
    {
        wanted.push(oidc.permissions_claim.clone());
    }
    for route in routes {
        wanted.extend(route.rules.require_claims.keys().cloned());
        if route.rules.require_tenant_roles.is_some() {
            wanted.push("tenants".to_string());
        }
    }
    let mut seen = BTreeSet::new();
    wanted.retain(|name| seen.insert(name.clone()));
    wanted
}
