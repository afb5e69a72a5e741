//! The dev OP's HTML pages (askama templates under `templates/devop_*.html`).

use askama::Template;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};

/// One known user on the sign-in page.
pub(crate) struct UserRow {
    pub sub: String,
    pub name: String,
    pub roles: String,
}

/// A line at the top of the sign-in page: what just happened.
pub(crate) struct Notice {
    pub text: String,
    pub is_error: bool,
}

impl Notice {
    pub fn error(text: impl Into<String>) -> Notice {
        Notice {
            text: text.into(),
            is_error: true,
        }
    }

    pub fn info(text: impl Into<String>) -> Notice {
        Notice {
            text: text.into(),
            is_error: false,
        }
    }
}

/// What the page's script needs for a passkey ceremony.
pub(crate) struct PasskeyOffer {
    /// base64url, single use, bound to this page's authorization request.
    pub challenge: String,
    pub rp_id: String,
}

/// The sign-in form shown by `GET /authorize`.
#[derive(Template)]
#[template(path = "devop_login.html")]
pub(crate) struct LoginPage {
    pub client_id: String,
    pub default_username: String,
    pub users: Vec<UserRow>,
    /// The authorization request, carried through the form as hidden fields.
    pub hidden_fields: Vec<(String, String)>,
    pub notice: Option<Notice>,
    /// `None` when the issuer is an IP address (WebAuthn needs a host name).
    pub passkey: Option<PasskeyOffer>,
    pub issuer: String,
}

/// A page with one message: errors and "signed out".
#[derive(Template)]
#[template(path = "devop_message.html")]
pub(crate) struct MessagePage {
    pub title: String,
    pub message: String,
    pub is_error: bool,
}

/// Renders one of the dev OP's own pages with `status` (with the framing
/// and sniffing headers portico's pages carry), or a plain 500.
pub(crate) fn render(status: StatusCode, template: &impl Template) -> Response {
    let mut response = render_app(status, template);
    crate::page_security::set_headers(response.headers_mut());
    response
}

/// Renders `template` as an ordinary app would (the echo upstream), or a
/// plain 500.
pub(crate) fn render_app(status: StatusCode, template: &impl Template) -> Response {
    match template.render() {
        Ok(body) => (status, Html(body)).into_response(),
        Err(error) => {
            tracing::error!(%error, "dev OP could not render a page");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "dev OP could not render the page",
            )
                .into_response()
        }
    }
}

/// An HTML error page.
pub(crate) fn error_page(status: StatusCode, message: impl Into<String>) -> Response {
    let page = MessagePage {
        title: "The sign-in cannot go on".to_owned(),
        message: message.into(),
        is_error: true,
    };
    render(status, &page)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sign_in_page_with_its_passkey_script_runs_under_the_policy() {
        let page = LoginPage {
            client_id: "client".into(),
            default_username: "alice".into(),
            users: vec![UserRow {
                sub: "alice".into(),
                name: "Alice".into(),
                roles: "admin".into(),
            }],
            hidden_fields: vec![("state".into(), "s\"<x>".into())],
            notice: Some(Notice::error("<script>alert(1)</script>")),
            passkey: Some(PasskeyOffer {
                challenge: "abc".into(),
                rp_id: "localhost".into(),
            }),
            issuer: "http://localhost:1".into(),
        };
        let response = render(StatusCode::OK, &page);
        let headers = response.headers();
        assert!(headers
            .get(http::header::CONTENT_SECURITY_POLICY)
            .is_some_and(|policy| policy.to_str().unwrap().contains("frame-ancestors 'none'")));
        assert_eq!(headers.get(http::header::X_FRAME_OPTIONS).unwrap(), "DENY");
        let body = page.render().unwrap();
        assert!(
            body.contains("<script>"),
            "the passkey script is on the page"
        );
        crate::page_security::policy_allows_inline_blocks_of(&body).unwrap();
        let message = MessagePage {
            title: "t".into(),
            message: "m".into(),
            is_error: true,
        };
        crate::page_security::policy_allows_inline_blocks_of(&message.render().unwrap()).unwrap();
        assert!(render_app(StatusCode::OK, &message)
            .headers()
            .get(http::header::CONTENT_SECURITY_POLICY)
            .is_none());
    }
}
