//! Responses people and programs read: askama pages for browsers, JSON for
//! API clients, from the same error.
//!
//! A browser gets a page saying what went wrong, what to do, and a request
//! id to quote; an API client gets `{"error", "status", "message",
//! "request_id"}` and, on 401, `WWW-Authenticate: Bearer`.

use askama::Template;
use axum::response::{Html, IntoResponse, Response};
use http::header::{CACHE_CONTROL, CONTENT_TYPE, WWW_AUTHENTICATE};
use http::{HeaderMap, HeaderValue, StatusCode};

use crate::error::GatewayError;

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
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
    user: Option<&'a str>,
    csrf: &'a str,
    request_id: &'a str,
}

#[derive(Template)]
#[template(path = "signed_out.html")]
struct SignedOutPage;

#[derive(Template)]
#[template(path = "sign_out.html")]
struct SignOutPage<'a> {
    user: Option<&'a str>,
    csrf: &'a str,
    rd: Option<&'a str>,
    request_id: &'a str,
}

/// True when the client is a program that wants JSON, not a page: an API
/// route, an XHR, or an Accept header that takes JSON but not HTML.
pub fn wants_json(headers: &HeaderMap, api_route: bool) -> bool {
    if api_route || headers.contains_key("x-requested-with") {
        return true;
    }
    let accept = headers
        .get(http::header::ACCEPT)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    accept.contains("json") && !accept.contains("text/html")
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
        let page = ErrorPage {
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

/// The 403 page for a signed-in user who fails a route's rules.
pub fn forbidden(user: Option<&str>, csrf: &str, request_id: &str, json: bool) -> Response {
    if json {
        return error_response(
            &GatewayError::Forbidden("route rules".into()),
            request_id,
            true,
        );
    }
    let page = ForbiddenPage {
        user,
        csrf,
        request_id,
    };
    html(StatusCode::FORBIDDEN, page.render())
}

pub fn signed_out() -> Response {
    html(StatusCode::OK, SignedOutPage.render())
}

pub fn sign_out_confirmation(
    user: Option<&str>,
    csrf: &str,
    rd: Option<&str>,
    request_id: &str,
) -> Response {
    let page = SignOutPage {
        user,
        csrf,
        rd,
        request_id,
    };
    html(StatusCode::OK, page.render())
}

fn html(status: StatusCode, rendered: Result<String, askama::Error>) -> Response {
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
            let mut response = (status, "portico could not render this page").into_response();
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
