//! Headers that keep portico's own pages from being framed, sniffed or
//! leaking where they were: on every page and error portico renders, and on
//! the dev OP's pages.
//!
//! - `Content-Security-Policy`: nothing loads but the pages' stylesheet
//!   (served by portico, `'self'`) and their own inline `<style>` and
//!   `<script>` blocks, each allowed by its SHA-256 hash (CSP
//!   Level 3 §8.3), taken from the template *sources*: a block whose
//!   rendered text differs from its source (an interpolated value) does not
//!   run. Images may come from the site or https (a configured logo).
//!   `frame-ancestors 'none'` and `base-uri 'none'`.
//! - `X-Frame-Options: DENY` for browsers without CSP frame-ancestors.
//! - `X-Content-Type-Options: nosniff`, `Referrer-Policy: no-referrer`.
//! - `Strict-Transport-Security` when `public_url` is https, added by
//!   [`crate::front`] to every answer marked by [`harden`] (the pages know
//!   nothing of the config).
//!
//! Answers from upstreams never get these: their pages are the app's.

use std::sync::LazyLock;

use axum::response::Response;
use base64::Engine as _;
use http::header::{
    CONTENT_SECURITY_POLICY, REFERRER_POLICY, STRICT_TRANSPORT_SECURITY, X_CONTENT_TYPE_OPTIONS,
    X_FRAME_OPTIONS,
};
use http::{HeaderMap, HeaderValue};
use sha2::Digest as _;

/// The templates portico and the dev OP render as their own pages (the echo
/// upstream's page is an app's, not portico's).
const PAGE_TEMPLATES: &[(&str, &str)] = &[
    ("base.html", include_str!("../templates/base.html")),
    ("error.html", include_str!("../templates/error.html")),
    (
        "forbidden.html",
        include_str!("../templates/forbidden.html"),
    ),
    ("setup.html", include_str!("../templates/setup.html")),
    ("sign_out.html", include_str!("../templates/sign_out.html")),
    (
        "signed_out.html",
        include_str!("../templates/signed_out.html"),
    ),
    (
        "devop_login.html",
        include_str!("../templates/devop_login.html"),
    ),
    (
        "devop_message.html",
        include_str!("../templates/devop_message.html"),
    ),
];

/// The text of every `<tag …>…</tag>` element in `source`.
fn inline_blocks<'a>(source: &'a str, tag: &str) -> Vec<&'a str> {
    let open = format!("<{tag}");
    let close = format!("</{tag}>");
    let mut blocks = Vec::new();
    let mut rest = source;
    while let Some(start) = rest.find(&open) {
        let after_name = &rest[start + open.len()..];
        // `<style>` or `<style …>`, not `<styles>`.
        if !after_name.starts_with(['>', ' ', '\n', '\t']) {
            rest = after_name;
            continue;
        }
        let Some(tag_end) = after_name.find('>') else {
            break;
        };
        let body = &after_name[tag_end + 1..];
        let Some(end) = body.find(&close) else {
            break;
        };
        blocks.push(&body[..end]);
        rest = &body[end + close.len()..];
    }
    blocks
}

/// `'sha256-…'` of each distinct inline `tag` block of the page templates.
fn hashes(tag: &str) -> Vec<String> {
    let mut hashes: Vec<String> = PAGE_TEMPLATES
        .iter()
        .flat_map(|(_, source)| inline_blocks(source, tag))
        .filter(|block| !block.is_empty())
        .map(|block| {
            let digest = sha2::Sha256::digest(block.as_bytes());
            format!(
                "'sha256-{}'",
                base64::engine::general_purpose::STANDARD.encode(digest)
            )
        })
        .collect();
    hashes.sort();
    hashes.dedup();
    hashes
}

/// The policy text: built once from the compiled-in templates.
fn policy() -> String {
    let mut policy = String::from("default-src 'none'");
    let scripts = hashes("script");
    if !scripts.is_empty() {
        policy.push_str("; script-src ");
        policy.push_str(&scripts.join(" "));
    }
    // The pages' one stylesheet is served by portico itself
    // (`/oauth2/assets/portico.css`, the dev OP's `/assets/portico.css`).
    policy.push_str("; style-src 'self'");
    for hash in hashes("style") {
        policy.push(' ');
        policy.push_str(&hash);
    }
    policy.push_str("; img-src 'self' data: https:; base-uri 'none'; frame-ancestors 'none'");
    policy
}

static POLICY: LazyLock<HeaderValue> = LazyLock::new(|| {
    HeaderValue::try_from(policy())
        .unwrap_or_else(|_| HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'"))
});

/// Whether the policy lets every inline `<script>` and `<style>` block of
/// `rendered` (a page as sent) run (tests of the pages use it).
#[cfg(test)]
pub(crate) fn policy_allows_inline_blocks_of(rendered: &str) -> Result<(), String> {
    let policy = POLICY.to_str().unwrap_or_default().to_string();
    for tag in ["script", "style"] {
        for block in inline_blocks(rendered, tag) {
            let digest = sha2::Sha256::digest(block.as_bytes());
            let hash = format!(
                "'sha256-{}'",
                base64::engine::general_purpose::STANDARD.encode(digest)
            );
            if !policy.contains(&hash) {
                return Err(format!(
                    "an inline <{tag}> block is not in the policy: {hash}"
                ));
            }
        }
    }
    for attribute in [
        " style=\"",
        " onclick=",
        " onload=",
        " onsubmit=",
        " onerror=",
        "javascript:",
    ] {
        if rendered.contains(attribute) {
            return Err(format!(
                "the page uses {attribute:?}, which the policy blocks"
            ));
        }
    }
    Ok(())
}

/// Marks an answer portico made itself (for HSTS, added where the config is known).
#[derive(Debug, Clone, Copy)]
pub struct PorticoAnswer;

/// `Strict-Transport-Security` for an https `public_url`: a year, this host
/// only (portico cannot know the operator's other subdomains).
pub const HSTS: HeaderValue = HeaderValue::from_static("max-age=31536000");

/// Sets the framing, sniffing and referrer headers on `headers`.
pub fn set_headers(headers: &mut HeaderMap) {
    headers.insert(CONTENT_SECURITY_POLICY, POLICY.clone());
    headers.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
}

/// Sets the headers on an answer portico made, and marks it as portico's.
pub fn harden(response: &mut Response) {
    set_headers(response.headers_mut());
    response.extensions_mut().insert(PorticoAnswer);
}

/// Adds HSTS to an answer [`harden`] marked, when `https` (public_url's scheme).
pub fn add_hsts(response: &mut Response, https: bool) {
    if https && response.extensions().get::<PorticoAnswer>().is_some() {
        response
            .headers_mut()
            .insert(STRICT_TRANSPORT_SECURITY, HSTS);
    }
}

#[cfg(test)]
#[path = "page_security_tests.rs"]
mod tests;
