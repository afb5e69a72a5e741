//! `POST /token`: client authentication (RFC 6749 §2.3.1), the authorization-code grant with
//! PKCE (RFC 7636) and the rotating refresh-token grant.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde_json::{json, Value};

use super::authorize::parse_form;
use super::grants::{AuthMethod, RefreshGrant};
use super::keys;
use super::options::{DevUser, Misbehavior, TokenAuthMethods};
use super::state::SharedState;
use super::tokens::{issue_access_token, issue_id_token, SigningKeys};

/// An OAuth error response (RFC 6749 §5.2).
fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    let mut response = (
        status,
        Json(json!({"error": error, "error_description": description})),
    )
        .into_response();
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if status == StatusCode::UNAUTHORIZED {
        headers.insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"dev OP\""),
        );
    }
    response
}

/// Decodes one `application/x-www-form-urlencoded` component (`+` is a space).
fn form_decode(text: &str) -> Option<String> {
    let mut decoded = Vec::with_capacity(text.len());
    let mut bytes = text.bytes();
    while let Some(byte) = bytes.next() {
        match byte {
            b'+' => decoded.push(b' '),
            b'%' => {
                let high = char::from(bytes.next()?).to_digit(16)?;
                let low = char::from(bytes.next()?).to_digit(16)?;
                decoded.push(u8::try_from(high * 16 + low).ok()?);
            }
            other => decoded.push(other),
        }
    }
    String::from_utf8(decoded).ok()
}

/// Compares secrets without an early exit on the first differing byte.
pub(crate) fn same_secret(given: &str, expected: &str) -> bool {
    given.len() == expected.len()
        && given
            .bytes()
            .zip(expected.bytes())
            .fold(0u8, |difference, (a, b)| difference | (a ^ b))
            == 0
}

/// Checks the client's credentials; the error text goes into `error_description`.
pub(crate) fn authenticate_client(
    methods: TokenAuthMethods,
    client_id: &str,
    client_secret: &str,
    authorization: Option<&str>,
    form: &HashMap<String, String>,
) -> Result<(), &'static str> {
    let basic = match authorization {
        None => None,
        Some(value) => {
            let (scheme, credentials) = value
                .split_once(' ')
                .ok_or("malformed Authorization header")?;
            if !scheme.eq_ignore_ascii_case("basic") {
                return Err("the Authorization header must use the Basic scheme");
            }
            let decoded = STANDARD
                .decode(credentials.trim())
                .map_err(|_| "malformed Basic credentials")?;
            let decoded = String::from_utf8(decoded).map_err(|_| "malformed Basic credentials")?;
            let (id, secret) = decoded
                .split_once(':')
                .ok_or("malformed Basic credentials")?;
            let id = form_decode(id).ok_or("malformed Basic credentials")?;
            let secret = form_decode(secret).ok_or("malformed Basic credentials")?;
            Some((id, secret))
        }
    };
    let body_secret = form.get("client_secret");
    let (given_id, given_secret) = match (basic, body_secret) {
        (Some(_), Some(_)) => return Err("more than one client authentication method"),
        (Some(_), None) if !methods.allows_basic() => {
            return Err("client_secret_basic is not allowed")
        }
        (Some((id, secret)), None) => {
            if form.get("client_id").is_some_and(|body_id| *body_id != id) {
                return Err("client_id differs from the Basic credentials");
            }
            (id, secret)
        }
        (None, Some(_)) if !methods.allows_post() => {
            return Err("client_secret_post is not allowed")
        }
        (None, Some(secret)) => (
            form.get("client_id").cloned().unwrap_or_default(),
            secret.clone(),
        ),
        (None, None) => return Err("client authentication is required"),
    };
    if given_id == client_id && same_secret(&given_secret, client_secret) {
        Ok(())
    } else {
        Err("unknown client or wrong secret")
    }
}

/// Checks a `private_key_jwt` client assertion (RFC 7523 §3): signed by one
/// of the client's registered keys, `iss` = `sub` = the client id, `aud` the
/// token endpoint (or the issuer), unexpired, and no other credentials.
pub(crate) fn check_client_assertion(
    keys: &[Value],
    client_id: &str,
    audiences: &[String],
    authorization: Option<&str>,
    form: &HashMap<String, String>,
    now: u64,
) -> Result<(), &'static str> {
    if keys.is_empty() {
        return Err("private_key_jwt is not registered for this client");
    }
    if authorization.is_some() || form.contains_key("client_secret") {
        return Err("more than one client authentication method");
    }
    let assertion = form
        .get("client_assertion")
        .ok_or("client_assertion is required")?;
    let decoded =
        super::jwt::decode_unverified(assertion).ok_or("client_assertion is not a JWT")?;
    let alg = decoded
        .header
        .get("alg")
        .and_then(Value::as_str)
        .ok_or("client_assertion has no alg")?;
    let kid = decoded.header.get("kid").and_then(Value::as_str);
    let signed = keys.iter().filter_map(Value::as_object).any(|jwk| {
        kid.is_none_or(|kid| jwk.get("kid").and_then(Value::as_str) == Some(kid))
            && crate::oidc::signature_verifies(
                jwk,
                alg,
                decoded.signing_input.as_bytes(),
                &decoded.signature,
            )
    });
    if !signed {
        return Err("client_assertion is not signed by a registered key");
    }
    let text = |name: &str| decoded.claims.get(name).and_then(Value::as_str);
    if text("iss") != Some(client_id) || text("sub") != Some(client_id) {
        return Err("client_assertion iss and sub must be the client id");
    }
    if form.get("client_id").is_some_and(|id| id != client_id) {
        return Err("client_id differs from the client_assertion");
    }
    let audience_ok = match decoded.claims.get("aud") {
        Some(Value::String(aud)) => audiences.contains(aud),
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_str)
            .any(|aud| audiences.iter().any(|accepted| accepted == aud)),
        _ => false,
    };
    if !audience_ok {
        return Err("client_assertion aud is not this token endpoint");
    }
    let unexpired = decoded
        .claims
        .get("exp")
        .and_then(Value::as_u64)
        .is_some_and(|exp| exp > now);
    if !unexpired {
        return Err("client_assertion expired");
    }
    Ok(())
}

/// The keys an ID token may need now; generating the stranger key can block, so off-thread.
async fn signing_keys(shared: &SharedState, misbehavior: &Misbehavior) -> SigningKeys {
    let current = shared.lock().current_key.clone();
    let stranger = if *misbehavior == Misbehavior::UnknownKid {
        match tokio::task::spawn_blocking(keys::stranger_key).await {
            Ok(Ok(key)) => Some(key),
            Ok(Err(error)) => {
                tracing::warn!(%error, "dev OP could not generate the stranger key");
                None
            }
            Err(error) => {
                tracing::warn!(%error, "dev OP key generation task failed");
                None
            }
        }
    } else {
        None
    };
    SigningKeys {
        current,
        id_token_key: shared.id_token_key(),
        stranger,
    }
}

/// Issues an access, ID and (rotated) refresh token for `user`.
async fn issue_tokens(
    shared: &SharedState,
    user: &DevUser,
    nonce: Option<&str>,
    (auth_time, method): (u64, AuthMethod),
    sid: &str,
    scope: &str,
) -> Response {
    let mut user = user.clone();
    user.extra_claims.insert("sid".to_owned(), json!(sid));
    let user = &user;
    let misbehavior = shared.misbehavior();
    let keys = signing_keys(shared, &misbehavior).await;
    let mut context = shared.token_context(shared.now());
    context.scope = scope;
    let signed = issue_id_token(
        &context,
        &keys,
        &misbehavior,
        user,
        nonce,
        (auth_time, method),
    )
    .and_then(|id_token| {
        Ok((
            id_token,
            issue_access_token(&context, &keys.current, user, scope)?,
        ))
    });
    let (id_token, access_token) = match signed {
        Ok(tokens) => tokens,
        Err(error) => {
            tracing::error!(%error, "dev OP could not sign tokens");
            return oauth_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "signing failed",
            );
        }
    };
    // Descope issues a refresh token only for `offline_access` (descope-js
    // asks for it to get one).
    let offline = scope.split(' ').any(|scope| scope == "offline_access");
    let refresh_token = {
        let mut mutable = shared.lock();
        mutable.stats.last_amr = vec![method.amr().to_owned()];
        mutable.stats.last_id_token_alg = Some(
            keys.id_token_key
                .as_ref()
                .map_or("RS256", |key| key.alg().name())
                .to_owned(),
        );
        if shared.descope().is_some() && !offline {
            None
        } else {
            Some(mutable.refresh_tokens.issue(RefreshGrant {
                client_id: shared.options.client_id.clone(),
                sub: user.sub.clone(),
                scope: scope.to_owned(),
                auth_time,
                sid: sid.to_owned(),
                method,
            }))
        }
    };
    let body: Value = json!({
        "access_token": access_token,
        "token_type": "Bearer",
        "expires_in": context.access_token_ttl_seconds,
        "id_token": id_token,
        "scope": scope,
    });
    let mut body = body;
    if let Some(refresh_token) = refresh_token {
        body["refresh_token"] = json!(refresh_token);
    }
    let mut response = Json(body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    response
}

/// The same token response with its `id_token` member removed.
async fn without_id_token(response: Response) -> Response {
    let (parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, 1024 * 1024).await else {
        return oauth_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "body unreadable",
        );
    };
    let mut value: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    if let Some(object) = value.as_object_mut() {
        object.remove("id_token");
    }
    let mut stripped = Json(value).into_response();
    for (name, header_value) in &parts.headers {
        if name != header::CONTENT_LENGTH {
            stripped.headers_mut().insert(name, header_value.clone());
        }
    }
    *stripped.status_mut() = parts.status;
    stripped
}

/// `POST /token`.
pub(crate) async fn token(
    State(shared): State<Arc<SharedState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form = parse_form(&body);
    let grant_type = form.get("grant_type").map(String::as_str);
    {
        let mut mutable = shared.lock();
        match grant_type {
            Some("authorization_code") => mutable.stats.code_exchanges += 1,
            Some("refresh_token") => mutable.stats.refreshes += 1,
            _ => {}
        }
    }
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok());
    let options = &shared.options;
    let asserted = form.get("client_assertion_type").map(String::as_str)
        == Some(crate::oidc::CLIENT_ASSERTION_TYPE);
    if asserted {
        let audiences = [
            format!("{}/token", shared.endpoint_base()),
            shared.issuer.clone(),
        ];
        if let Err(reason) = check_client_assertion(
            &options.client_assertion_keys,
            &options.client_id,
            &audiences,
            authorization,
            &form,
            shared.now(),
        ) {
            return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", reason);
        }
        shared.lock().stats.client_assertions += 1;
    } else if let Err(reason) = authenticate_client(
        options.token_auth_methods,
        &options.client_id,
        &options.client_secret,
        authorization,
        &form,
    ) {
        return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", reason);
    }
    let field = |name: &str| form.get(name).map(String::as_str);
    match grant_type {
        Some("authorization_code") => {
            if shared.misbehavior() == Misbehavior::TokenEndpointError {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "the dev OP was told to fail",
                );
            }
            let Some(code) = field("code") else {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "code is required",
                );
            };
            let redeemed = shared.lock().codes.redeem(
                code,
                &options.client_id,
                field("redirect_uri"),
                field("code_verifier"),
                shared.now(),
            );
            let grant = match redeemed {
                Ok(grant) => grant,
                Err(error) => {
                    return oauth_error(
                        StatusCode::BAD_REQUEST,
                        "invalid_grant",
                        &error.to_string(),
                    )
                }
            };
            let user = shared
                .lock()
                .user(&grant.sub)
                .unwrap_or_else(|| DevUser::new(&grant.sub));
            issue_tokens(
                &shared,
                &user,
                grant.nonce.as_deref(),
                (grant.auth_time, grant.method),
                &grant.sid,
                &grant.scope,
            )
            .await
        }
        Some("refresh_token") => {
            let Some(refresh_token) = field("refresh_token") else {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "refresh_token is required",
                );
            };
            let redeemed = shared
                .lock()
                .refresh_tokens
                .redeem(refresh_token, &options.client_id);
            let grant = match redeemed {
                Ok(grant) => grant,
                Err(error) => {
                    return oauth_error(
                        StatusCode::BAD_REQUEST,
                        "invalid_grant",
                        &error.to_string(),
                    )
                }
            };
            let user = shared
                .lock()
                .user(&grant.sub)
                .unwrap_or_else(|| DevUser::new(&grant.sub));
            let response = issue_tokens(
                &shared,
                &user,
                None,
                (grant.auth_time, grant.method),
                &grant.sid,
                &grant.scope,
            )
            .await;
            if shared.misbehavior() == Misbehavior::RefreshWithoutIdToken {
                without_id_token(response).await
            } else {
                response
            }
        }
        Some(_) => oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "unsupported grant_type",
        ),
        None => oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "grant_type is required",
        ),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly
mod tests {
    use super::*;

    fn form(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect()
    }

    fn basic(id: &str, secret: &str) -> String {
        format!("Basic {}", STANDARD.encode(format!("{id}:{secret}")))
    }

    fn check(
        methods: TokenAuthMethods,
        authorization: Option<&str>,
        form: &HashMap<String, String>,
    ) -> bool {
        authenticate_client(methods, "portico-test", "a b+c%", authorization, form).is_ok()
    }

    #[test]
    fn basic_credentials_are_form_decoded() {
        let header = basic("portico-test", "a+b%2Bc%25");
        assert!(check(
            TokenAuthMethods::BasicAndPost,
            Some(&header),
            &form(&[])
        ));
        assert!(check(
            TokenAuthMethods::BasicOnly,
            Some(&header),
            &form(&[])
        ));
        assert!(!check(
            TokenAuthMethods::PostOnly,
            Some(&header),
            &form(&[])
        ));
        let wrong = basic("portico-test", "a+b%2Bc");
        assert!(!check(
            TokenAuthMethods::BasicAndPost,
            Some(&wrong),
            &form(&[])
        ));
    }

    #[test]
    fn post_credentials_follow_the_allowed_methods() {
        let body = form(&[("client_id", "portico-test"), ("client_secret", "a b+c%")]);
        assert!(check(TokenAuthMethods::BasicAndPost, None, &body));
        assert!(check(TokenAuthMethods::PostOnly, None, &body));
        assert!(!check(TokenAuthMethods::BasicOnly, None, &body));
        let wrong_id = form(&[("client_id", "other"), ("client_secret", "a b+c%")]);
        assert!(!check(TokenAuthMethods::BasicAndPost, None, &wrong_id));
    }

    #[test]
    fn absent_or_doubled_client_authentication_is_refused() {
        assert!(!check(
            TokenAuthMethods::BasicAndPost,
            None,
            &form(&[("client_id", "portico-test")])
        ));
        let header = basic("portico-test", "a+b%2Bc%25");
        let body = form(&[("client_secret", "a b+c%")]);
        assert!(!check(TokenAuthMethods::BasicAndPost, Some(&header), &body));
        assert!(!check(
            TokenAuthMethods::BasicAndPost,
            Some("Bearer abc"),
            &form(&[])
        ));
    }
}
