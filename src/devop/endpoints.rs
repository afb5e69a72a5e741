//! The dev OP's router and its small endpoints: discovery, JWKS, userinfo and end-session.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};
use url::Url;

use super::authorize::{authorize_page, authorize_submit};
use super::jwt::{self, Signing};
use super::misbehavior::{wrong_issuer, SOMEONE_ELSE};
use super::options::Misbehavior;
use super::pages::{render, MessagePage};
use super::passkey::passkey_submit;
use super::state::SharedState;
use super::token_endpoint::token;
use super::tokens::{check_access_token, user_claims};

/// Every dev OP endpoint, answering 503 everywhere while `Misbehavior::Unavailable` is on,
/// and late while `Misbehavior::Slow` is.
pub(crate) fn router(shared: Arc<SharedState>) -> Router {
    Router::new()
        .route("/.well-known/openid-configuration", get(discovery))
        .route("/jwks", get(jwks))
        .route("/authorize", get(authorize_page).post(authorize_submit))
        .route("/authorize/passkey", axum::routing::post(passkey_submit))
        .route("/token", axum::routing::post(token))
        .route("/userinfo", get(userinfo).post(userinfo))
        .route("/end_session", get(end_session))
        .route("/assets/portico.css", get(stylesheet))
        .layer(middleware::from_fn_with_state(
            shared.clone(),
            unavailable_when_told,
        ))
        .with_state(shared)
}

/// The `descope` profile's router: Descope's paths (see `descope.rs`).
pub(crate) fn descope_router(shared: Arc<SharedState>, project: &str) -> Router {
    Router::new()
        .route(
            &format!("/{project}/.well-known/openid-configuration"),
            get(discovery),
        )
        .route(&format!("/{project}/.well-known/jwks.json"), get(jwks))
        .route(&format!("/v2/keys/{project}"), get(jwks))
        .route(
            "/oauth2/v1/authorize",
            get(authorize_page).post(authorize_submit),
        )
        .route(
            "/oauth2/v1/authorize/passkey",
            axum::routing::post(passkey_submit),
        )
        .route("/oauth2/v1/token", axum::routing::post(token))
        .route("/oauth2/v1/userinfo", get(userinfo).post(userinfo))
        .route("/oauth2/v1/logout", get(end_session))
        .route(
            "/v1/auth/accesskey/exchange",
            axum::routing::post(super::descope::access_key_exchange),
        )
        .layer(middleware::from_fn_with_state(
            shared.clone(),
            unavailable_when_told,
        ))
        .with_state(shared)
}

/// Longest `Misbehavior::Slow` delay.
const MAX_DELAY: std::time::Duration = std::time::Duration::from_secs(120);

async fn unavailable_when_told(
    State(shared): State<Arc<SharedState>>,
    request: Request,
    next: Next,
) -> Response {
    match shared.misbehavior() {
        Misbehavior::Unavailable => {
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                "dev OP is unavailable (on purpose)",
            )
                .into_response();
        }
        Misbehavior::Slow(delay) => {
            tokio::time::sleep(delay.min(MAX_DELAY)).await;
        }
        _ => {}
    }
    next.run(request).await
}

/// The OpenID Provider metadata (OpenID Connect Discovery 1.0 §3).
pub(crate) fn discovery_document(shared: &SharedState, misbehavior: &Misbehavior) -> Value {
    let issuer = &shared.issuer;
    let advertised_issuer = if *misbehavior == Misbehavior::DiscoveryWrongIssuer {
        wrong_issuer(issuer)
    } else {
        issuer.clone()
    };
    let base = shared.endpoint_base();
    let mut signing_algs = vec![shared.lock().signing_alg.name()];
    if !signing_algs.contains(&"RS256") {
        signing_algs.push("RS256");
    }
    if shared.descope().is_some() {
        // Descope's discovery: OAuth endpoints under /oauth2/v1, JWKS under
        // the issuer, no RFC 9207 `iss` (see `descope.rs`).
        return json!({
            "issuer": advertised_issuer,
            "authorization_endpoint": format!("{base}/authorize"),
            "token_endpoint": format!("{base}/token"),
            "userinfo_endpoint": format!("{base}/userinfo"),
            "jwks_uri": format!("{issuer}/.well-known/jwks.json"),
            "end_session_endpoint": format!("{base}/logout"),
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": signing_algs,
            "scopes_supported": ["openid", "profile", "email", "phone", "roles",
                "descope.claims", "descope.custom_claims", "offline_access"],
            "token_endpoint_auth_methods_supported": shared.options.token_auth_methods.names(),
            "code_challenge_methods_supported": ["S256"],
            "grant_types_supported": ["authorization_code", "refresh_token"],
            "claims_supported": ["iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "amr",
                "email", "email_verified", "name", "roles", "permissions", "tenants", "dsub"],
        });
    }
    json!({
        "issuer": advertised_issuer,
        "authorization_endpoint": format!("{base}/authorize"),
        "token_endpoint": format!("{base}/token"),
        "userinfo_endpoint": format!("{base}/userinfo"),
        "jwks_uri": format!("{issuer}/jwks"),
        "end_session_endpoint": format!("{base}/end_session"),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": signing_algs,
        "scopes_supported": ["openid", "profile", "email", "offline_access"],
        "token_endpoint_auth_methods_supported": shared.options.token_auth_methods.names(),
        "code_challenge_methods_supported": ["S256"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "claims_supported": [
            "iss", "sub", "aud", "azp", "exp", "iat", "auth_time", "nonce", "amr", "email",
            "email_verified", "name", "preferred_username", "roles", "groups",
        ],
        "authorization_response_iss_parameter_supported": shared.options.send_iss_in_callback,
        // The sign-in page always offers the username form and the recent accounts, so a
        // `prompt` of `login` or `select_account` is always honoured.
        "prompt_values_supported": ["login", "select_account"],
    })
}

/// The sign-in page's stylesheet: portico's own.
async fn stylesheet() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        crate::pages::STYLESHEET,
    )
        .into_response()
}

async fn discovery(State(shared): State<Arc<SharedState>>) -> Json<Value> {
    let misbehavior = {
        let mut mutable = shared.lock();
        mutable.stats.discovery_requests += 1;
        mutable.misbehavior.clone()
    };
    Json(discovery_document(&shared, &misbehavior))
}

pub(crate) async fn jwks(State(shared): State<Arc<SharedState>>) -> Json<Value> {
    let (key, alg_keys, misbehavior) = {
        let mut mutable = shared.lock();
        mutable.stats.jwks_requests += 1;
        (
            mutable.current_key.clone(),
            mutable.alg_keys.clone(),
            mutable.misbehavior.clone(),
        )
    };
    let mut keys: Vec<Value> = alg_keys.iter().map(|key| key.public_jwk()).collect();
    keys.push(key.public_jwk());
    if misbehavior == Misbehavior::OmitKidAmongSeveralKeys {
        // A second RSA key that signs nothing: a token without kid now fits two keys.
        match tokio::task::spawn_blocking(super::keys::stranger_key).await {
            Ok(Ok(other)) => keys.push(other.public_jwk()),
            _ => tracing::warn!("dev OP could not add a second key to its JWKS"),
        }
    }
    Json(json!({ "keys": keys }))
}

fn bearer_challenge(error: Option<&str>) -> Response {
    let challenge = match error {
        Some(error) => format!("Bearer realm=\"dev OP\", error=\"{error}\""),
        None => "Bearer realm=\"dev OP\"".to_owned(),
    };
    let mut response = (
        StatusCode::UNAUTHORIZED,
        Json(json!({"error": error.unwrap_or("invalid_request")})),
    )
        .into_response();
    if let Ok(value) = HeaderValue::from_str(&challenge) {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, value);
    }
    response
}

/// `GET|POST /userinfo` with an access token from this OP (OpenID Connect
/// Core 1.0 §5.3): the user's claims as JSON, or as a signed JWT with `iss`
/// and `aud` when `signed_userinfo` is on (§5.3.2).
async fn userinfo(State(shared): State<Arc<SharedState>>, headers: HeaderMap) -> Response {
    let misbehavior = {
        let mut mutable = shared.lock();
        mutable.stats.userinfo_requests += 1;
        mutable.misbehavior.clone()
    };
    if misbehavior == Misbehavior::UserinfoUnavailable {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "dev OP userinfo is unavailable (on purpose)",
        )
            .into_response();
    }
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim().to_owned());
    let Some(token) = token else {
        return bearer_challenge(None);
    };
    let keys = shared.lock().used_keys.clone();
    let Some(claims) =
        check_access_token(&token, &keys, &shared.access_token_issuer(), shared.now())
    else {
        return bearer_challenge(Some("invalid_token"));
    };
    // The user id: Descope's `dsub` when its template overrides `sub`.
    let sub = claims
        .get("dsub")
        .or_else(|| claims.get("sub"))
        .and_then(Value::as_str)
        .unwrap_or_default();
    let user = shared.lock().user_or_create(sub);
    let mut answer = user_claims(&user);
    if let Some(descope) = shared.descope() {
        super::descope::userinfo_claims(&mut answer, descope, &user.email);
    }
    if misbehavior == Misbehavior::UserinfoWrongSub {
        answer.insert("sub".to_owned(), json!(SOMEONE_ELSE));
    }
    let wrong_audience = misbehavior == Misbehavior::UserinfoWrongAudience;
    if !shared.options.signed_userinfo && !wrong_audience {
        return Json(Value::Object(answer)).into_response();
    }
    answer.insert("iss".to_owned(), json!(shared.issuer));
    let audience = if wrong_audience {
        SOMEONE_ELSE
    } else {
        shared.options.client_id.as_str()
    };
    answer.insert("aud".to_owned(), json!(audience));
    let key = shared.lock().current_key.clone();
    match jwt::encode(&answer, "JWT", Signing::Rs256(&key)) {
        Ok(signed) => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/jwt"),
            )],
            signed,
        )
            .into_response(),
        Err(error) => {
            tracing::error!(%error, "dev OP could not sign a userinfo answer");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

/// `GET /end_session` (RP-Initiated Logout 1.0).
async fn end_session(
    State(shared): State<Arc<SharedState>>,
    Query(parameters): Query<HashMap<String, String>>,
) -> Response {
    shared.lock().stats.end_session_requests += 1;
    let target = parameters
        .get("post_logout_redirect_uri")
        .filter(|uri| shared.post_logout_redirect_uri_allowed(uri))
        .and_then(|uri| Url::parse(uri).ok());
    if let Some(mut url) = target {
        if let Some(state) = parameters.get("state") {
            url.query_pairs_mut().append_pair("state", state);
        }
        return (StatusCode::FOUND, [(header::LOCATION, url.to_string())]).into_response();
    }
    let page = MessagePage {
        title: "Signed out of the dev OP".to_owned(),
        message: "You are signed out of the dev OP.".to_owned(),
        is_error: false,
    };
    render(StatusCode::OK, &page)
}
