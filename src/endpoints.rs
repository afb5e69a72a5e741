//! portico's own endpoints under `/oauth2/`: start, callback, sign-out.
//!
//! Handlers stay thin: they parse, call the function that owns the
//! decision (`oidc`, `session`, `redirect`), and render.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, Request, State};
use axum::response::{IntoResponse, Response};
use http::header::{CACHE_CONTROL, LOCATION, SET_COOKIE};
use http::{HeaderMap, HeaderValue, StatusCode};
use serde::Deserialize;
use url::Url;

use crate::error::GatewayError;
use crate::oidc::{
    self, check_callback_issuer, cookie_tag, finish_login, start_login, LoginError, LoginState,
};
use crate::pages::{error_response, error_response_with_retry, wants_json};
use crate::request_id::{self, RequestId};
use crate::AppState;

/// A 302 to `location` with the given cookies set.
pub(crate) fn redirect(location: &str, cookies: Vec<cookie::Cookie<'static>>) -> Response {
    let mut response = StatusCode::FOUND.into_response();
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(LOCATION, value);
    }
    for cookie in cookies {
        if let Ok(value) = HeaderValue::from_str(&cookie.to_string()) {
            response.headers_mut().append(SET_COOKIE, value);
        }
    }
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    crate::page_security::harden(&mut response);
    response
}

/// Sends the browser to the provider, remembering the login in a cookie.
/// Keeps at most `MAX_CONCURRENT_LOGINS` login cookies (the oldest go).
pub(crate) fn begin_login(
    app: &AppState,
    headers: &HeaderMap,
    return_to: &Url,
    request_id: &RequestId,
    extra_params: &[(String, String)],
) -> Response {
    let Some(provider) = app.provider.get() else {
        return error_response(&GatewayError::ProviderNotReady, request_id.as_str(), false);
    };
    let now = app.now_seconds();
    let login = start_login(&provider, &app.config.oidc, extra_params, return_to, now);
    let Ok(serialized) = serde_json::to_string(&login.state) else {
        return error_response(
            &GatewayError::BadRequest("login state"),
            request_id.as_str(),
            false,
        );
    };
    let cookies = &app.sessions.cookies;
    let mut set = Vec::new();
    let mut live: Vec<(String, i64)> = cookies
        .login_cookies(headers)
        .into_iter()
        .filter_map(|(name, text)| {
            let state: LoginState = serde_json::from_str(&text).ok()?;
            Some((name, state.expires_at))
        })
        .collect();
    live.sort_by_key(|(_, expires_at)| *expires_at);
    let excess = (live.len() + 1).saturating_sub(oidc::MAX_CONCURRENT_LOGINS);
    for (name, _) in live.iter().take(excess) {
        set.push(cookies.login_removal(name));
    }
    set.push(cookies.login_cookie(&login.state.tag(), &serialized));
    app.metrics.login_started();
    redirect(login.authorize_url.as_str(), set)
}

#[derive(Deserialize)]
pub struct StartQuery {
    rd: Option<String>,
}

/// `GET /oauth2/start?rd=…`: begin a login, returning to `rd` if allowed.
pub async fn start(
    State(app): State<Arc<AppState>>,
    query: Result<Query<StartQuery>, QueryRejection>,
    request: Request,
) -> Response {
    let request_id = request_id::of(&request);
    let Ok(Query(query)) = query else {
        let json = wants_json(request.headers(), false);
        return error_response(
            &GatewayError::BadRequest("the query string is malformed"),
            request_id.as_str(),
            json,
        );
    };
    let return_to = app.return_target(query.rd.as_deref());
    let mut params = login_params_for(&app, &return_to);
    // Starting a login while signed in means "sign in again" (step-up).
    if app.sessions.cookie_session_id(request.headers()).is_some()
        && !params.iter().any(|(name, _)| name == "prompt")
    {
        params.push(("prompt".to_string(), "login".to_string()));
    }
    begin_login(&app, request.headers(), &return_to, &request_id, &params)
}

/// The login parameters of the route `return_to` leads to (its `login_params`).
pub(crate) fn login_params_for(app: &AppState, return_to: &Url) -> Vec<(String, String)> {
    let host = return_to.host_str().map(|host| match return_to.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_string(),
    });
    app.routes
        .resolve(host.as_deref(), return_to.path())
        .map(|(_, route)| route.login_param_pairs())
        .unwrap_or_default()
}

/// "Sign in with another account": a login to `return_to` that asks the
/// provider to let the person pick or re-enter an account (the `prompt`
/// value [`oidc::switch_account_prompt`] chose from discovery), whatever
/// `prompt` the route asks for.
pub(crate) fn begin_switch_account(
    app: &AppState,
    headers: &HeaderMap,
    return_to: &Url,
    request_id: &RequestId,
) -> Response {
    let mut params = login_params_for(app, return_to);
    params.retain(|(name, _)| name != "prompt");
    if let Some(prompt) = app
        .provider
        .get()
        .and_then(|provider| provider.switch_account_prompt)
    {
        params.push(("prompt".to_string(), prompt.to_string()));
    }
    begin_login(app, headers, return_to, request_id, &params)
}

/// Any other path under `/oauth2/` or `/.well-known/portico/`: portico's
/// own namespace, never proxied; a 404 page (or JSON).
pub async fn unknown_endpoint(request: Request) -> Response {
    let json = wants_json(request.headers(), false);
    error_response(
        &GatewayError::UnknownEndpoint,
        request_id::of(&request).as_str(),
        json,
    )
}

/// A method one of portico's endpoints does not take: a 405 page (or JSON);
/// axum adds the `Allow` header.
pub async fn method_not_allowed(request: Request) -> Response {
    let json = wants_json(request.headers(), false);
    error_response(
        &GatewayError::MethodNotAllowed,
        request_id::of(&request).as_str(),
        json,
    )
}

/// `GET /oauth2/callback`: finish the login the state names.
pub async fn callback(
    State(app): State<Arc<AppState>>,
    Query(query): Query<HashMap<String, String>>,
    request: Request,
) -> Response {
    let request_id = request_id::of(&request);
    let headers = request.headers();
    let json = wants_json(headers, false);
    let state = query.get("state").map(String::as_str).unwrap_or_default();
    let tag = cookie_tag(state);
    let login_cookie_name = app.sessions.cookies.login_cookie_name(&tag);
    let removal = app.sessions.cookies.login_removal(&login_cookie_name);

    let outcome = complete(&app, &query, headers, &tag).await;
    match outcome {
        Ok((location, session_cookie)) => {
            app.metrics.login_succeeded();
            redirect(&location, vec![session_cookie, removal])
        }
        Err((error, retry)) => {
            app.metrics.login_failed(error.code());
            tracing::warn!(target: "portico::auth", reason = error.code(), error = %error, "login failed");
            let mut response =
                error_response_with_retry(&error, request_id.as_str(), json, retry.as_deref());
            if let Ok(value) = HeaderValue::from_str(&removal.to_string()) {
                response.headers_mut().append(SET_COOKIE, value);
            }
            response
        }
    }
}

type CallbackFailure = (GatewayError, Option<String>);

async fn complete(
    app: &AppState,
    query: &HashMap<String, String>,
    headers: &HeaderMap,
    tag: &str,
) -> Result<(String, cookie::Cookie<'static>), CallbackFailure> {
    let login: Option<LoginState> = if tag.is_empty() {
        None
    } else {
        app.sessions
            .cookies
            .read_login(headers, tag)
            .and_then(|text| serde_json::from_str(&text).ok())
    };
    let retry = login.as_ref().map(|login| login.return_to.clone());
    let fail = |error: GatewayError| (error, retry.clone());

    if let Some(error) = query.get("error") {
        // The provider's words are shown only for a sign-in this browser
        // started: anyone can send a browser here with any text in
        // `error_description`, and it must not appear on our origin.
        let ours = match (&login, query.get("state")) {
            (Some(login), Some(state)) => constant_time_eq(&login.state, state),
            _ => false,
        };
        if !ours {
            return Err(fail(LoginError::UnknownState.into()));
        }
        return Err(fail(
            LoginError::ProviderRefused {
                error: error.chars().take(64).collect(),
                description: query
                    .get("error_description")
                    .map(|text| text.chars().take(300).collect()),
            }
            .into(),
        ));
    }
    let (Some(code), Some(state)) = (query.get("code"), query.get("state")) else {
        return Err(fail(LoginError::MissingParameters.into()));
    };
    let login = match login {
        Some(login) if constant_time_eq(&login.state, state) => login,
        _ => return Err(fail(LoginError::UnknownState.into())),
    };
    let now = app.now();
    if oidc::unix_seconds(now) >= login.expires_at {
        return Err(fail(LoginError::Expired.into()));
    }
    let provider = app
        .provider
        .get()
        .ok_or_else(|| fail(GatewayError::ProviderNotReady))?;
    check_callback_issuer(&provider, query.get("iss").map(String::as_str))
        .map_err(|error| fail(error.into()))?;
    // Boxed, as the session write below: this handler's future then stays
    // small, and is not copied whole as it is handed through the router.
    let (identity, tokens) = Box::pin(finish_login(
        &app.provider,
        &provider,
        &app.config.oidc,
        &login,
        code.clone(),
        now,
    ))
    .await
    .map_err(|error| fail(error.into()))?;

    let now_seconds = oidc::unix_seconds(now);
    let record = app.sessions.new_record(identity, &tokens, now_seconds);
    // A session id the browser already had is never reused: a new id always.
    let previous = app.sessions.cookie_session_id(headers);
    let cookie = Box::pin(app.sessions.create(&record, previous, now_seconds))
        .await
        .map_err(|error| fail(error.into()))?;
    tracing::info!(target: "portico::auth", sub = %record.sub, "signed in");
    let location = app
        .return_policy
        .check(&login.return_to)
        .unwrap_or_else(|| app.return_policy.default_target());
    Ok((location.to_string(), cookie))
}

fn constant_time_eq(left: &str, right: &str) -> bool {
    left.len() == right.len()
        && left
            .bytes()
            .zip(right.bytes())
            .fold(0u8, |difference, (a, b)| difference | (a ^ b))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_comparison_is_exact() {
        assert!(constant_time_eq("abc", "abc"));
        assert!(!constant_time_eq("abc", "abd"));
        assert!(!constant_time_eq("abc", "ab"));
    }
}
