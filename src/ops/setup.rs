//! `GET /oauth2/setup` (only with `[server] setup_page = true`): the URLs to
//! register at the provider, exactly as portico will use them.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::response::Response;
use http::StatusCode;

use crate::config::Branding;
use crate::error::GatewayError;
use crate::pages::{branding, error_response, html, wants_json};
use crate::{request_id, AppState};

#[derive(askama::Template)]
#[template(path = "setup.html")]
struct SetupPage<'a> {
    brand: &'a Branding,
    redirect_url: &'a str,
    post_logout_url: &'a str,
    backchannel_url: &'a str,
    issuer: &'a str,
    client_id: &'a str,
    jwks_url: &'a str,
}

/// `GET /oauth2/setup`, only with `[server] setup_page = true`: the URLs to
/// register at the provider, as portico will use them.
/// Off, it is a 404 page saying so (JSON for API clients).
pub async fn setup(State(app): State<Arc<AppState>>, request: Request) -> Response {
    if !app.config.server.setup_page {
        return error_response(
            &GatewayError::SetupPageOff,
            request_id::of(&request).as_str(),
            wants_json(request.headers(), false),
        );
    }
    let public = app.config.server.public_url.as_str().trim_end_matches('/');
    let backchannel = format!("{public}/oauth2/backchannel_logout");
    let jwks = format!("{public}/.well-known/portico/jwks.json");
    let brand = branding();
    let page = SetupPage {
        brand: &brand,
        redirect_url: app.config.oidc.redirect_url.as_str(),
        post_logout_url: app.config.oidc.post_logout_redirect_url.as_str(),
        backchannel_url: &backchannel,
        issuer: &app.config.oidc.issuer,
        client_id: &app.config.oidc.client_id,
        jwks_url: &jwks,
    };
    html(StatusCode::OK, askama::Template::render(&page))
}
