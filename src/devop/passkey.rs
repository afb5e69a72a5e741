//! "Sign in with a passkey" at the dev OP: `POST /authorize/passkey`.
//!
//! Every rendering of the sign-in page gets a fresh random challenge, remembered with the
//! authorization request it was shown for (a [`Ceremonies`] entry, ten minutes, single use).
//! The page's script runs `navigator.credentials.create()` or `.get()` with it and posts the
//! answer here. The challenge inside the answer finds (and consumes) the ceremony, so a
//! passkey answer can only finish the very login it was started for. Registration stores the
//! credential and shows the page again; an assertion signs the user in with
//! `amr = ["webauthn"]`, exactly as the username form does with `["pwd"]`.
//!
//! WebAuthn needs an RP ID that is a host name, so passkeys are offered only when the issuer's
//! host is one (`DevOpOptions::public_host = Some("localhost")`).

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use rand::RngCore as _;
use url::{Host, Url};

use super::authorize::{approve, login_page, parse_form, refuse, validate_request};
use super::grants::AuthMethod;
use super::pages::{error_page, Notice};
use super::state::SharedState;
use super::webauthn::{
    challenge_in, verify_assertion, verify_registration, AssertionResponse, NewCredential,
    RegistrationResponse, RelyingParty, StoredCredential,
};

/// Seconds a sign-in page's passkey challenge stays usable.
pub(crate) const CEREMONY_LIFETIME_SECONDS: u64 = 600;
/// Most challenges outstanding at once; the oldest goes first beyond that.
const MAX_PENDING_CEREMONIES: usize = 10_000;

/// The RP for an issuer URL: its origin, and its host as RP ID when the host is a name.
pub(crate) fn relying_party_for(issuer: &str) -> Option<RelyingParty> {
    let url = Url::parse(issuer).ok()?;
    let Some(Host::Domain(host)) = url.host() else {
        return None;
    };
    Some(RelyingParty {
        id: host.to_ascii_lowercase(),
        origin: url.origin().ascii_serialization(),
    })
}

/// A challenge handed to one sign-in page, and the authorization request it belongs to.
struct PendingCeremony {
    request_fields: HashMap<String, String>,
    expires_at: u64,
}

/// Outstanding passkey challenges, keyed by their base64url text.
#[derive(Default)]
pub(crate) struct Ceremonies {
    pending: HashMap<String, PendingCeremony>,
}

impl Ceremonies {
    /// A new challenge for the sign-in page of this authorization request.
    pub fn begin(&mut self, request_fields: HashMap<String, String>, now: u64) -> String {
        self.pending.retain(|_, ceremony| ceremony.expires_at > now);
        if self.pending.len() >= MAX_PENDING_CEREMONIES {
            let oldest = self
                .pending
                .iter()
                .min_by_key(|(_, ceremony)| ceremony.expires_at)
                .map(|(challenge, _)| challenge.clone());
            if let Some(oldest) = oldest {
                self.pending.remove(&oldest);
            }
        }
        let mut bytes = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        let challenge = URL_SAFE_NO_PAD.encode(bytes);
        self.pending.insert(
            challenge.clone(),
            PendingCeremony {
                request_fields,
                expires_at: now + CEREMONY_LIFETIME_SECONDS,
            },
        );
        challenge
    }

    /// The authorization request `challenge` was issued for; the challenge is spent either way.
    pub fn take(&mut self, challenge: &str, now: u64) -> Option<HashMap<String, String>> {
        let ceremony = self.pending.remove(challenge)?;
        (ceremony.expires_at > now).then_some(ceremony.request_fields)
    }
}

/// A registered passkey and whose it is.
struct Passkey {
    sub: String,
    credential: StoredCredential,
}

/// Every passkey registered at this dev OP (in memory, like its users).
#[derive(Default)]
pub(crate) struct PasskeyStore {
    passkeys: Vec<Passkey>,
}

impl PasskeyStore {
    /// Remembers `credential` for `sub`; false when its id is already registered.
    fn add(&mut self, sub: &str, credential: NewCredential) -> bool {
        if self.find(&credential.id).is_some() {
            return false;
        }
        self.passkeys.push(Passkey {
            sub: sub.to_owned(),
            credential: StoredCredential {
                id: credential.id,
                user_handle: sub.as_bytes().to_vec(),
                public_key: credential.public_key,
                sign_count: credential.sign_count,
            },
        });
        true
    }

    fn find(&self, credential_id: &[u8]) -> Option<&Passkey> {
        self.passkeys
            .iter()
            .find(|passkey| passkey.credential.id == credential_id)
    }

    fn set_sign_count(&mut self, credential_id: &[u8], sign_count: u32) {
        if let Some(passkey) = self
            .passkeys
            .iter_mut()
            .find(|passkey| passkey.credential.id == credential_id)
        {
            passkey.credential.sign_count = sign_count;
        }
    }
}

/// A base64url form field, decoded (padding tolerated).
fn decoded(fields: &HashMap<String, String>, name: &str) -> Option<Vec<u8>> {
    let value = fields.get(name)?.trim().trim_end_matches('=');
    URL_SAFE_NO_PAD.decode(value).ok()
}

fn refused(shared: &SharedState) {
    shared.lock().stats.passkeys_refused += 1;
}

/// `POST /authorize/passkey`: the answer of `navigator.credentials.create()` or `.get()`.
pub(crate) async fn passkey_submit(
    State(shared): State<Arc<SharedState>>,
    body: Bytes,
) -> Response {
    let fields = parse_form(&body);
    let Some(relying_party) = shared.relying_party.clone() else {
        refused(&shared);
        return error_page(
            StatusCode::BAD_REQUEST,
            "Passkeys need the dev OP on a host name such as http://localhost:PORT.",
        );
    };
    let Some(client_data_json) = decoded(&fields, "client_data_json") else {
        refused(&shared);
        return error_page(StatusCode::BAD_REQUEST, "The passkey answer is incomplete.");
    };
    let now = shared.now();
    let ceremony = challenge_in(&client_data_json).and_then(|challenge| {
        let request_fields = shared.lock().ceremonies.take(&challenge, now)?;
        Some((challenge, request_fields))
    });
    let Some((challenge_text, request_fields)) = ceremony else {
        refused(&shared);
        tracing::warn!("dev OP refused a passkey answer with an unknown or used challenge");
        return error_page(
            StatusCode::BAD_REQUEST,
            "This sign-in page has expired or was already used. Go back to the application \
             and sign in again.",
        );
    };
    let challenge = URL_SAFE_NO_PAD.decode(&challenge_text).unwrap_or_default();
    let misbehavior = shared.misbehavior();
    let request = match validate_request(&shared, &misbehavior, &request_fields) {
        Ok(request) => request,
        Err(refusal) => return refuse(&shared, &misbehavior, refusal),
    };
    let again = |notice: Notice| login_page(&shared, &request_fields, Some(notice));
    match fields.get("ceremony").map(String::as_str) {
        Some("register") => {
            let username = fields
                .get("username")
                .map(|name| name.trim())
                .unwrap_or_default();
            if username.is_empty() {
                refused(&shared);
                return again(Notice::error("Enter a username for the new passkey."));
            }
            let credential_id = decoded(&fields, "credential_id").unwrap_or_default();
            let attestation_object = decoded(&fields, "attestation_object").unwrap_or_default();
            let response = RegistrationResponse {
                credential_id: &credential_id,
                client_data_json: &client_data_json,
                attestation_object: &attestation_object,
            };
            match verify_registration(&relying_party, &challenge, &response) {
                Ok(credential) => {
                    let algorithm = credential.public_key.algorithm();
                    let user_verified = credential.user_verified;
                    let added = {
                        let mut mutable = shared.lock();
                        let added = mutable.passkeys.add(username, credential);
                        if added {
                            mutable.stats.passkeys_registered += 1;
                        }
                        added
                    };
                    if !added {
                        refused(&shared);
                        return again(Notice::error("This passkey is already registered."));
                    }
                    tracing::info!(
                        sub = username,
                        algorithm,
                        user_verified,
                        "dev OP registered a passkey"
                    );
                    let mut with_username = request_fields.clone();
                    with_username.insert("username".to_owned(), username.to_owned());
                    login_page(
                        &shared,
                        &with_username,
                        Some(Notice::info(format!(
                            "Passkey saved for {username}. Sign in with it now."
                        ))),
                    )
                }
                Err(error) => {
                    refused(&shared);
                    tracing::warn!(reason = %error, "dev OP refused a passkey registration");
                    again(Notice::error(format!(
                        "The passkey was not saved: {error}."
                    )))
                }
            }
        }
        Some("sign_in") => {
            let credential_id = decoded(&fields, "credential_id").unwrap_or_default();
            let authenticator_data = decoded(&fields, "authenticator_data").unwrap_or_default();
            let signature = decoded(&fields, "signature").unwrap_or_default();
            let user_handle = decoded(&fields, "user_handle").filter(|handle| !handle.is_empty());
            let known = {
                let mutable = shared.lock();
                mutable
                    .passkeys
                    .find(&credential_id)
                    .map(|passkey| (passkey.sub.clone(), passkey.credential.clone()))
            };
            let Some((sub, stored)) = known else {
                refused(&shared);
                return again(Notice::error(
                    "This passkey is not registered here. Create one first.",
                ));
            };
            let response = AssertionResponse {
                client_data_json: &client_data_json,
                authenticator_data: &authenticator_data,
                signature: &signature,
                user_handle: user_handle.as_deref(),
            };
            match verify_assertion(&relying_party, &challenge, &stored, &response) {
                Ok(verified) => {
                    shared
                        .lock()
                        .passkeys
                        .set_sign_count(&credential_id, verified.sign_count);
                    tracing::info!(
                        sub,
                        user_verified = verified.user_verified,
                        "dev OP accepted a passkey"
                    );
                    approve(&shared, &misbehavior, request, &sub, AuthMethod::Passkey)
                }
                Err(error) => {
                    refused(&shared);
                    tracing::warn!(reason = %error, "dev OP refused a passkey sign-in");
                    again(Notice::error(format!(
                        "The passkey sign-in failed: {error}."
                    )))
                }
            }
        }
        _ => {
            refused(&shared);
            again(Notice::error("Unknown passkey ceremony."))
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly
mod tests {
    use super::*;

    fn fields(state: &str) -> HashMap<String, String> {
        HashMap::from([("state".to_owned(), state.to_owned())])
    }

    #[test]
    fn a_challenge_finishes_only_its_own_login_once_and_in_time() {
        let mut ceremonies = Ceremonies::default();
        let first = ceremonies.begin(fields("s1"), 1_000);
        let second = ceremonies.begin(fields("s2"), 1_000);
        assert_ne!(first, second);
        assert_eq!(URL_SAFE_NO_PAD.decode(&first).unwrap().len(), 32);
        assert_eq!(ceremonies.take(&second, 1_001).unwrap()["state"], "s2");
        assert!(ceremonies.take(&second, 1_001).is_none(), "single use");
        assert!(ceremonies.take("made-up", 1_001).is_none());
        let expired = 1_000 + CEREMONY_LIFETIME_SECONDS;
        assert!(ceremonies.take(&first, expired).is_none(), "expired");
    }

    #[test]
    fn outstanding_challenges_are_bounded() {
        let mut ceremonies = Ceremonies::default();
        let oldest = ceremonies.begin(fields("old"), 1);
        for _ in 0..MAX_PENDING_CEREMONIES {
            ceremonies.begin(fields("new"), 2);
        }
        assert_eq!(ceremonies.pending.len(), MAX_PENDING_CEREMONIES);
        assert!(ceremonies.take(&oldest, 3).is_none());
    }

    #[test]
    fn passkeys_are_offered_only_on_a_host_name() {
        let localhost = relying_party_for("http://localhost:4181").unwrap();
        assert_eq!(localhost.id, "localhost");
        assert_eq!(localhost.origin, "http://localhost:4181");
        assert!(relying_party_for("http://127.0.0.1:4181").is_none());
        assert!(relying_party_for("http://[::1]:4181").is_none());
    }
}
