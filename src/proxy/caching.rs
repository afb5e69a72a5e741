//! Answers on protected routes are not for shared caches.
//!
//! A page made for one signed-in user, stored by a CDN or shared proxy in
//! front of portico, would be served to the next person asking, signed in
//! or not. So a protected route's answers leave with `Cache-Control:
//! private` at least (RFC 9111 §5.2.2.7): an upstream that said `public`,
//! or nothing, is tightened; one that said `private` or `no-store` already
//! is left alone. And `Vary` names what portico decided on (RFC 9110
//! §12.5.5): the cookie for a session, `Authorization` for a bearer token.
//! A route can opt out with `cache_control_private = false`.

use http::header::{Entry, CACHE_CONTROL, VARY};
use http::{HeaderMap, HeaderValue};

/// What becomes of the upstream's `Cache-Control`.
#[derive(Debug, PartialEq, Eq)]
pub enum CacheControl {
    /// Already `private` or `no-store`: left as it is.
    Unchanged,
    /// Replaced by this.
    Set(HeaderValue),
}

/// The `Cache-Control` a protected answer leaves with, given the
/// upstream's lines: `private` first, then the upstream's directives less
/// the ones only shared caches read (`public`, `s-maxage`).
pub fn tightened(lines: &[&str]) -> CacheControl {
    let directives = || {
        lines
            .iter()
            .flat_map(|line| line.split(','))
            .map(str::trim)
            .filter(|directive| !directive.is_empty())
    };
    // `private="Set-Cookie"` keeps only that field private (§5.2.2.7): it
    // does not count.
    let already = directives().any(|directive| {
        directive.eq_ignore_ascii_case("private") || directive.eq_ignore_ascii_case("no-store")
    });
    if already {
        return CacheControl::Unchanged;
    }
    let mut kept = String::from("private");
    for directive in directives() {
        let directive_name = directive_name(directive);
        if ["public", "s-maxage", "private"]
            .iter()
            .any(|dropped| directive_name.eq_ignore_ascii_case(dropped))
        {
            continue;
        }
        kept.push_str(", ");
        kept.push_str(directive);
    }
    if kept == "private" {
        return CacheControl::Set(HeaderValue::from_static("private"));
    }
    match HeaderValue::try_from(kept) {
        Ok(value) => CacheControl::Set(value),
        Err(_) => CacheControl::Set(HeaderValue::from_static("private")),
    }
}

/// Makes `headers` (a protected route's answer) private, and says it
/// varies on `varies_on` (the request headers portico decided on).
/// A directive's name (`max-age` of `max-age=60`), as written.
fn directive_name(directive: &str) -> &str {
    directive.split('=').next().unwrap_or_default().trim()
}

pub fn keep_private(headers: &mut HeaderMap, varies_on: &[&'static str]) {
    // One lookup per header name (the entry API): this runs on every
    // answer of a protected route, most of which carry neither header.
    match headers.entry(CACHE_CONTROL) {
        Entry::Vacant(vacant) => {
            vacant.insert(HeaderValue::from_static("private"));
        }
        Entry::Occupied(mut occupied) => {
            let lines: Vec<&str> = occupied
                .iter()
                .map(|value| value.to_str().unwrap_or_default())
                .collect();
            if let CacheControl::Set(value) = tightened(&lines) {
                occupied.insert(value);
            }
        }
    }
    if varies_on.is_empty() {
        return;
    }
    match headers.entry(VARY) {
        Entry::Vacant(vacant) => {
            let mut names = varies_on.iter();
            if let Some(first) = names.next() {
                let mut entry = vacant.insert_entry(HeaderValue::from_static(first));
                for name in names {
                    entry.append(HeaderValue::from_static(name));
                }
            }
        }
        Entry::Occupied(mut occupied) => {
            for name in varies_on {
                let named = occupied
                    .iter()
                    .filter_map(|value| value.to_str().ok())
                    .flat_map(|line| line.split(','))
                    .map(str::trim)
                    .any(|token| token == "*" || token.eq_ignore_ascii_case(name));
                if !named {
                    occupied.append(HeaderValue::from_static(name));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn after(lines: &[&str]) -> String {
        match tightened(lines) {
            CacheControl::Unchanged => "unchanged".to_string(),
            CacheControl::Set(value) => value.to_str().unwrap().to_string(),
        }
    }

    #[test]
    fn nothing_or_public_becomes_private() {
        assert_eq!(after(&[]), "private");
        assert_eq!(after(&["public"]), "private");
        assert_eq!(after(&["public, max-age=600"]), "private, max-age=600");
        assert_eq!(
            after(&["max-age=600, s-maxage=3600", "PUBLIC"]),
            "private, max-age=600"
        );
        assert_eq!(after(&["no-cache"]), "private, no-cache");
        assert_eq!(
            after(&["private=\"Set-Cookie\", max-age=60"]),
            "private, max-age=60"
        );
    }

    #[test]
    fn private_or_no_store_is_kept_as_the_upstream_said() {
        assert_eq!(after(&["private, max-age=60"]), "unchanged");
        assert_eq!(after(&["no-store"]), "unchanged");
        assert_eq!(after(&["public", "No-Store"]), "unchanged");
    }

    #[test]
    fn vary_names_what_decided_the_answer_once() {
        let mut headers = HeaderMap::new();
        keep_private(&mut headers, &["Cookie"]);
        assert_eq!(headers.get(CACHE_CONTROL).unwrap(), "private");
        assert_eq!(headers.get(VARY).unwrap(), "Cookie");
        keep_private(&mut headers, &["Cookie"]);
        assert_eq!(headers.get_all(VARY).iter().count(), 1);

        let mut upstream = HeaderMap::new();
        upstream.insert(VARY, HeaderValue::from_static("Accept-Encoding, cookie"));
        upstream.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        keep_private(&mut upstream, &["Cookie", "Authorization"]);
        assert_eq!(upstream.get(CACHE_CONTROL).unwrap(), "no-store");
        let vary: Vec<_> = upstream.get_all(VARY).iter().collect();
        assert_eq!(vary, ["Accept-Encoding, cookie", "Authorization"]);

        let mut star = HeaderMap::new();
        star.insert(VARY, HeaderValue::from_static("*"));
        keep_private(&mut star, &["Cookie"]);
        assert_eq!(star.get_all(VARY).iter().count(), 1);
    }

    #[test]
    fn an_upstream_that_splits_or_repeats_its_headers_still_ends_private() {
        // `public` hidden in a second Cache-Control line, in capitals.
        let mut split = HeaderMap::new();
        split.append(CACHE_CONTROL, HeaderValue::from_static("max-age=60"));
        split.append(
            CACHE_CONTROL,
            HeaderValue::from_static("PUBLIC, s-maxage=600"),
        );
        keep_private(&mut split, &["Authorization"]);
        let lines: Vec<_> = split.get_all(CACHE_CONTROL).iter().collect();
        assert_eq!(lines, ["private, max-age=60"]);
        // Vary over several lines, the name in another case in the last.
        let mut vary = HeaderMap::new();
        vary.append(VARY, HeaderValue::from_static("Accept-Encoding"));
        vary.append(VARY, HeaderValue::from_static("Origin,  COOKIE "));
        keep_private(&mut vary, &["Cookie"]);
        assert_eq!(vary.get_all(VARY).iter().count(), 2);
        // Neither header: both names of a bearer and a session route added.
        let mut bare = HeaderMap::new();
        keep_private(&mut bare, &["Cookie", "Authorization"]);
        let names: Vec<_> = bare.get_all(VARY).iter().collect();
        assert_eq!(names, ["Cookie", "Authorization"]);
    }
}
