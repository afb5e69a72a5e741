//! The dev OP over real HTTP: discovery, JWKS, the sign-in round trip, rotation, misbehaviour.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use reqwest::header::LOCATION;
use reqwest::StatusCode;
use rsa::pkcs1v15::{Signature, VerifyingKey};
use rsa::signature::Verifier as _;
use rsa::{BigUint, RsaPublicKey};
use serde_json::Value;
use sha2::Sha256;
use url::Url;

use super::jwt::decode_unverified;
use super::*;

// RFC 7636 appendix B.
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
const REDIRECT_URI: &str = "http://127.0.0.1:4180/oauth2/callback";

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn authorize_url(op: &DevOp) -> String {
    let mut url = Url::parse(&format!("{}/authorize", op.issuer())).unwrap();
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", "portico-test")
        .append_pair("redirect_uri", REDIRECT_URI)
        .append_pair("scope", "openid profile email")
        .append_pair("state", "state-1")
        .append_pair("nonce", "nonce-1")
        .append_pair("code_challenge", CHALLENGE)
        .append_pair("code_challenge_method", "S256");
    url.to_string()
}

/// The callback parameters of a 302 back to the client.
fn callback_parameters(response: &reqwest::Response) -> std::collections::HashMap<String, String> {
    assert_eq!(response.status(), StatusCode::FOUND);
    let location = response.headers()[LOCATION].to_str().unwrap();
    assert!(location.starts_with(REDIRECT_URI), "{location}");
    Url::parse(location)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect()
}

async fn exchange(op: &DevOp, code: &str) -> reqwest::Response {
    client()
        .post(format!("{}/token", op.issuer()))
        .basic_auth("portico-test", Some("devop-secret"))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", REDIRECT_URI),
            ("code_verifier", VERIFIER),
        ])
        .send()
        .await
        .unwrap()
}

async fn refresh(op: &DevOp, refresh_token: &str) -> reqwest::Response {
    client()
        .post(format!("{}/token", op.issuer()))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
            ("client_id", "portico-test"),
            ("client_secret", "devop-secret"),
        ])
        .send()
        .await
        .unwrap()
}

async fn jwks(op: &DevOp) -> Value {
    client()
        .get(format!("{}/jwks", op.issuer()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Verifies an RS256 token against the published JWKS, as a relying party would.
fn verify_with_jwks(token: &str, jwks: &Value) -> serde_json::Map<String, Value> {
    let decoded = decode_unverified(token).unwrap();
    let jwk = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|jwk| jwk["kid"] == decoded.header["kid"])
        .expect("kid in the JWKS");
    let number = |member: &str| {
        BigUint::from_bytes_be(
            &URL_SAFE_NO_PAD
                .decode(jwk[member].as_str().unwrap())
                .unwrap(),
        )
    };
    let public_key = RsaPublicKey::new(number("n"), number("e")).unwrap();
    let signature = Signature::try_from(decoded.signature.as_slice()).unwrap();
    VerifyingKey::<Sha256>::new(public_key)
        .verify(decoded.signing_input.as_bytes(), &signature)
        .expect("signature verifies with the JWKS key");
    decoded.claims
}

#[tokio::test]
async fn discovery_document_names_every_endpoint() {
    let op = DevOp::start(DevOpOptions::default()).await.unwrap();
    let issuer = op.issuer();
    assert_eq!(issuer, format!("http://127.0.0.1:{}", op.addr().port()));
    let url = format!("{issuer}/.well-known/openid-configuration");
    let document: Value = client()
        .get(url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(document["issuer"], issuer.as_str());
    assert_eq!(
        document["authorization_endpoint"],
        format!("{issuer}/authorize")
    );
    assert_eq!(document["token_endpoint"], format!("{issuer}/token"));
    assert_eq!(document["jwks_uri"], format!("{issuer}/jwks"));
    assert_eq!(
        document["end_session_endpoint"],
        format!("{issuer}/end_session")
    );
    assert_eq!(
        document["code_challenge_methods_supported"],
        serde_json::json!(["S256"])
    );
    assert_eq!(
        document["authorization_response_iss_parameter_supported"],
        true
    );
    assert_eq!(
        document["token_endpoint_auth_methods_supported"],
        serde_json::json!(["client_secret_basic", "client_secret_post"])
    );
    assert_eq!(op.stats().discovery_requests, 1);
}

#[tokio::test]
async fn sign_in_round_trip_with_pkce_then_rotating_refresh() {
    let op = DevOp::start(DevOpOptions::default()).await.unwrap();
    let page = client().get(authorize_url(&op)).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    assert!(html.contains("<title>dev OP — sign in</title>"));
    // The username starts empty; alice is offered as a chip.
    assert!(html.contains("id=\"username\" name=\"username\" value=\"\""));
    assert!(html.contains("name=\"chosen_user\" value=\"alice\""));
    // Nothing from elsewhere: one stylesheet, from this OP itself, and no script (passkeys
    // are off on an IP-address issuer).
    let stylesheet = format!("{}/assets/portico.css", op.issuer());
    assert_eq!(html.matches("<link").count(), 1);
    assert!(html.contains(&format!("<link rel=\"stylesheet\" href=\"{stylesheet}\">")));
    assert!(!html.contains("<script"));
    let css = client().get(&stylesheet).send().await.unwrap();
    assert_eq!(css.status(), StatusCode::OK);
    assert_eq!(css.headers()["content-type"], "text/css; charset=utf-8");

    let mut form: Vec<(String, String)> = Url::parse(&authorize_url(&op))
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect();
    form.push(("username".to_owned(), "bob".to_owned()));
    let submitted = client()
        .post(format!("{}/authorize", op.issuer()))
        .form(&form)
        .send()
        .await
        .unwrap();
    let callback = callback_parameters(&submitted);
    assert_eq!(callback["state"], "state-1");
    assert_eq!(callback["iss"], op.issuer());

    let tokens: Value = exchange(&op, &callback["code"]).await.json().await.unwrap();
    assert_eq!(tokens["token_type"], "Bearer");
    assert_eq!(tokens["expires_in"], 300);
    assert_eq!(tokens["scope"], "openid profile email");
    let published = jwks(&op).await;
    let claims = verify_with_jwks(tokens["id_token"].as_str().unwrap(), &published);
    assert_eq!(claims["sub"], "bob");
    assert_eq!(claims["nonce"], "nonce-1");
    assert_eq!(claims["iss"], op.issuer());
    verify_with_jwks(tokens["access_token"].as_str().unwrap(), &published);

    let reused = exchange(&op, &callback["code"]).await;
    assert_eq!(reused.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        reused.json::<Value>().await.unwrap()["error"],
        "invalid_grant"
    );

    let userinfo: Value = client()
        .get(format!("{}/userinfo", op.issuer()))
        .bearer_auth(tokens["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(userinfo["sub"], "bob");
    assert_eq!(userinfo["email"], "bob@example.test");

    let first_refresh = tokens["refresh_token"].as_str().unwrap();
    let refreshed: Value = refresh(&op, first_refresh).await.json().await.unwrap();
    let refreshed_claims = verify_with_jwks(refreshed["id_token"].as_str().unwrap(), &published);
    assert_eq!(refreshed_claims["sub"], "bob");
    assert!(!refreshed_claims.contains_key("nonce"));
    assert_ne!(refreshed["refresh_token"], tokens["refresh_token"]);
    let reused = refresh(&op, first_refresh).await;
    assert_eq!(reused.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        refresh(&op, refreshed["refresh_token"].as_str().unwrap())
            .await
            .status(),
        StatusCode::OK
    );

    let stats = op.stats();
    assert_eq!(
        (
            stats.authorize_requests,
            stats.code_exchanges,
            stats.refreshes
        ),
        (1, 2, 3)
    );
}

#[tokio::test]
async fn auto_approve_redirects_at_once_and_records_the_query() {
    let op = DevOp::start(DevOpOptions::default()).await.unwrap();
    op.set_auto_approve(Some("alice".to_owned()));
    let response = client().get(authorize_url(&op)).send().await.unwrap();
    let callback = callback_parameters(&response);
    let tokens: Value = exchange(&op, &callback["code"]).await.json().await.unwrap();
    let claims = decode_unverified(tokens["id_token"].as_str().unwrap())
        .unwrap()
        .claims;
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["roles"], serde_json::json!(["admin"]));
    let recorded = op.stats().last_authorize_query.unwrap();
    assert!(recorded.contains("code_challenge_method=S256"));
}

#[tokio::test]
async fn rotate_keys_publishes_only_the_new_kid() {
    let op = DevOp::start(DevOpOptions::default()).await.unwrap();
    let before = jwks(&op).await;
    op.rotate_keys();
    let after = jwks(&op).await;
    assert_eq!(after["keys"].as_array().unwrap().len(), 1);
    assert_ne!(before["keys"][0]["kid"], after["keys"][0]["kid"]);
    op.set_auto_approve(Some("alice".to_owned()));
    let callback = callback_parameters(&client().get(authorize_url(&op)).send().await.unwrap());
    let tokens: Value = exchange(&op, &callback["code"]).await.json().await.unwrap();
    verify_with_jwks(tokens["id_token"].as_str().unwrap(), &after);
    assert_eq!(op.stats().jwks_requests, 2);
}

#[tokio::test]
async fn unregistered_redirect_uri_gets_a_page_never_a_redirect() {
    let options = DevOpOptions {
        redirect_uris: vec![REDIRECT_URI.to_owned()],
        ..DevOpOptions::default()
    };
    let op = DevOp::start(options).await.unwrap();
    let url = authorize_url(&op).replace("4180", "4181");
    let response = client().get(url).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(response.headers().get(LOCATION).is_none());
}

#[tokio::test]
async fn token_endpoint_requires_client_authentication() {
    let op = DevOp::start(DevOpOptions::default()).await.unwrap();
    let response = client()
        .post(format!("{}/token", op.issuer()))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", "x"),
            ("client_id", "portico-test"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(response.headers().contains_key("www-authenticate"));
    assert_eq!(
        response.json::<Value>().await.unwrap()["error"],
        "invalid_client"
    );
}

#[tokio::test]
async fn endpoint_misbehaviours_show_on_the_wire() {
    let op = DevOp::start(DevOpOptions::default()).await.unwrap();
    op.set_auto_approve(Some("alice".to_owned()));

    op.set_misbehavior(Misbehavior::AuthorizeError);
    let denied = callback_parameters(&client().get(authorize_url(&op)).send().await.unwrap());
    assert_eq!(denied["error"], "access_denied");
    assert_eq!(denied["state"], "state-1");

    op.set_misbehavior(Misbehavior::WrongIssParam);
    let callback = callback_parameters(&client().get(authorize_url(&op)).send().await.unwrap());
    assert_eq!(callback["iss"], format!("{}/other", op.issuer()));

    op.set_misbehavior(Misbehavior::TokenEndpointError);
    let failed = exchange(&op, &callback["code"]).await;
    assert_eq!(failed.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        failed.json::<Value>().await.unwrap()["error"],
        "invalid_grant"
    );

    op.set_misbehavior(Misbehavior::DiscoveryWrongIssuer);
    let url = format!("{}/.well-known/openid-configuration", op.issuer());
    let document: Value = client()
        .get(&url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_ne!(document["issuer"], op.issuer());

    op.set_misbehavior(Misbehavior::Unavailable);
    assert_eq!(
        client().get(&url).send().await.unwrap().status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    op.set_misbehavior(Misbehavior::None);
    assert_eq!(
        client().get(&url).send().await.unwrap().status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn end_session_redirects_with_state_or_shows_a_page() {
    let op = DevOp::start(DevOpOptions::default()).await.unwrap();
    let url = format!(
        "{}/end_session?post_logout_redirect_uri=http%3A%2F%2F127.0.0.1%3A4180%2Fbye&state=s9",
        op.issuer()
    );
    let response = client().get(url).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::FOUND);
    assert_eq!(
        response.headers()[LOCATION],
        "http://127.0.0.1:4180/bye?state=s9"
    );
    let page = client()
        .get(format!("{}/end_session", op.issuer()))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert!(page
        .text()
        .await
        .unwrap()
        .contains("Signed out of the dev OP"));
    assert_eq!(op.stats().end_session_requests, 2);
}

#[tokio::test]
async fn shutdown_and_drop_stop_the_server() {
    let op = DevOp::start(DevOpOptions::default()).await.unwrap();
    let url = format!("{}/jwks", op.issuer());
    assert!(client().get(&url).send().await.is_ok());
    op.shutdown();
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert!(client().get(&url).send().await.is_err());

    let other = DevOp::start(DevOpOptions::default()).await.unwrap();
    let url = format!("{}/jwks", other.issuer());
    drop(other);
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert!(client().get(&url).send().await.is_err());
}

/// The `data-challenge` of a sign-in page.
fn page_challenge(html: &str) -> String {
    html.split("data-challenge=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn passkey_answers_need_a_live_challenge_of_this_op_and_work_once() {
    let op = DevOp::start(DevOpOptions {
        public_host: Some("localhost".to_owned()),
        ..DevOpOptions::default()
    })
    .await
    .unwrap();
    let page = client().get(authorize_url(&op)).send().await.unwrap();
    let html = page.text().await.unwrap();
    assert!(html.contains("data-rp-id=\"localhost\""), "{html}");
    let challenge = page_challenge(&html);
    let post = |challenge: String| {
        let client_data = serde_json::json!({
            "type": "webauthn.get",
            "challenge": challenge,
            "origin": op.issuer(),
        });
        let form = [
            ("ceremony", "sign_in".to_owned()),
            ("credential_id", URL_SAFE_NO_PAD.encode(b"never-registered")),
            (
                "client_data_json",
                URL_SAFE_NO_PAD.encode(client_data.to_string()),
            ),
        ];
        client()
            .post(format!("{}/authorize/passkey", op.issuer()))
            .form(&form)
            .send()
    };

    // A challenge this OP never handed out finishes nothing.
    let made_up = post(URL_SAFE_NO_PAD.encode([1u8; 32])).await.unwrap();
    assert_eq!(made_up.status(), StatusCode::BAD_REQUEST);
    assert!(made_up
        .text()
        .await
        .unwrap()
        .contains("expired or was already used"));

    // The page's own challenge: the (unknown) passkey is refused on the sign-in page, which
    // comes back with a new challenge for the same authorization request...
    let refused = post(challenge.clone()).await.unwrap();
    assert_eq!(refused.status(), StatusCode::OK);
    let again = refused.text().await.unwrap();
    assert!(again.contains("not registered here"), "{again}");
    assert!(again.contains("value=\"state-1\""), "{again}");
    assert_ne!(page_challenge(&again), challenge);
    // ...and the spent challenge cannot be used a second time.
    let replayed = post(challenge).await.unwrap();
    assert_eq!(replayed.status(), StatusCode::BAD_REQUEST);
    assert_eq!(op.stats().passkeys_refused, 3);
    assert_eq!(op.stats().logins, 0);
}

#[tokio::test]
async fn passkeys_are_not_offered_when_the_issuer_is_an_ip_address() {
    let op = DevOp::start(DevOpOptions::default()).await.unwrap();
    let html = client()
        .get(authorize_url(&op))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!html.contains("data-challenge"));
    assert!(html.contains("Passkeys are off"), "{html}");
}
