//! The dev OP's `descope` profile: as strict as Descope, and no more generous.
//!
//! Each behaviour names the public source it follows:
//! - Paths: discovery and JWKS under `{base}/{project id}` (issuer
//!   `{base}/{project id}`), the OAuth endpoints under `{base}/oauth2/v1/`
//!   (Grafana's Descope guide, `auth_url`/`token_url`/`api_url` =
//!   `https://api.descope.com/oauth2/v1/{authorize,token,userinfo}`), session
//!   keys at `/v2/keys/{project id}` (descope/go-sdk `descope/api/client.go`
//!   routes, `GetKeys`; `descope/internal/auth/jwt.go` `requestKeys`), and the
//!   access-key exchange at `POST /v1/auth/accesskey/exchange` (descope/python-sdk
//!   `descope/common.py` `exchange_auth_access_key_path`; descope-swift
//!   `AccessKeyExchangeResponse { sessionJwt }`).
//! - Claims by scope: roles, permissions and tenants only for `descope.claims`
//!   (or `roles`, which descope-js's OIDC client asks for), custom claims only
//!   for `descope.custom_claims` (Grafana's guide, descope-js web-js-sdk
//!   `createOidc` default scope), email and profile claims for their
//!   standard scopes (OpenID Connect Core §5.4). No `groups`: Descope has none.
//! - Tenants as `{"tenants": {"<id>": {"roles": [...], "permissions": [...]}}}`
//!   (descope/go-sdk `descope/types.go`, `Token.GetTenants`/`claimTenantRoles`).
//! - `aud` = the project id and no `azp` unless the JWT template adds it;
//!   `dsub` = the user id when the template's `override_subject_claim` is on
//!   (Descope Terraform provider docs, `jwt_template` attributes).
//! - No RFC 9207 `iss` on the callback and no
//!   `authorization_response_iss_parameter_supported` in discovery; refresh
//!   tokens only with `offline_access` (descope-js asks for it to get one).
//! - Session JWTs carry no `aud`, and their `iss` is the bare project id,
//!   `{base}/{project id}`, or (access-key exchange) `{base}/v1/apps/{project
//!   id}` (Descope Terraform provider docs, `descope_access_key`, "Token
//!   Issuer Mismatch").
//! - Unknown, so switchable: whether the ID token echoes `nonce`
//!   (`echo_nonce`), and which client authentication the token endpoint takes
//!   (`DevOpOptions::token_auth_methods`, Basic and form fields by default).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};

use super::jwt::{self, Signing};
use super::state::SharedState;

/// Which `iss` Descope session JWTs carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionIssuerForm {
    /// Older projects: the bare project id.
    BareProjectId,
    /// The JWT template's conformance issuer: `{base}/{project id}`.
    ProjectUrl,
    /// Access-key exchanges on current projects: `{base}/v1/apps/{project id}`.
    AppsUrl,
}

/// A Descope access key (a machine's credential) and what it grants.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DescopeAccessKey {
    /// The key id (`keyId`, the session JWT's `sub`).
    pub id: String,
    /// The cleartext key.
    pub secret: String,
    pub roles: Vec<String>,
    /// `{"<tenant id>": {"roles": [...], "permissions": [...]}}`.
    pub tenants: Map<String, Value>,
}

impl DescopeAccessKey {
    pub fn new(id: &str, secret: &str, roles: &[&str]) -> DescopeAccessKey {
        DescopeAccessKey {
            id: id.to_owned(),
            secret: secret.to_owned(),
            roles: roles.iter().map(|role| (*role).to_owned()).collect(),
            tenants: Map::new(),
        }
    }
}

/// The strict Descope profile.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DescopeShape {
    pub project_id: String,
    /// The JWT template adds `azp` = the client id.
    pub send_azp: bool,
    /// The JWT template's `override_subject_claim`: `sub` becomes the user's
    /// login id (their email here) and `dsub` holds the user id.
    pub override_subject: bool,
    /// Whether ID tokens carry the authorization request's `nonce`.
    pub echo_nonce: bool,
    /// The `iss` of session JWTs (the token endpoint's access token and the
    /// access-key exchange's `sessionJwt`).
    pub session_issuer: SessionIssuerForm,
    /// Access keys `POST /v1/auth/accesskey/exchange` accepts.
    pub access_keys: Vec<DescopeAccessKey>,
    /// How long an exchanged session JWT lives.
    pub session_ttl: Duration,
}

impl DescopeShape {
    /// The profile as a new project has it: no template claims, nonce echoed.
    pub fn new(project_id: &str) -> DescopeShape {
        DescopeShape {
            project_id: project_id.to_owned(),
            send_azp: false,
            override_subject: false,
            echo_nonce: true,
            session_issuer: SessionIssuerForm::ProjectUrl,
            access_keys: Vec::new(),
            session_ttl: Duration::from_secs(600),
        }
    }
}

/// The origin (`{base}`) of a Descope-shaped issuer `{base}/{project}`.
pub(crate) fn base_of(issuer: &str, project_id: &str) -> String {
    issuer
        .strip_suffix(&format!("/{project_id}"))
        .unwrap_or(issuer)
        .to_owned()
}

/// The `iss` of a session JWT in `form`.
pub(crate) fn session_issuer(
    shape: &DescopeShape,
    issuer: &str,
    form: SessionIssuerForm,
) -> String {
    let base = base_of(issuer, &shape.project_id);
    match form {
        SessionIssuerForm::BareProjectId => shape.project_id.clone(),
        SessionIssuerForm::ProjectUrl => format!("{base}/{}", shape.project_id),
        SessionIssuerForm::AppsUrl => format!("{base}/v1/apps/{}", shape.project_id),
    }
}

/// Claims only for the scopes asked, Descope's way (see the module docs).
/// `claims` is a full ID token; `login_id` replaces `sub` under the JWT
/// template's subject override.
pub(crate) fn keep_scoped_claims(
    claims: &mut Map<String, Value>,
    shape: &DescopeShape,
    scope: &str,
    login_id: &str,
) {
    let asked = |name: &str| scope.split(' ').any(|scope| scope == name);
    const STANDARD: [&str; 12] = [
        "iss",
        "sub",
        "aud",
        "azp",
        "exp",
        "iat",
        "auth_time",
        "nonce",
        "amr",
        "sid",
        "dsub",
        "drn",
    ];
    const EMAIL: [&str; 2] = ["email", "email_verified"];
    const PROFILE: [&str; 2] = ["name", "preferred_username"];
    const AUTHORIZATION: [&str; 3] = ["roles", "permissions", "tenants"];
    claims.remove("groups");
    if !asked("email") {
        EMAIL.iter().for_each(|name| {
            claims.remove(*name);
        });
    }
    if !asked("profile") {
        PROFILE.iter().for_each(|name| {
            claims.remove(*name);
        });
    }
    if asked("descope.claims") || asked("roles") {
        claims.entry("permissions").or_insert_with(|| json!([]));
        claims.entry("tenants").or_insert_with(|| json!({}));
    } else {
        AUTHORIZATION.iter().for_each(|name| {
            claims.remove(*name);
        });
    }
    if !asked("descope.custom_claims") {
        claims.retain(|name, _| {
            STANDARD.contains(&name.as_str())
                || EMAIL.contains(&name.as_str())
                || PROFILE.contains(&name.as_str())
                || AUTHORIZATION.contains(&name.as_str())
        });
    }
    if shape.override_subject {
        let user_id = claims.get("sub").cloned().unwrap_or(Value::Null);
        claims.insert("dsub".to_owned(), user_id);
        claims.insert("sub".to_owned(), json!(login_id));
    }
}

/// A session JWT's claims (no `aud`, `drn` = "DS").
/// The userinfo answer of the Descope profile, made from the user's claims.
/// Descope's OIDC endpoint docs list a userinfo endpoint
/// (`{base}/oauth2/v1/userinfo`) but not what it returns beyond the standard
/// profile; roles, permissions and tenants reach tokens through scopes and JWT
/// templates. So the profile answers the least: standard End-User claims
/// only, and the same `sub` as its ID tokens (the login id when the template
/// overrides the subject, Core §5.3.2). docs/descope.md says so.
pub(crate) fn userinfo_claims(
    claims: &mut Map<String, Value>,
    shape: &DescopeShape,
    login_id: &str,
) {
    const STANDARD: [&str; 9] = [
        "sub",
        "email",
        "email_verified",
        "name",
        "given_name",
        "family_name",
        "preferred_username",
        "picture",
        "phone_number",
    ];
    claims.retain(|name, _| STANDARD.contains(&name.as_str()));
    if shape.override_subject {
        claims.insert("sub".to_owned(), json!(login_id));
    }
}

pub(crate) fn session_claims(
    iss: &str,
    sub: &str,
    roles: &[String],
    tenants: &Map<String, Value>,
    now: u64,
    ttl: Duration,
) -> Map<String, Value> {
    let mut claims = Map::new();
    claims.insert("iss".to_owned(), json!(iss));
    claims.insert("sub".to_owned(), json!(sub));
    claims.insert("iat".to_owned(), json!(now));
    claims.insert("exp".to_owned(), json!(now + ttl.as_secs()));
    claims.insert("drn".to_owned(), json!("DS"));
    claims.insert("roles".to_owned(), json!(roles));
    claims.insert("permissions".to_owned(), json!([]));
    claims.insert("tenants".to_owned(), Value::Object(tenants.clone()));
    claims
}

fn exchange_refused(status: StatusCode, description: &str) -> Response {
    (status, Json(json!({"errorDescription": description}))).into_response()
}

/// `POST /v1/auth/accesskey/exchange` with `Authorization: Bearer
/// <project id>:<access key>`: `{keyId, sessionJwt, expiration}`.
pub(crate) async fn access_key_exchange(
    State(shared): State<Arc<SharedState>>,
    headers: HeaderMap,
) -> Response {
    let Some(shape) = shared.options.descope.as_ref() else {
        return exchange_refused(StatusCode::NOT_FOUND, "not a Descope-shaped OP");
    };
    let credentials = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .and_then(|value| value.split_once(':'));
    let Some((project, secret)) = credentials else {
        return exchange_refused(
            StatusCode::UNAUTHORIZED,
            "expected Authorization: Bearer <project id>:<access key>",
        );
    };
    let key = shape.access_keys.iter().find(|key| {
        project == shape.project_id && super::token_endpoint::same_secret(secret, &key.secret)
    });
    let Some(key) = key else {
        return exchange_refused(StatusCode::UNAUTHORIZED, "unknown access key");
    };
    let now = shared.now();
    let iss = session_issuer(shape, &shared.issuer, SessionIssuerForm::AppsUrl);
    let claims = session_claims(
        &iss,
        &key.id,
        &key.roles,
        &key.tenants,
        now,
        shape.session_ttl,
    );
    let signing_key = shared.lock().current_key.clone();
    match jwt::encode(&claims, "JWT", Signing::Rs256(&signing_key)) {
        Ok(session_jwt) => Json(json!({
            "keyId": key.id,
            "sessionJwt": session_jwt,
            "expiration": now + shape.session_ttl.as_secs(),
        }))
        .into_response(),
        Err(error) => {
            tracing::error!(%error, "dev OP could not sign a session JWT");
            exchange_refused(StatusCode::INTERNAL_SERVER_ERROR, "signing failed")
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn full() -> Map<String, Value> {
        json!({
            "iss": "i", "sub": "U1", "aud": "P2", "exp": 2, "iat": 1, "nonce": "n",
            "email": "a@x", "email_verified": true, "name": "A", "preferred_username": "a",
            "roles": ["editor"], "groups": [], "tenants": {"T1": {"roles": ["admin"]}},
            "department": "sales", "amr": ["webauthn"],
        })
        .as_object()
        .unwrap()
        .clone()
    }

    #[test]
    fn openid_alone_brings_neither_roles_nor_email_nor_custom_claims() {
        let mut claims = full();
        keep_scoped_claims(&mut claims, &DescopeShape::new("P2"), "openid", "a@x");
        let names: Vec<&str> = claims.keys().map(String::as_str).collect();
        assert_eq!(names, ["amr", "aud", "exp", "iat", "iss", "nonce", "sub"]);
    }

    #[test]
    fn descope_scopes_bring_roles_tenants_and_custom_claims() {
        let mut claims = full();
        let scope = "openid email descope.claims descope.custom_claims";
        keep_scoped_claims(&mut claims, &DescopeShape::new("P2"), scope, "a@x");
        assert_eq!(claims["roles"], json!(["editor"]));
        assert_eq!(claims["permissions"], json!([]));
        assert_eq!(claims["tenants"]["T1"]["roles"], json!(["admin"]));
        assert_eq!(claims["department"], "sales");
        assert_eq!(claims["email"], "a@x");
        assert!(!claims.contains_key("name"));
        assert!(!claims.contains_key("groups"));
    }

    #[test]
    fn the_subject_override_keeps_the_user_id_in_dsub() {
        let mut claims = full();
        let shape = DescopeShape {
            override_subject: true,
            ..DescopeShape::new("P2")
        };
        keep_scoped_claims(&mut claims, &shape, "openid", "a@x");
        assert_eq!(claims["dsub"], "U1");
        assert_eq!(claims["sub"], "a@x");
    }

    #[test]
    fn session_issuers_take_each_form() {
        let shape = DescopeShape::new("P2x");
        let issuer = "http://127.0.0.1:9/P2x";
        assert_eq!(
            session_issuer(&shape, issuer, SessionIssuerForm::BareProjectId),
            "P2x"
        );
        assert_eq!(
            session_issuer(&shape, issuer, SessionIssuerForm::ProjectUrl),
            issuer
        );
        assert_eq!(
            session_issuer(&shape, issuer, SessionIssuerForm::AppsUrl),
            "http://127.0.0.1:9/v1/apps/P2x"
        );
        let claims = session_claims(
            "P2x",
            "K1",
            &["r".into()],
            &Map::new(),
            10,
            Duration::from_secs(5),
        );
        assert!(!claims.contains_key("aud"));
        assert_eq!(claims["exp"], 15);
    }
}
