//! Who the OpenID Provider is and who we are to it: provider kind, issuer,
//! client id.
//!
//! The Descope preset lives here: from a project id it derives the base URL
//! (regional for new-style ids), the issuer and the client id, so a Descope
//! user writes one key instead of three and cannot get the issuer's exact
//! spelling wrong. An explicit `issuer`, `client_id` or `base_url` wins.

use url::Url;

use super::errors::{quoted, Problems};
use super::raw::RawOidc;
use super::types::ProviderKind;
use super::validate::{http_url, is_loopback, non_empty};

/// Who the provider is and who we are to it.
pub(crate) struct Identity {
    pub provider: ProviderKind,
    pub issuer: String,
    pub client_id: String,
    pub project_id: Option<String>,
    pub base_url: Option<Url>,
    pub flow: Option<String>,
}

/// Parses `provider` and works out the provider's identity.
pub(crate) fn identity(problems: &mut Problems, raw: &RawOidc) -> Option<Identity> {
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
    match provider? {
        ProviderKind::Generic => generic_identity(problems, raw),
        ProviderKind::Descope => descope_identity(problems, raw),
    }
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
        provider: ProviderKind::Generic,
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
    } else if is_placeholder_project_id(&raw.project_id) {
        problems.report(
            "oidc.project_id",
            quoted(&raw.project_id),
            "is a placeholder, not a real project id",
            "put in your project's id: Descope console → Project settings → Project ID \
             (it starts with P, e.g. \"P2abc…\")",
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
        provider: ProviderKind::Descope,
        issuer: issuer?,
        client_id: client_id?,
        project_id: Some(project_id?),
        base_url: Some(base_url?),
        flow: (!raw.flow.is_empty()).then(|| raw.flow.clone()),
    })
}

/// Whether a project id is an example left in place (the one the docs and
/// the example config ship, or anything that says "your project", "example",
/// "placeholder" or "xxx"): it would only fail later, at discovery, with a
/// far less helpful message.
pub(crate) fn is_placeholder_project_id(project_id: &str) -> bool {
    let lower = project_id.to_ascii_lowercase();
    [
        "yourproject",
        "example",
        "placeholder",
        "changeme",
        "xxx",
        "projectid",
    ]
    .iter()
    .any(|marker| lower.contains(marker))
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

#[cfg(test)]
#[allow(clippy::expect_used, clippy::panic, clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn placeholder_project_ids_are_recognised_and_real_ones_are_not() {
        for placeholder in [
            "P2YourProjectIdHere",
            "YourProjectId",
            "P2example",
            "PXXXXXXXXXXXX",
            "P2xxxx",
            "Pplaceholder",
            "P2ProjectIdHere",
        ] {
            assert!(is_placeholder_project_id(placeholder), "{placeholder}");
        }
        for real in [
            "P2abcDEF123",
            "P2TestProject",
            "Peuc12xYzAbCdEfGhIjKlMnOpQrStUvW",
        ] {
            assert!(!is_placeholder_project_id(real), "{real}");
        }
    }

    #[test]
    fn descope_base_url_takes_the_region_from_long_project_ids() {
        assert_eq!(
            descope_base_url("Peuc12vQ8bS1ZiSXHCCOh5cDlEsSxxxx"),
            "https://api.euc1.descope.com"
        );
        assert_eq!(descope_base_url("P2abcdef"), "https://api.descope.com");
    }
}
