//! `GET /oauth2/setup` (only with `[server] setup_page = true`): the URLs to
//! register at the provider, exactly as portico will use them.

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::StatusCode;

use crate::AppState;

#[derive(askama::Template)]
#[template(path = "setup.html")]
struct SetupPage<'a> {
    redirect_url: &'a str,
    post_logout_url: &'a str,
    backchannel_url: &'a str,
    issuer: &'a str,
    client_id: &'a str,
    jwks_url: &'a str,
}

/// `GET /oauth2/setup`, only with `[server] setup_page = true`: the URLs to
/// register at the provider, as portico will use them.
pub async fn setup(State(app): State<Arc<AppState>>) -> Response {
    if !app.config.server.setup_page {
        return StatusCode::NOT_FOUND.into_response();
    }
    let public = app.config.server.public_url.as_str().trim_end_matches('/');
    let backchannel = format!("{public}/oauth2/backchannel_logout");
    let jwks = format!("{public}/.well-known/portico/jwks.json");
    let page = SetupPage {
        redirect_url: app.config.oidc.redirect_url.as_str(),
        post_logout_url: app.config.oidc.post_logout_redirect_url.as_str(),
        backchannel_url: &backchannel,
        issuer: &app.config.oidc.issuer,
        client_id: &app.config.oidc.client_id,
        jwks_url: &jwks,
    };
    match askama::Template::render(&page) {
        Ok(body) => {
            let mut response = axum::response::Html(body).into_response();
            crate::page_security::harden(&mut response);
            response
        }
        Err(error) => {
            tracing::error!(%error, "setup page failed to render");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}
