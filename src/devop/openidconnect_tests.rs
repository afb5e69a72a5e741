//! The dev OP driven by the `openidconnect` crate, portico's own OIDC client: proves the wire
//! format is standard, and that each token misbehaviour is refused by its ID token verifier.

use openidconnect::core::{CoreAuthenticationFlow, CoreClient, CoreProviderMetadata};
use openidconnect::{
    AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl, Nonce,
    OAuth2TokenResponse as _, PkceCodeChallenge, RedirectUrl, Scope, TokenResponse as _,
};
use url::Url;

use super::*;

const REDIRECT_URI: &str = "http://127.0.0.1:4180/oauth2/callback";

fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// Discovers `op`, signs in (auto-approve must be on) and exchanges the code; returns a check
/// of the ID token by openidconnect's verifier, and the token response.
async fn sign_in(
    op: &DevOp,
) -> (
    impl Fn() -> Result<(), String>,
    openidconnect::core::CoreTokenResponse,
) {
    let http = http_client();
    let issuer = IssuerUrl::new(op.issuer()).unwrap();
    let metadata = CoreProviderMetadata::discover_async(issuer, &http)
        .await
        .unwrap();
    let client = CoreClient::from_provider_metadata(
        metadata,
        ClientId::new("portico-test".to_owned()),
        Some(ClientSecret::new("devop-secret".to_owned())),
    )
    .set_redirect_uri(RedirectUrl::new(REDIRECT_URI.to_owned()).unwrap());
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, state, nonce) = client
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .add_scope(Scope::new("email".to_owned()))
        .set_pkce_challenge(challenge)
        .url();
    let response = http.get(url).send().await.unwrap();
    let location = Url::parse(response.headers()["location"].to_str().unwrap()).unwrap();
    let parameters: std::collections::HashMap<String, String> =
        location.query_pairs().into_owned().collect();
    assert_eq!(&parameters["state"], state.secret());
    let tokens = client
        .exchange_code(AuthorizationCode::new(parameters["code"].clone()))
        .unwrap()
        .set_pkce_verifier(verifier)
        .request_async(&http)
        .await
        .unwrap();
    let id_token = tokens.id_token().cloned();
    let verify = move || {
        let id_token = id_token.as_ref().ok_or("no ID token")?;
        id_token
            .claims(&client.id_token_verifier(), &nonce)
            .map(|_| ())
            .map_err(|error| error.to_string())
    };
    (verify, tokens)
}

#[tokio::test]
async fn openidconnect_client_signs_in_and_refreshes() {
    let op = DevOp::start(DevOpOptions::default()).await.unwrap();
    op.set_auto_approve(Some("alice".to_owned()));
    let (verify, tokens) = sign_in(&op).await;
    assert_eq!(verify(), Ok(()));
    assert!(tokens.refresh_token().is_some());

    let http = http_client();
    let metadata =
        CoreProviderMetadata::discover_async(IssuerUrl::new(op.issuer()).unwrap(), &http)
            .await
            .unwrap();
    let client = CoreClient::from_provider_metadata(
        metadata,
        ClientId::new("portico-test".to_owned()),
        Some(ClientSecret::new("devop-secret".to_owned())),
    );
    let refresh_token = tokens.refresh_token().unwrap();
    let refreshed = client
        .exchange_refresh_token(refresh_token)
        .unwrap()
        .request_async(&http)
        .await
        .unwrap();
    let id_token = refreshed.id_token().unwrap();
    let claims = id_token
        .claims(&client.id_token_verifier(), |_: Option<&Nonce>| Ok(()))
        .unwrap();
    assert_eq!(claims.subject().as_str(), "alice");
    let reused = client
        .exchange_refresh_token(refresh_token)
        .unwrap()
        .request_async(&http)
        .await;
    assert!(reused.is_err());
}

#[tokio::test]
async fn openidconnect_verifier_refuses_every_bad_id_token() {
    let op = DevOp::start(DevOpOptions::default()).await.unwrap();
    op.set_auto_approve(Some("alice".to_owned()));
    for misbehavior in [
        Misbehavior::BadSignature,
        Misbehavior::WrongIssuer,
        Misbehavior::WrongAudience,
        Misbehavior::ExtraAudience("api".to_owned()),
        Misbehavior::Expired,
        Misbehavior::WrongNonce,
        Misbehavior::OmitNonce,
        Misbehavior::AlgNone,
        Misbehavior::HmacWithClientSecret,
        Misbehavior::UnknownKid,
    ] {
        op.set_misbehavior(misbehavior.clone());
        let (verify, _) = sign_in(&op).await;
        assert!(verify().is_err(), "{misbehavior:?} was accepted");
    }
}
