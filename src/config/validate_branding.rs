//! `[server] app_name` and `logo_url`: what portico's own pages call the
//! application they guard, instead of "portico".
//!
//! The name is shown as text (escaped), so only its length and control
//! characters matter. The logo is an `<img src>`: an https URL, or a path on
//! portico's own origin ("/static/logo.svg"). Plain http would be mixed
//! content on an https site, `data:` and `javascript:` URLs are no images a
//! page should take from config, and a scheme-relative "//host" would fetch
//! from wherever the page happens to be served.

use url::Url;

use super::errors::{quoted, Problems};
use super::types::Branding;

/// Longest `app_name` accepted, in characters: it has to fit above a card on a phone.
pub(crate) const MAX_APP_NAME_CHARS: usize = 60;

const APP_NAME_FIX: &str =
    "write the application's name as people know it, e.g. \"Acme Reports\" (1 to 60 characters)";
const LOGO_FIX: &str =
    "use an https URL (\"https://cdn.example.com/logo.svg\") or a path on this site (\"/static/logo.svg\"), or \"\" for none";

pub(crate) fn branding(
    problems: &mut Problems,
    app_name: &str,
    logo_url: &str,
) -> Option<Branding> {
    let name = app_name_problem(app_name).map_or_else(
        || Some(app_name.trim().to_owned()),
        |problem| {
            problems.report("server.app_name", quoted(app_name), problem, APP_NAME_FIX);
            None
        },
    );
    let logo = match logo_problem(logo_url) {
        None => Some((!logo_url.is_empty()).then(|| logo_url.to_owned())),
        Some(problem) => {
            problems.report("server.logo_url", quoted(logo_url), problem, LOGO_FIX);
            None
        }
    };
    Some(Branding {
        app_name: name?,
        logo_url: logo?,
    })
}

/// What is wrong with an `app_name`, if anything.
fn app_name_problem(name: &str) -> Option<&'static str> {
    let trimmed = name.trim();
    if trimmed.is_empty() {
        Some("is empty")
    } else if trimmed.chars().count() > MAX_APP_NAME_CHARS {
        Some("is longer than 60 characters")
    } else if trimmed.chars().any(char::is_control) {
        Some("contains a control character (a line break or tab)")
    } else {
        None
    }
}

/// What is wrong with a `logo_url`, if anything ("" means no logo).
fn logo_problem(text: &str) -> Option<&'static str> {
    if text.is_empty() {
        return None;
    }
    if text
        .chars()
        .any(|character| character.is_control() || character.is_whitespace())
    {
        return Some("contains spaces or control characters");
    }
    if text.starts_with('/') {
        // A path on our origin; "//host" and "/\host" are other hosts to a browser.
        return match text.as_bytes().get(1) {
            Some(b'/' | b'\\') => Some("is scheme-relative: it would load from another host"),
            _ => None,
        };
    }
    match Url::parse(text) {
        Ok(url) if url.scheme() == "https" && url.host().is_some() => None,
        Ok(url) if url.scheme() == "http" => {
            Some("is plain http: browsers block it on https pages (mixed content)")
        }
        Ok(_) => Some("must be an https URL or a path starting with \"/\""),
        Err(_) => Some("is neither an absolute https URL nor a path starting with \"/\""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_names_people_write_are_accepted_and_trimmed() {
        let mut problems = Problems::default();
        let branding = branding(&mut problems, "  Acme Reports ", "").unwrap();
        assert_eq!(branding.app_name, "Acme Reports");
        assert_eq!(branding.logo_url, None);
        assert!(problems.is_empty());
    }

    #[test]
    fn empty_long_or_multiline_app_names_are_refused() {
        assert_eq!(app_name_problem("   "), Some("is empty"));
        assert!(app_name_problem(&"x".repeat(61)).is_some());
        assert!(app_name_problem(&"é".repeat(60)).is_none());
        assert!(app_name_problem("Acme\nReports").is_some());
    }

    #[test]
    fn logos_are_https_or_paths_on_this_site() {
        for good in [
            "",
            "https://cdn.example.com/logo.svg",
            "/static/logo.png",
            "/logo.svg?v=2",
        ] {
            assert_eq!(logo_problem(good), None, "{good}");
        }
        for bad in [
            "http://cdn.example.com/logo.svg",
            "//evil.example/logo.svg",
            "/\\evil.example/logo.svg",
            "javascript:alert(1)",
            "data:image/svg+xml;base64,PHN2Zz4=",
            "logo.svg",
            "https://cdn.example.com/a logo.svg",
            "https://",
        ] {
            assert!(logo_problem(bad).is_some(), "{bad}");
        }
    }

    #[test]
    fn both_problems_are_reported_at_once() {
        let mut problems = Problems::default();
        assert!(branding(&mut problems, "", "http://x.example/l.png").is_none());
        let keys: Vec<String> = problems
            .into_errors()
            .into_iter()
            .map(|error| error.key)
            .collect();
        assert_eq!(keys, ["server.app_name", "server.logo_url"]);
    }
}
