//! Ending sessions: sign-out (confirmation page, then a same-origin POST
//! with the session's CSRF token; at the provider too when it offers
//! RP-initiated logout), the signed-out page, and back-channel logout from
//! the provider.

use std::sync::Arc;

use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{Query, Request, State};
use axum::response::{IntoResponse, Response};
use axum::Form;
use http::header::{CACHE_CONTROL, SET_COOKIE};
use http::{HeaderMap, HeaderValue, StatusCode};
use serde::{Deserialize, Serialize};
use url::Url;

use crate::endpoints::{begin_switch_account, redirect};
use crate::error::GatewayError;
use crate::oidc;
use crate::pages::{self, error_response, wants_json};
use crate::request_id::{self, RequestId};
use crate::AppState;

#[derive(Deserialize)]
pub struct SignOutQuery {
    rd: Option<String>,
}

/// `GET /oauth2/sign_out`: a confirmation page; a GET never ends a session
/// (a link or image on another site must not sign anyone out). Without a
/// session, a page saying so, with a way to sign in.
pub async fn sign_out_page(
    State(app): State<Arc<AppState>>,
    query: Result<Query<SignOutQuery>, QueryRejection>,
    request: Request,
) -> Response {
    let request_id = request_id::of(&request);
    let Ok(Query(query)) = query else {
        return error_response(
            &GatewayError::BadRequest("the query string is malformed"),
            request_id.as_str(),
            wants_json(request.headers(), false),
        );
    };
    // Only an allowed return URL is echoed into the page (hidden field and "Stay" link).
    let rd = query
        .rd
        .as_deref()
        .and_then(|rd| app.return_policy.check(rd))
        .map(|url| url.to_string());
    let Some(session_id) = app.sessions.cookie_session_id(request.headers()) else {
        return pages::not_signed_in(rd.as_deref(), request_id.as_str());
    };
    let csrf = app.sessions.keys.csrf_token(&session_id.to_string());
    // Who is signing out, when the session can be read; the page works without it.
    let user = match app.sessions.load(request.headers()).await {
        Ok(Some(active)) => Some(
            active
                .data
                .email
                .clone()
                .unwrap_or_else(|| active.data.sub.clone()),
        ),
        Ok(None) => return pages::not_signed_in(rd.as_deref(), request_id.as_str()),
        Err(error) => {
            tracing::debug!(%error, "sign-out page could not read the session");
            None
        }
    };
    pages::sign_out_confirmation(user.as_deref(), &csrf, rd.as_deref(), request_id.as_str())
}

#[derive(Deserialize)]
pub struct SignOutForm {
    #[serde(default)]
    csrf: String,
    rd: Option<String>,
    everywhere: Option<String>,
    /// Set by the 403 page's "Sign in with another account": once the
    /// session is ended, sign in again (to `rd`) instead of signing out at
    /// the provider.
    switch_account: Option<String>,
}

#[derive(Deserialize, Default)]
pub struct SignOutOptions {
    everywhere: Option<String>,
}

/// What the provider's end-session redirect carries in `state`: where to go
/// after `/oauth2/signed_out`, sealed so nobody can substitute another target.
#[derive(Serialize, Deserialize)]
struct SignOutState {
    rd: Option<String>,
}

/// `POST /oauth2/sign_out[?everywhere=1]`: same-origin only, with the
/// session's CSRF token. Deletes the session (or every session of the user),
/// clears the cookie, and ends the session at the provider too when it
/// offers RP-initiated logout.
pub async fn sign_out(
    State(app): State<Arc<AppState>>,
    Query(options): Query<SignOutOptions>,
    headers: HeaderMap,
    request_id: Option<axum::Extension<RequestId>>,
    form: Result<Form<SignOutForm>, FormRejection>,
) -> Response {
    let request_id = request_id
        .map(|extension| extension.0)
        .unwrap_or_else(|| RequestId(Arc::from("-")));
    let json = wants_json(&headers, false);
    if !same_origin(&headers, &app.config.server.public_url) {
        return error_response(&GatewayError::CrossSite, request_id.as_str(), json);
    }
    let form = match form {
        Ok(Form(form)) => form,
        Err(rejection) => {
            return error_response(&form_error(&rejection), request_id.as_str(), json)
        }
    };
    let switch_account = is_true(form.switch_account.as_deref());
    let active = match app.sessions.load(&headers).await {
        Ok(active) => active,
        Err(error) => return error_response(&error.into(), request_id.as_str(), json),
    };
    let rd = form
        .rd
        .as_deref()
        .and_then(|rd| app.return_policy.check(rd))
        .map(|url| url.to_string());
    let cookies = vec![app.sessions.cookies.session_removal()];
    let Some(active) = active else {
        // Nothing to end here; still clear a stale cookie.
        if switch_account {
            return switch_to_another_account(&app, &headers, form.rd.as_deref(), &request_id);
        }
        return redirect(rd.as_deref().unwrap_or("/oauth2/signed_out"), cookies);
    };
    if !app
        .sessions
        .keys
        .csrf_matches(&active.id.to_string(), &form.csrf)
    {
        return error_response(&GatewayError::CrossSite, request_id.as_str(), json);
    }
    let everywhere = !switch_account
        && (is_true(options.everywhere.as_deref()) || is_true(form.everywhere.as_deref()));
    let ended = if everywhere {
        app.sessions
            .end_all_of_subject(&active.data.sub)
            .await
            .and(app.sessions.end(&active).await)
    } else {
        app.sessions.end(&active).await
    };
    if let Err(error) = ended {
        tracing::warn!(%error, "sign-out could not delete the session");
        return error_response(&error.into(), request_id.as_str(), json);
    }
    tracing::info!(target: "portico::auth", sub = %active.data.sub, everywhere, switch_account, "signed out");
    if switch_account {
        return switch_to_another_account(&app, &headers, form.rd.as_deref(), &request_id);
    }
    let provider_logout = app.provider.get().and_then(|provider| {
        let endpoint = provider.end_session_endpoint.clone()?;
        let tokens = app.sessions.open_tokens(&active.data);
        let state = serde_json::to_vec(&SignOutState { rd: rd.clone() }).ok()?;
        let mut url = endpoint;
        {
            let mut query = url.query_pairs_mut();
            if let Some(tokens) = &tokens {
                query.append_pair("id_token_hint", &tokens.id_token);
            }
            query
                .append_pair("client_id", &app.config.oidc.client_id)
                .append_pair(
                    "post_logout_redirect_uri",
                    app.config.oidc.post_logout_redirect_url.as_str(),
                )
                .append_pair(
                    "state",
                    &app.sessions
                        .keys
                        .seal(crate::session::SealPurpose::SignOutState, &state),
                );
        }
        Some(url)
    });
    match provider_logout {
        Some(url) => redirect(url.as_str(), cookies),
        None => redirect(rd.as_deref().unwrap_or("/oauth2/signed_out"), cookies),
    }
}

/// After the session has ended: straight on to the provider's sign-in,
/// asking it to let the person choose or re-enter an account, and back to
/// `rd` (the page that was refused) afterwards. One navigation from the 403
/// page; the session cookie is removed on the same answer. The provider's
/// own session is left alone: `prompt` makes it ask anyway, and ending it
/// too would cost a round trip through its logout for nothing.
fn switch_to_another_account(
    app: &AppState,
    headers: &HeaderMap,
    rd: Option<&str>,
    request_id: &RequestId,
) -> Response {
    let return_to = app.return_target(rd);
    let mut response = begin_switch_account(app, headers, &return_to, request_id);
    if let Ok(value) = HeaderValue::from_str(&app.sessions.cookies.session_removal().to_string()) {
        response.headers_mut().append(SET_COOKIE, value);
    }
    response
}

/// What a sign-out form that cannot be read gets.
fn form_error(rejection: &FormRejection) -> GatewayError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        GatewayError::TooLarge(crate::limits::Limit::Body)
    } else {
        GatewayError::BadRequest("the sign-out form could not be read")
    }
}

fn is_true(value: Option<&str>) -> bool {
    matches!(value, Some("1" | "true" | "yes" | "on"))
}

/// A POST is same-origin when the browser says so (`Sec-Fetch-Site`, which
/// pages cannot forge) or, from browsers without it, when its `Origin` is ours;
/// a client that sends neither (not a browser) passes. `Sec-Fetch-Site` decides
/// alone when present: our pages' `no-referrer` policy makes browsers send
/// `Origin: null` even on a same-origin form POST.
fn same_origin(headers: &HeaderMap, public_url: &Url) -> bool {
    if let Some(site) = headers
        .get("sec-fetch-site")
        .and_then(|value| value.to_str().ok())
    {
        return matches!(site, "same-origin" | "none");
    }
    match headers.get("origin").and_then(|value| value.to_str().ok()) {
        Some(origin) => Url::parse(origin)
            .map(|origin| origin.origin() == public_url.origin())
            .unwrap_or(false),
        None => true,
    }
}

#[derive(Deserialize)]
pub struct SignedOutQuery {
    state: Option<String>,
}

/// `GET /oauth2/signed_out`: the provider sends the browser here after
/// ending its session; `state` (sealed by us) may name where to go next.
pub async fn signed_out(
    State(app): State<Arc<AppState>>,
    query: Result<Query<SignedOutQuery>, QueryRejection>,
) -> Response {
    let target = query
        .ok()
        .and_then(|Query(query)| query.state)
        .and_then(|state| {
            app.sessions
                .keys
                .open(crate::session::SealPurpose::SignOutState, &state)
                .ok()
        })
        .and_then(|bytes| serde_json::from_slice::<SignOutState>(&bytes).ok())
        .and_then(|state| state.rd)
        .and_then(|rd| app.return_policy.check(&rd));
    match target {
        Some(url) => redirect(url.as_str(), Vec::new()),
        None => pages::signed_out(),
    }
}

/// `POST /oauth2/backchannel_logout`: the provider says a session ended.
/// 200 when the token is valid (every matching session is gone, on every
/// replica); 400 with a JSON error otherwise.
pub async fn backchannel_logout(
    State(app): State<Arc<AppState>>,
    body: axum::body::Bytes,
) -> Response {
    let token = url::form_urlencoded::parse(&body)
        .find(|(name, _)| name == "logout_token")
        .map(|(_, value)| value.into_owned());
    let Some(token) = token else {
        return logout_refused("logout_token is required");
    };
    let Some(provider) = app.provider.get() else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(serde_json::json!({"error": "temporarily_unavailable"})),
        )
            .into_response();
    };
    let now = app.now();
    let mut validated =
        oidc::validate_logout_token(&token, &provider.jwks(), &provider.expectations, now);
    if matches!(
        validated,
        Err(oidc::LogoutTokenError::Token(
            oidc::TokenRejection::UnknownKey
        ))
    ) && app
        .provider
        .refresh_jwks_for_client_token(
            oidc::unverified_kid(&token).as_deref(),
            std::time::Instant::now(),
        )
        .await
    {
        if let Some(provider) = app.provider.get() {
            validated =
                oidc::validate_logout_token(&token, &provider.jwks(), &provider.expectations, now);
        }
    }
    let request = match validated {
        Ok(request) => request,
        Err(error) => {
            tracing::warn!(reason = %error, "back-channel logout token refused");
            return logout_refused(&error.to_string());
        }
    };
    let coordination = app.sessions.coordination();
    let replay_window = oidc::LOGOUT_TOKEN_MAX_AGE * 2;
    match coordination
        .first_sighting(&format!("logout-jti:{}", request.jti), replay_window)
        .await
    {
        Ok(true) => {}
        Ok(false) => {
            tracing::warn!("back-channel logout token replayed");
            return logout_refused(&oidc::LogoutTokenError::Replayed.to_string());
        }
        Err(error) => return store_unavailable(&error),
    }
    let descope = app.config.oidc.provider == crate::config::ProviderKind::Descope;
    let ended = match (&request.sid, request.subject(descope)) {
        (Some(sid), _) => app.sessions.end_all_of_provider_session(sid).await,
        (None, Some(sub)) => app.sessions.end_all_of_subject(sub).await,
        (None, None) => Ok(0),
    };
    match ended {
        Ok(count) => {
            tracing::info!(target: "portico::auth", sessions = count, "back-channel logout");
            let mut response = StatusCode::OK.into_response();
            response
                .headers_mut()
                .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
            response
        }
        Err(error) => store_unavailable(&error),
    }
}

fn logout_refused(description: &str) -> Response {
    let mut response = (
        StatusCode::BAD_REQUEST,
        axum::Json(serde_json::json!({
            "error": "invalid_request",
            "error_description": description,
        })),
    )
        .into_response();
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn store_unavailable(error: &crate::session::SessionError) -> Response {
    tracing::warn!(%error, "back-channel logout could not reach the session store");
    (
        StatusCode::SERVICE_UNAVAILABLE,
        axum::Json(serde_json::json!({"error": "temporarily_unavailable"})),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cross_site_posts_are_recognised() {
        let public = Url::parse("https://app.example.com/").unwrap();
        let mut headers = HeaderMap::new();
        assert!(same_origin(&headers, &public));
        headers.insert(
            "origin",
            HeaderValue::from_static("https://app.example.com"),
        );
        assert!(same_origin(&headers, &public));
        headers.insert("origin", HeaderValue::from_static("https://evil.example"));
        assert!(!same_origin(&headers, &public));
        let mut fetch = HeaderMap::new();
        fetch.insert("sec-fetch-site", HeaderValue::from_static("cross-site"));
        assert!(!same_origin(&fetch, &public));
        headers.insert("origin", HeaderValue::from_static("null"));
        assert!(!same_origin(&headers, &public));
        // Chromium's form POST from a no-referrer page: Origin null, Sec-Fetch-Site same-origin.
        let mut chromium = HeaderMap::new();
        chromium.insert("origin", HeaderValue::from_static("null"));
        chromium.insert("sec-fetch-site", HeaderValue::from_static("same-origin"));
        assert!(same_origin(&chromium, &public));
        chromium.insert("sec-fetch-site", HeaderValue::from_static("same-site"));
        assert!(!same_origin(&chromium, &public));
    }
}
