//! `GET /authorize` (validate, then the sign-in page or an automatic approval) and
//! `POST /authorize` (the sign-in form: issue a code and redirect back).
//!
//! A request naming an unknown client or an unregistered redirect URI gets an HTML error page
//! and never a redirect (RFC 6749 §4.1.2.1); every other problem goes back to the client as an
//! `error` parameter, with the RFC 9207 `iss` parameter when that is on.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use url::Url;

use super::grants::{AuthMethod, CodeGrant};
use super::misbehavior::wrong_issuer;
use super::options::Misbehavior;
use super::pages::{error_page, render, LoginPage, Notice, PasskeyOffer, UserRow};
use super::state::SharedState;

/// A validated authorization request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct AuthorizationRequest {
    pub redirect_uri: String,
    pub scope: String,
    pub state: Option<String>,
    pub nonce: Option<String>,
    pub code_challenge: String,
}

/// Why an authorization request was refused.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Shown to the user: the client or redirect URI cannot be trusted with a redirect.
    Page(String),
    /// Sent back to the client's redirect URI.
    Redirect {
        redirect_uri: String,
        state: Option<String>,
        error: &'static str,
        description: String,
    },
}

/// Parses `application/x-www-form-urlencoded` text; the first value of a name wins.
pub(crate) fn parse_form(text: &[u8]) -> HashMap<String, String> {
    let mut fields = HashMap::new();
    for (name, value) in url::form_urlencoded::parse(text) {
        fields
            .entry(name.into_owned())
            .or_insert_with(|| value.into_owned());
    }
    fields
}

/// Checks an authorization request's parameters against the options and the misbehaviour.
pub(crate) fn validate_request(
    shared: &SharedState,
    misbehavior: &Misbehavior,
    fields: &HashMap<String, String>,
) -> Result<AuthorizationRequest, Refusal> {
    let field = |name: &str| fields.get(name).filter(|value| !value.is_empty()).cloned();
    if field("client_id").as_deref() != Some(shared.options.client_id.as_str()) {
        return Err(Refusal::Page("Unknown or missing client_id.".to_owned()));
    }
    let Some(redirect_uri) = field("redirect_uri").filter(|uri| shared.redirect_uri_allowed(uri))
    else {
        return Err(Refusal::Page(
            "Missing or unregistered redirect_uri.".to_owned(),
        ));
    };
    let state = field("state");
    let refuse = |error: &'static str, description: &str| Refusal::Redirect {
        redirect_uri: redirect_uri.clone(),
        state: state.clone(),
        error,
        description: description.to_owned(),
    };
    if field("response_type").as_deref() != Some("code") {
        return Err(refuse(
            "unsupported_response_type",
            "only response_type=code is supported",
        ));
    }
    let scope = field("scope").unwrap_or_default();
    if !scope.split(' ').any(|scope| scope == "openid") {
        return Err(refuse("invalid_scope", "scope must contain openid"));
    }
    let Some(code_challenge) = field("code_challenge") else {
        return Err(refuse(
            "invalid_request",
            "code_challenge is required (PKCE)",
        ));
    };
    if field("code_challenge_method").as_deref() != Some("S256") {
        return Err(refuse(
            "invalid_request",
            "code_challenge_method must be S256",
        ));
    }
    if *misbehavior == Misbehavior::AuthorizeError {
        return Err(refuse(
            "access_denied",
            "the dev OP was told to refuse this sign-in",
        ));
    }
    Ok(AuthorizationRequest {
        redirect_uri,
        scope,
        state,
        nonce: field("nonce"),
        code_challenge,
    })
}

/// A 302 to `redirect_uri` with `parameters` and, when configured, `iss` appended.
fn redirect_back(
    shared: &SharedState,
    misbehavior: &Misbehavior,
    redirect_uri: &str,
    parameters: &[(&str, &str)],
) -> Response {
    let Ok(mut url) = Url::parse(redirect_uri) else {
        return error_page(
            StatusCode::BAD_REQUEST,
            "The redirect_uri is not a valid URL.",
        );
    };
    {
        let mut query = url.query_pairs_mut();
        for (name, value) in parameters {
            query.append_pair(name, value);
        }
        if *misbehavior == Misbehavior::WrongIssParam {
            query.append_pair("iss", &wrong_issuer(&shared.issuer));
        } else if shared.options.send_iss_in_callback && shared.descope().is_none() {
            // Descope sends no RFC 9207 `iss` (see `descope.rs`).
            query.append_pair("iss", &shared.issuer);
        }
    }
    (StatusCode::FOUND, [(header::LOCATION, url.to_string())]).into_response()
}

pub(crate) fn refuse(
    shared: &SharedState,
    misbehavior: &Misbehavior,
    refusal: Refusal,
) -> Response {
    match refusal {
        Refusal::Page(message) => error_page(StatusCode::BAD_REQUEST, message),
        Refusal::Redirect {
            redirect_uri,
            state,
            error,
            description,
        } => {
            let mut parameters = vec![
                ("error", error),
                ("error_description", description.as_str()),
            ];
            if let Some(state) = &state {
                parameters.push(("state", state));
            }
            redirect_back(shared, misbehavior, &redirect_uri, &parameters)
        }
    }
}

/// Signs `sub` in: issues a code for `request` and redirects back with it.
pub(crate) fn approve(
    shared: &SharedState,
    misbehavior: &Misbehavior,
    request: AuthorizationRequest,
    sub: &str,
    method: AuthMethod,
) -> Response {
    let now = shared.now();
    let code = {
        let mut mutable = shared.lock();
        let user = mutable.user_or_create(sub);
        mutable.remember_sign_in(&user.sub);
        mutable.stats.logins += 1;
        let sid = format!("op-session-{}", mutable.stats.logins);
        mutable.stats.last_sid = Some(sid.clone());
        let grant = CodeGrant {
            client_id: shared.options.client_id.clone(),
            redirect_uri: request.redirect_uri.clone(),
            code_challenge: request.code_challenge,
            nonce: request.nonce,
            sub: user.sub,
            scope: request.scope,
            auth_time: now,
            sid,
            method,
        };
        mutable.codes.issue(grant, now)
    };
    tracing::debug!(sub, amr = method.amr(), "dev OP signed a user in");
    let mut parameters = vec![("code", code.as_str())];
    if let Some(state) = &request.state {
        parameters.push(("state", state));
    }
    redirect_back(shared, misbehavior, &request.redirect_uri, &parameters)
}

/// The request's fields that the sign-in form carries back in hidden inputs.
const CARRIED_FIELDS: [&str; 8] = [
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "nonce",
    "code_challenge",
    "code_challenge_method",
];

/// The sign-in page for the authorization request in `fields`, with a fresh passkey challenge
/// bound to that request when passkeys can work here.
pub(crate) fn login_page(
    shared: &SharedState,
    fields: &HashMap<String, String>,
    notice: Option<Notice>,
) -> Response {
    let hidden_fields: Vec<(String, String)> = CARRIED_FIELDS
        .iter()
        .filter_map(|name| {
            fields
                .get(*name)
                .map(|value| ((*name).to_owned(), value.clone()))
        })
        .collect();
    let now = shared.now();
    let mut mutable = shared.lock();
    let passkey = shared.relying_party.as_ref().map(|relying_party| {
        let request_fields = hidden_fields.iter().cloned().collect();
        PasskeyOffer {
            challenge: mutable.ceremonies.begin(request_fields, now),
            rp_id: relying_party.id.clone(),
        }
    });
    let users = mutable
        .recent_users()
        .into_iter()
        .map(|user| UserRow {
            sub: user.sub.clone(),
            name: user.name.clone(),
            roles: user.roles.join(", "),
        })
        .collect();
    drop(mutable);
    let page = LoginPage {
        client_id: shared.options.client_id.clone(),
        // Empty (and focused) at first, so typing a name gives just that name;
        // a name typed before an error (a failed passkey ceremony) is kept.
        default_username: fields
            .get("username")
            .map(|name| name.trim().to_owned())
            .unwrap_or_default(),
        users,
        hidden_fields,
        notice,
        passkey,
        // The page posts to `{issuer}/authorize`: give it where the
        // authorization endpoint lives (Descope: `{base}/oauth2/v1`).
        issuer: shared.endpoint_base(),
    };
    render(StatusCode::OK, &page)
}

/// `GET /authorize`.
pub(crate) async fn authorize_page(
    State(shared): State<Arc<SharedState>>,
    RawQuery(query): RawQuery,
) -> Response {
    let (misbehavior, auto_approve) = {
        let mut mutable = shared.lock();
        mutable.stats.authorize_requests += 1;
        mutable.stats.last_authorize_query = query.clone();
        (mutable.misbehavior.clone(), mutable.auto_approve.clone())
    };
    let fields = parse_form(query.unwrap_or_default().as_bytes());
    match validate_request(&shared, &misbehavior, &fields) {
        Err(refusal) => refuse(&shared, &misbehavior, refusal),
        Ok(request) => match auto_approve {
            Some(sub) => approve(&shared, &misbehavior, request, &sub, AuthMethod::Password),
            None => login_page(&shared, &fields, None),
        },
    }
}

/// `POST /authorize`: the sign-in form.
pub(crate) async fn authorize_submit(
    State(shared): State<Arc<SharedState>>,
    body: Bytes,
) -> Response {
    let misbehavior = shared.misbehavior();
    let fields = parse_form(&body);
    let request = match validate_request(&shared, &misbehavior, &fields) {
        Ok(request) => request,
        Err(refusal) => return refuse(&shared, &misbehavior, refusal),
    };
    let chosen = ["chosen_user", "username"]
        .iter()
        .filter_map(|name| fields.get(*name))
        .map(|value| value.trim())
        .find(|value| !value.is_empty());
    match chosen {
        Some(sub) => approve(&shared, &misbehavior, request, sub, AuthMethod::Password),
        None => login_page(&shared, &fields, Some(Notice::error("Enter a username."))),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly
mod tests {
    use super::super::keys::key_at;
    use super::super::options::DevOpOptions;
    use super::*;

    fn shared() -> SharedState {
        SharedState::new(
            "http://127.0.0.1:9".to_owned(),
            DevOpOptions::default(),
            key_at(0).unwrap(),
        )
    }

    fn fields(overrides: &[(&str, &str)]) -> HashMap<String, String> {
        let mut fields: HashMap<String, String> = [
            ("response_type", "code"),
            ("client_id", "portico-test"),
            ("redirect_uri", "http://127.0.0.1:4180/oauth2/callback"),
            ("scope", "openid email"),
            ("state", "s1"),
            ("nonce", "n1"),
            (
                "code_challenge",
                "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
            ),
            ("code_challenge_method", "S256"),
        ]
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect();
        for (name, value) in overrides {
            fields.insert((*name).to_owned(), (*value).to_owned());
        }
        fields
    }

    fn error_of(result: Result<AuthorizationRequest, Refusal>) -> &'static str {
        match result {
            Err(Refusal::Redirect { error, .. }) => error,
            other => unreachable!("expected a redirect refusal, got {other:?}"),
        }
    }

    #[test]
    fn valid_request_keeps_state_and_nonce() {
        let request = validate_request(&shared(), &Misbehavior::None, &fields(&[])).unwrap();
        assert_eq!(request.state.as_deref(), Some("s1"));
        assert_eq!(request.nonce.as_deref(), Some("n1"));
        assert_eq!(request.scope, "openid email");
    }

    #[test]
    fn unknown_client_or_redirect_uri_gets_a_page_not_a_redirect() {
        let shared = shared();
        for overrides in [
            [("client_id", "other")],
            [("redirect_uri", "https://evil.example/cb")],
        ] {
            let result = validate_request(&shared, &Misbehavior::None, &fields(&overrides));
            assert!(matches!(result, Err(Refusal::Page(_))));
        }
    }

    #[test]
    fn protocol_errors_go_back_to_the_client() {
        let shared = shared();
        let check = |overrides: &[(&str, &str)]| {
            error_of(validate_request(
                &shared,
                &Misbehavior::None,
                &fields(overrides),
            ))
        };
        assert_eq!(
            check(&[("response_type", "token")]),
            "unsupported_response_type"
        );
        assert_eq!(check(&[("scope", "profile")]), "invalid_scope");
        assert_eq!(check(&[("code_challenge", "")]), "invalid_request");
        assert_eq!(
            check(&[("code_challenge_method", "plain")]),
            "invalid_request"
        );
        let denied = validate_request(&shared, &Misbehavior::AuthorizeError, &fields(&[]));
        assert_eq!(error_of(denied), "access_denied");
    }
}
