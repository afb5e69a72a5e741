//! The claims of the dev OP's ID tokens, access tokens and userinfo, and their signing.

use std::sync::Arc;

use serde_json::{json, Map, Value};

use super::descope::{keep_scoped_claims, session_issuer, DescopeShape};
use super::grants::{random_token, AuthMethod};
use super::jwt::{self, JwtError, Signing};
use super::keys::KeyPair;
use super::misbehavior::{apply_to_id_token, SignatureChoice};
use super::options::{DevUser, Misbehavior};
use super::signers::AlgKey;

/// The `typ` of access tokens (RFC 9068), so one is never mistaken for an ID token.
pub(crate) const ACCESS_TOKEN_TYPE: &str = "at+jwt";

/// Claims `extra_claims` may not replace.
const PROTOCOL_CLAIMS: [&str; 8] = [
    "iss",
    "sub",
    "aud",
    "azp",
    "exp",
    "iat",
    "auth_time",
    "nonce",
];

/// What every token issued in one response shares.
pub(crate) struct TokenContext<'a> {
    pub issuer: &'a str,
    pub client_id: &'a str,
    pub client_secret: &'a str,
    pub now: u64,
    pub id_token_ttl_seconds: u64,
    pub access_token_ttl_seconds: u64,
    /// The `aud` of ID tokens (the client id, or Descope's array).
    pub audience: Value,
    pub send_azp: bool,
    /// The Descope profile: claims only for the scopes asked, etc.
    pub descope: Option<&'a DescopeShape>,
    /// The scopes granted (space-separated).
    pub scope: &'a str,
    /// End-User claims go to userinfo only (`DevOpOptions::claims_at_userinfo`).
    pub claims_at_userinfo: bool,
}

/// The keys a token may be signed with.
pub(crate) struct SigningKeys {
    pub current: Arc<KeyPair>,
    /// Signs ID tokens when the OP signs with another algorithm than RS256.
    pub id_token_key: Option<Arc<AlgKey>>,
    /// Present when the `UnknownKid` misbehaviour is on.
    pub stranger: Option<Arc<KeyPair>>,
}

/// The user's identity claims (userinfo, and the identity part of the ID token).
pub(crate) fn user_claims(user: &DevUser) -> Map<String, Value> {
    let mut claims = Map::new();
    claims.insert("sub".to_owned(), json!(user.sub));
    claims.insert("email".to_owned(), json!(user.email));
    claims.insert("email_verified".to_owned(), json!(true));
    claims.insert("name".to_owned(), json!(user.name));
    claims.insert(
        "preferred_username".to_owned(),
        json!(user.preferred_username),
    );
    claims.insert("roles".to_owned(), json!(user.roles));
    claims.insert("groups".to_owned(), json!(user.groups));
    for (name, value) in &user.extra_claims {
        if !PROTOCOL_CLAIMS.contains(&name.as_str()) {
            claims.insert(name.clone(), value.clone());
        }
    }
    claims
}

/// A well-behaved ID token's claims.
pub(crate) fn id_token_claims(
    context: &TokenContext<'_>,
    user: &DevUser,
    nonce: Option<&str>,
    auth_time: u64,
    method: AuthMethod,
) -> Map<String, Value> {
    let mut claims = Map::new();
    claims.insert("iss".to_owned(), json!(context.issuer));
    claims.insert("sub".to_owned(), json!(user.sub));
    claims.insert("aud".to_owned(), context.audience.clone());
    if context.send_azp {
        claims.insert("azp".to_owned(), json!(context.client_id));
    }
    claims.insert(
        "exp".to_owned(),
        json!(context.now + context.id_token_ttl_seconds),
    );
    claims.insert("iat".to_owned(), json!(context.now));
    claims.insert("auth_time".to_owned(), json!(auth_time));
    // Descope may not echo the nonce (unknown; `echo_nonce` switches).
    let echo_nonce = context.descope.is_none_or(|descope| descope.echo_nonce);
    if let Some(nonce) = nonce.filter(|_| echo_nonce) {
        claims.insert("nonce".to_owned(), json!(nonce));
    }
    claims.insert("amr".to_owned(), json!([method.amr()]));
    if context.claims_at_userinfo {
        // Only who and how: the rest is served at userinfo (Core §5.4).
        claims.insert("sub".to_owned(), json!(user.sub));
        for name in ["sid", "amr"] {
            if let Some(value) = user.extra_claims.get(name) {
                claims.insert(name.to_owned(), value.clone());
            }
        }
    } else {
        claims.extend(user_claims(user));
        if let Some(descope) = context.descope {
            keep_scoped_claims(&mut claims, descope, context.scope, &user.email);
        }
    }
    claims
}

/// Builds, alters per `misbehavior`, and signs an ID token.
pub(crate) fn issue_id_token(
    context: &TokenContext<'_>,
    keys: &SigningKeys,
    misbehavior: &Misbehavior,
    user: &DevUser,
    nonce: Option<&str>,
    (auth_time, method): (u64, AuthMethod),
) -> Result<String, JwtError> {
    let mut claims = id_token_claims(context, user, nonce, auth_time, method);
    let choice = apply_to_id_token(
        misbehavior,
        &mut claims,
        context.client_id,
        context.now,
        context.id_token_ttl_seconds,
    );
    let signing = match (choice, &keys.stranger) {
        (SignatureChoice::Normal, _) => match &keys.id_token_key {
            Some(key) => Signing::With(key),
            None => Signing::Rs256(&keys.current),
        },
        (SignatureChoice::NoKid, _) => Signing::Rs256NoKid(&keys.current),
        (SignatureChoice::Corrupted, _) => Signing::Rs256Corrupted(&keys.current),
        (SignatureChoice::Unsigned, _) => Signing::Unsigned,
        (SignatureChoice::ClientSecretHmac, _) => Signing::Hs256(context.client_secret.as_bytes()),
        (SignatureChoice::StrangerKey, Some(stranger)) => Signing::Rs256(stranger),
        (SignatureChoice::StrangerKey, None) => {
            tracing::warn!("dev OP has no stranger key yet; signing with the published key");
            Signing::Rs256(&keys.current)
        }
    };
    jwt::encode(&claims, "JWT", signing)
}

/// Builds and signs an access token (never subject to misbehaviour).
pub(crate) fn issue_access_token(
    context: &TokenContext<'_>,
    key: &KeyPair,
    user: &DevUser,
    scope: &str,
) -> Result<String, JwtError> {
    if let Some(descope) = context.descope {
        // A Descope session JWT: no `aud`, the issuer form the project uses.
        let tenants = match user.extra_claims.get("tenants") {
            Some(Value::Object(tenants)) => tenants.clone(),
            _ => Map::new(),
        };
        let iss = session_issuer(descope, context.issuer, descope.session_issuer);
        let mut claims = super::descope::session_claims(
            &iss,
            &user.sub,
            &user.roles,
            &tenants,
            context.now,
            std::time::Duration::from_secs(context.access_token_ttl_seconds),
        );
        if let Some(permissions) = user.extra_claims.get("permissions") {
            claims.insert("permissions".to_owned(), permissions.clone());
        }
        if descope.override_subject {
            claims.insert("dsub".to_owned(), json!(user.sub));
            claims.insert("sub".to_owned(), json!(user.email));
        }
        return jwt::encode(&claims, ACCESS_TOKEN_TYPE, Signing::Rs256(key));
    }
    let mut claims = Map::new();
    claims.insert("iss".to_owned(), json!(context.issuer));
    claims.insert("sub".to_owned(), json!(user.sub));
    claims.insert("aud".to_owned(), json!(context.client_id));
    claims.insert(
        "exp".to_owned(),
        json!(context.now + context.access_token_ttl_seconds),
    );
    claims.insert("iat".to_owned(), json!(context.now));
    claims.insert("jti".to_owned(), json!(random_token()));
    claims.insert("scope".to_owned(), json!(scope));
    claims.insert("client_id".to_owned(), json!(context.client_id));
    claims.insert("roles".to_owned(), json!(user.roles));
    jwt::encode(&claims, ACCESS_TOKEN_TYPE, Signing::Rs256(key))
}

/// The claims of an access token this OP issued and that is still valid at `now`.
pub(crate) fn check_access_token(
    token: &str,
    keys: &[Arc<KeyPair>],
    issuer: &str,
    now: u64,
) -> Option<Map<String, Value>> {
    let claims = jwt::verify_rs256(token, keys, ACCESS_TOKEN_TYPE)?;
    let issued_here = claims.get("iss").and_then(Value::as_str) == Some(issuer);
    let unexpired = claims
        .get("exp")
        .and_then(Value::as_u64)
        .is_some_and(|exp| exp > now);
    (issued_here && unexpired).then_some(claims)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly
mod tests {
    use super::super::jwt::decode_unverified;
    use super::super::keys::{key_at, stranger_key};
    use super::*;

    const NOW: u64 = 1_700_000_000;

    fn context() -> TokenContext<'static> {
        TokenContext {
            issuer: "http://127.0.0.1:9",
            client_id: "portico-test",
            client_secret: "devop-secret",
            now: NOW,
            id_token_ttl_seconds: 300,
            access_token_ttl_seconds: 600,
            audience: json!("portico-test"),
            send_azp: true,
            descope: None,
            scope: "openid",
            claims_at_userinfo: false,
        }
    }

    fn keys() -> SigningKeys {
        SigningKeys {
            current: key_at(0).unwrap(),
            id_token_key: None,
            stranger: Some(stranger_key().unwrap()),
        }
    }

    fn alice() -> DevUser {
        let mut user = DevUser::new("alice").with_roles(&["admin"]);
        user.extra_claims.insert("tenant".to_owned(), json!("acme"));
        user.extra_claims.insert("iss".to_owned(), json!("ignored"));
        user
    }

    #[test]
    fn id_token_carries_the_standard_and_user_claims() {
        let token = issue_id_token(
            &context(),
            &keys(),
            &Misbehavior::None,
            &alice(),
            Some("n1"),
            (NOW - 5, AuthMethod::Password),
        )
        .unwrap();
        let decoded = decode_unverified(&token).unwrap();
        assert_eq!(decoded.header["kid"], key_at(0).unwrap().kid.as_str());
        let claims = decoded.claims;
        assert_eq!(claims["iss"], "http://127.0.0.1:9");
        assert_eq!(claims["aud"], "portico-test");
        assert_eq!(claims["azp"], "portico-test");
        assert_eq!(claims["exp"], NOW + 300);
        assert_eq!(claims["iat"], NOW);
        assert_eq!(claims["auth_time"], NOW - 5);
        assert_eq!(claims["nonce"], "n1");
        assert_eq!(claims["email"], "alice@example.test");
        assert_eq!(claims["email_verified"], true);
        assert_eq!(claims["roles"], json!(["admin"]));
        assert_eq!(claims["groups"], json!([]));
        assert_eq!(claims["amr"], json!(["pwd"]));
        assert_eq!(claims["tenant"], "acme");
    }

    #[test]
    fn claims_at_userinfo_leaves_only_who_and_how_in_the_id_token() {
        let mut context = context();
        context.claims_at_userinfo = true;
        let mut user = alice();
        user.extra_claims.insert("sid".to_owned(), json!("s1"));
        let claims = id_token_claims(&context, &user, Some("n1"), NOW, AuthMethod::Password);
        for name in [
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
        ] {
            assert!(claims.contains_key(name), "{name}");
        }
        for name in [
            "email",
            "email_verified",
            "name",
            "preferred_username",
            "roles",
            "groups",
            "tenant",
        ] {
            assert!(!claims.contains_key(name), "{name}");
        }
        let served = user_claims(&user);
        assert_eq!(served["roles"], json!(["admin"]));
        assert_eq!(served["email"], "alice@example.test");
    }

    #[test]
    fn omit_kid_signs_with_the_published_key_and_no_kid() {
        let token = issue_id_token(
            &context(),
            &keys(),
            &Misbehavior::OmitKid,
            &alice(),
            None,
            (NOW, AuthMethod::Password),
        )
        .unwrap();
        let decoded = decode_unverified(&token).unwrap();
        assert!(decoded.header.get("kid").is_none());
        assert_eq!(decoded.header["alg"], "RS256");
        assert!(key_at(0)
            .unwrap()
            .verify(decoded.signing_input.as_bytes(), &decoded.signature));
    }

    #[test]
    fn extra_claims_may_replace_amr() {
        let mut user = alice();
        user.extra_claims
            .insert("amr".to_owned(), json!(["webauthn"]));
        let claims = id_token_claims(&context(), &user, None, NOW, AuthMethod::Password);
        assert_eq!(claims["amr"], json!(["webauthn"]));
        assert!(!claims.contains_key("nonce"));
    }

    #[test]
    fn a_passkey_sign_in_says_webauthn_in_amr() {
        let claims = id_token_claims(&context(), &alice(), None, NOW, AuthMethod::Passkey);
        assert_eq!(claims["amr"], json!(["webauthn"]));
        let claims = id_token_claims(&context(), &alice(), None, NOW, AuthMethod::Password);
        assert_eq!(claims["amr"], json!(["pwd"]));
    }

    #[test]
    fn unknown_kid_misbehaviour_signs_with_an_unpublished_key() {
        let token = issue_id_token(
            &context(),
            &keys(),
            &Misbehavior::UnknownKid,
            &alice(),
            None,
            (NOW, AuthMethod::Password),
        )
        .unwrap();
        let decoded = decode_unverified(&token).unwrap();
        let stranger = stranger_key().unwrap();
        assert_eq!(decoded.header["kid"], stranger.kid.as_str());
        assert!(stranger.verify(decoded.signing_input.as_bytes(), &decoded.signature));
    }

    #[test]
    fn access_token_checks_out_only_for_this_issuer_until_it_expires() {
        let key = key_at(0).unwrap();
        let token = issue_access_token(&context(), &key, &alice(), "openid email").unwrap();
        let published = [key];
        let claims = check_access_token(&token, &published, "http://127.0.0.1:9", NOW + 1).unwrap();
        assert_eq!(claims["scope"], "openid email");
        assert_eq!(claims["client_id"], "portico-test");
        assert!(check_access_token(&token, &published, "http://127.0.0.1:8", NOW + 1).is_none());
        assert!(check_access_token(&token, &published, "http://127.0.0.1:9", NOW + 600).is_none());
        let id_token = issue_id_token(
            &context(),
            &keys(),
            &Misbehavior::None,
            &alice(),
            None,
            (NOW, AuthMethod::Password),
        )
        .unwrap();
        assert!(check_access_token(&id_token, &published, "http://127.0.0.1:9", NOW + 1).is_none());
    }
}
