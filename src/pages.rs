//! Responses people and programs read: askama pages for browsers, JSON for
//! API clients, from the same error.
//!
//! A browser gets a page saying what went wrong, what to do, and a request
//! id to quote; an API client gets `{"error", "status", "message",
//! "request_id"}` and, on 401, `WWW-Authenticate: Bearer`.
//!
//! Pages name the application as `[server] app_name` and `logo_url` say.
//! That branding travels with the request as a task-local, set once in
//! `front` for everything portico answers, so the many places that answer
//! with an error need not carry the config along. Pages use no inline style
//! or script: their look is one stylesheet, [`STYLESHEET`], served at
//! [`STYLESHEET_PATH`].

use std::future::Future;
use std::sync::{Arc, LazyLock};

use askama::Template;
use axum::response::{Html, IntoResponse, Response};
use http::header::{CACHE_CONTROL, CONTENT_TYPE, WWW_AUTHENTICATE};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};

use crate::config::Branding;
use crate::error::GatewayError;

/// Where portico serves its pages' stylesheet.
pub const STYLESHEET_PATH: &str = "/oauth2/assets/portico.css";
/// The stylesheet of portico's pages (and of the dev OP's, which serves its own copy).
pub const STYLESHEET: &str = include_str!("../templates/portico.css");

tokio::task_local! {
    static BRANDING: Arc<Branding>;
}

static DEFAULT_BRANDING: LazyLock<Arc<Branding>> = LazyLock::new(Arc::default);

/// Runs `future` with `branding` naming the app on every page it renders.
pub fn with_branding<F: Future>(
    branding: Arc<Branding>,
    future: F,
) -> impl Future<Output = F::Output> {
    BRANDING.scope(branding, future)
}

/// The branding of the request being answered ("portico" outside one).
pub fn branding() -> Arc<Branding> {
    BRANDING
        .try_with(Arc::clone)
        .unwrap_or_else(|_| DEFAULT_BRANDING.clone())
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    brand: &'a Branding,
    status: u16,
    title: &'a str,
    message: &'a str,
    advice: &'a str,
    request_id: &'a str,
    retry_url: Option<&'a str>,
}

#[derive(Template)]
#[template(path = "forbidden.html")]
struct ForbiddenPage<'a> {
    brand: &'a Branding,
    user: Option<&'a str>,
    csrf: &'a str,
    /// The refused URL, where "Sign in with another account" comes back to.
    return_to: Option<&'a str>,
    request_id: &'a str,
}

#[derive(Template)]
#[template(path = "signed_out.html")]
struct SignedOutPage<'a> {
    brand: &'a Branding,
}

#[derive(Template)]
#[template(path = "sign_out.html")]
struct SignOutPage<'a> {
    brand: &'a Branding,
    user: Option<&'a str>,
    csrf: &'a str,
    rd: Option<&'a str>,
    request_id: &'a str,
}

#[derive(Template)]
#[template(path = "not_signed_in.html")]
struct NotSignedInPage<'a> {
    brand: &'a Branding,
    sign_in_url: &'a str,
    request_id: &'a str,
}

/// True when the client is a program that wants JSON, not a page: an API
/// route, an XHR, or an Accept header that takes JSON but not HTML.
pub fn wants_json(headers: &HeaderMap, api_route: bool) -> bool {
    if api_route || headers.contains_key(&X_REQUESTED_WITH) {
        return true;
    }
    let accept = headers
        .get(http::header::ACCEPT)
        .map_or(&b""[..], HeaderValue::as_bytes);
    contains_ignoring_case(accept, b"json") && !contains_ignoring_case(accept, b"text/html")
}

/// Named once: a header looked up by a `&str` is parsed on every lookup
/// (callgrind: 330 instructions a request for this one).
static X_REQUESTED_WITH: HeaderName = HeaderName::from_static("x-requested-with");

/// Whether `haystack` contains `needle` in any ASCII letter case (without
/// a lower-cased copy of it).
fn contains_ignoring_case(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window.eq_ignore_ascii_case(needle))
}

/// True unless a browser says this request is not a page navigation
/// (`Sec-Fetch-Mode` other than `navigate`: an image, a script, a fetch, the
/// favicon). Only navigations start a sign-in: a subresource that did would
/// set a login cookie nobody finishes, and could push out the login cookie of
/// the page the person is actually signing in to.
pub fn is_navigation(headers: &HeaderMap) -> bool {
    headers
        .get("sec-fetch-mode")
        .and_then(|value| value.to_str().ok())
        .is_none_or(|mode| mode.eq_ignore_ascii_case("navigate"))
}

/// The error as a page or as JSON.
pub fn error_response(error: &GatewayError, request_id: &str, json: bool) -> Response {
    error_response_with_retry(error, request_id, json, None)
}

pub fn error_response_with_retry(
    error: &GatewayError,
    request_id: &str,
    json: bool,
    retry_url: Option<&str>,
) -> Response {
    let status = error.status();
    let explanation = error.explain();
    let mut response = if json {
        let body = serde_json::json!({
            "error": error.code(),
            "status": status.as_u16(),
            "message": explanation.message,
            "request_id": request_id,
        });
        (status, axum::Json(body)).into_response()
    } else {
        let brand = branding();
        let page = ErrorPage {
            brand: &brand,
            status: status.as_u16(),
            title: explanation.title,
            message: &explanation.message,
            advice: explanation.advice,
            request_id,
            retry_url,
        };
        html(status, page.render())
    };
    crate::page_security::harden(&mut response);
    if let Some(seconds) = error.retry_after() {
        response
            .headers_mut()
            .insert(http::header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    if status == StatusCode::UNAUTHORIZED {
        let challenge = match error {
            GatewayError::InvalidBearer(description) => HeaderValue::from_str(&format!(
                "Bearer realm=\"portico\", error=\"invalid_token\", error_description=\"{}\"",
                challenge_text(description)
            ))
            .unwrap_or_else(|_| {
                HeaderValue::from_static("Bearer realm=\"portico\", error=\"invalid_token\"")
            }),
            _ => HeaderValue::from_static("Bearer realm=\"portico\""),
        };
        response.headers_mut().insert(WWW_AUTHENTICATE, challenge);
    }
    response
}

/// Text safe inside a quoted challenge parameter (RFC 6750 §3: no quotes or
/// backslashes, printable ASCII).
fn challenge_text(text: &str) -> String {
    text.chars()
        .filter(|character| character.is_ascii_graphic() || *character == ' ')
        .filter(|character| !matches!(character, '"' | '\\'))
        .take(200)
        .collect()
}

/// The 403 page for a signed-in user who fails a route's rules. `return_to`
/// is the refused URL: "Sign in with another account" comes back to it.
pub fn forbidden(
    user: Option<&str>,
    csrf: &str,
    return_to: Option<&str>,
    request_id: &str,
    json: bool,
) -> Response {
    if json {
        return error_response(
            &GatewayError::Forbidden("route rules".into()),
            request_id,
            true,
        );
    }
    let brand = branding();
    let page = ForbiddenPage {
        brand: &brand,
        user,
        csrf,
        return_to,
        request_id,
    };
    html(StatusCode::FORBIDDEN, page.render())
}

pub fn signed_out() -> Response {
    let brand = branding();
    html(StatusCode::OK, SignedOutPage { brand: &brand }.render())
}

pub fn sign_out_confirmation(
    user: Option<&str>,
    csrf: &str,
    rd: Option<&str>,
    request_id: &str,
) -> Response {
    let brand = branding();
    let page = SignOutPage {
        brand: &brand,
        user,
        csrf,
        rd,
        request_id,
    };
    html(StatusCode::OK, page.render())
}

/// The sign-out page when there is no session to end: says so, and offers
/// to sign in (coming back to `rd`, an already checked return URL).
pub fn not_signed_in(rd: Option<&str>, request_id: &str) -> Response {
    let sign_in_url = match rd {
        Some(rd) => format!(
            "/oauth2/start?rd={}",
            url::form_urlencoded::byte_serialize(rd.as_bytes()).collect::<String>()
        ),
        None => "/oauth2/start".to_owned(),
    };
    let brand = branding();
    let page = NotSignedInPage {
        brand: &brand,
        sign_in_url: &sign_in_url,
        request_id,
    };
    html(StatusCode::OK, page.render())
}

/// The stylesheet, cacheable for a day (it changes only with portico's version).
pub fn stylesheet() -> Response {
    let mut response = (StatusCode::OK, STYLESHEET).into_response();
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/css; charset=utf-8"),
    );
    headers.insert(
        CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=86400"),
    );
    response
}

/// A rendered page as a response (`no-store`), or a plain-text 500 line if rendering failed.
pub fn html(status: StatusCode, rendered: Result<String, askama::Error>) -> Response {
    match rendered {
        Ok(body) => {
            let mut response = (status, Html(body)).into_response();
            response
                .headers_mut()
                .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
            crate::page_security::harden(&mut response);
            response
        }
        Err(error) => {
            tracing::error!(%error, "template failed to render");
            let mut response = (status, "this page could not be rendered").into_response();
            response
                .headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
            crate::page_security::harden(&mut response);
            response
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn browsers_get_pages_and_programs_get_json() {
        let browser = headers(&[("accept", "text/html,application/xhtml+xml,*/*;q=0.8")]);
        assert!(!wants_json(&browser, false));
        assert!(wants_json(&browser, true));
        assert!(wants_json(
            &headers(&[("accept", "application/json")]),
            false
        ));
        assert!(wants_json(
            &headers(&[("x-requested-with", "XMLHttpRequest")]),
            false
        ));
        assert!(!wants_json(&headers(&[("accept", "*/*")]), false));
        assert!(!wants_json(&HeaderMap::new(), false));
        // Media types in any letter case.
        assert!(wants_json(
            &headers(&[("accept", "Application/JSON")]),
            false
        ));
        assert!(!wants_json(
            &headers(&[("accept", "Text/HTML, application/json")]),
            false
        ));
        assert!(!wants_json(&headers(&[("accept", "jso")]), false));
    }

    #[test]
    fn only_navigations_start_a_sign_in() {
        assert!(
            is_navigation(&HeaderMap::new()),
            "clients without Fetch Metadata"
        );
        assert!(is_navigation(&headers(&[("sec-fetch-mode", "navigate")])));
        assert!(!is_navigation(&headers(&[
            ("sec-fetch-mode", "no-cors"),
            ("sec-fetch-dest", "image"),
        ])));
        assert!(!is_navigation(&headers(&[("sec-fetch-mode", "cors")])));
    }

    #[test]
    fn error_page_shows_what_to_do_and_the_request_id() {
        let response = error_response(&GatewayError::ProviderNotReady, "req-123", false);
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            response.headers().get(CONTENT_TYPE).unwrap(),
            "text/html; charset=utf-8"
        );
    }

    async fn body_of(response: Response) -> String {
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn pages_name_the_app_the_request_was_answered_for() {
        let acme = Arc::new(Branding {
            app_name: "Acme <Reports>".to_owned(),
            logo_url: Some("https://cdn.example.com/acme.svg".to_owned()),
        });
        let page = with_branding(acme, async {
            error_response(&GatewayError::UnknownEndpoint, "req-9", false)
        })
        .await;
        assert_eq!(page.status(), StatusCode::NOT_FOUND);
        let body = body_of(page).await;
        assert!(
            body.contains("<title>Page not found · Acme &#60;Reports&#62;</title>"),
            "{body}"
        );
        assert!(
            body.contains("<img class=\"logo\" src=\"https://cdn.example.com/acme.svg\" alt=\"\">"),
            "{body}"
        );
        // Outside any request: "portico".
        let plain = body_of(signed_out()).await;
        assert!(
            plain.contains("<title>Signed out · portico</title>"),
            "{plain}"
        );
    }

    #[tokio::test]
    async fn the_sign_out_page_without_a_session_links_to_the_start_with_the_return_url() {
        let page = body_of(not_signed_in(
            Some("https://app.example.com/a?b=c&d"),
            "req-2",
        ))
        .await;
        assert!(page.contains("You are not signed in"), "{page}");
        assert!(
            page.contains(
                "href=\"/oauth2/start?rd=https%3A%2F%2Fapp.example.com%2Fa%3Fb%3Dc%26d\""
            ),
            "{page}"
        );
        let without = body_of(not_signed_in(None, "req-3")).await;
        assert!(without.contains("href=\"/oauth2/start\""), "{without}");
    }

    #[tokio::test]
    async fn the_403_page_offers_to_switch_accounts_and_come_back() {
        let page = body_of(forbidden(
            Some("bob@example.test"),
            "token",
            Some("https://app.example.com/admin?x=1&y=2"),
            "req-4",
            false,
        ))
        .await;
        assert!(
            page.contains("name=\"switch_account\" value=\"1\""),
            "{page}"
        );
        assert!(
            page.contains("name=\"rd\" value=\"https://app.example.com/admin?x=1&#38;y=2\""),
            "{page}"
        );
        assert!(page.contains("name=\"csrf\" value=\"token\""), "{page}");
    }

    #[test]
    fn unauthorized_json_carries_www_authenticate() {
        let response = error_response(&GatewayError::NotSignedIn, "req-1", true);
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert!(response.headers().contains_key(WWW_AUTHENTICATE));
        assert_eq!(
            response.headers().get(CONTENT_TYPE).unwrap(),
            "application/json"
        );
    }
}
