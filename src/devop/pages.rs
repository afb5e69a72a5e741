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

/// The sign-in form shown by `GET /authorize`.
#[derive(Template)]
#[template(path = "devop_login.html")]
pub(crate) struct LoginPage {
    pub client_id: String,
    pub default_username: String,
    pub users: Vec<UserRow>,
    /// The authorization request, carried through the form as hidden fields.
    pub hidden_fields: Vec<(String, String)>,
    pub message: Option<String>,
}

/// A page with one message: errors and "signed out".
#[derive(Template)]
#[template(path = "devop_message.html")]
pub(crate) struct MessagePage {
    pub title: String,
    pub message: String,
    pub is_error: bool,
}

/// Renders `template` with `status`, or a plain 500 if rendering fails.
pub(crate) fn render(status: StatusCode, template: &impl Template) -> Response {
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
        title: "dev OP — error".to_owned(),
        message: message.into(),
        is_error: true,
    };
    render(status, &page)
}
