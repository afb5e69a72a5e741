//! WebAuthn checks against vectors made here: the tests play the authenticator, signing with a
//! fixed P-256 key (and the dev OP's RSA key for RS256), so every field can be bent on purpose.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ciborium::Value;
use p256::ecdsa::signature::Signer as _;
use p256::ecdsa::SigningKey;
use serde_json::json;
use sha2::{Digest as _, Sha256};

use super::keys::key_at;
use super::webauthn::*;

const ORIGIN: &str = "http://localhost:4181";
const CHALLENGE: [u8; 32] = [7; 32];
const CREDENTIAL_ID: &[u8] = b"credential-one";
const USER_HANDLE: &[u8] = b"carol";
const PRESENT: u8 = 0x01;
const PRESENT_VERIFIED: u8 = 0x05;
const ATTESTED: u8 = 0x40;

fn relying_party() -> RelyingParty {
    RelyingParty {
        id: "localhost".to_owned(),
        origin: ORIGIN.to_owned(),
    }
}

fn signing_key() -> SigningKey {
    SigningKey::from_slice(&[0x42; 32]).unwrap()
}

fn int(value: i64) -> Value {
    Value::Integer(value.into())
}

fn client_data(kind: &str, challenge: &[u8], origin: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "type": kind,
        "challenge": URL_SAFE_NO_PAD.encode(challenge),
        "origin": origin,
        "crossOrigin": false,
    }))
    .unwrap()
}

fn cose_es256(key: &SigningKey) -> Value {
    let point = key.verifying_key().to_sec1_point(false);
    let bytes = point.as_bytes();
    Value::Map(vec![
        (int(1), int(2)),
        (int(3), int(-7)),
        (int(-1), int(1)),
        (int(-2), Value::Bytes(bytes[1..33].to_vec())),
        (int(-3), Value::Bytes(bytes[33..65].to_vec())),
    ])
}

fn cose_rs256() -> Value {
    let jwk = key_at(0).unwrap().public_jwk();
    let decode = |name: &str| URL_SAFE_NO_PAD.decode(jwk[name].as_str().unwrap()).unwrap();
    Value::Map(vec![
        (int(1), int(3)),
        (int(3), int(-257)),
        (int(-1), Value::Bytes(decode("n"))),
        (int(-2), Value::Bytes(decode("e"))),
    ])
}

fn authenticator_data(
    rp_id: &str,
    flags: u8,
    sign_count: u32,
    attested: Option<(&[u8], &Value)>,
) -> Vec<u8> {
    let mut data = Sha256::digest(rp_id.as_bytes()).to_vec();
    data.push(flags | if attested.is_some() { ATTESTED } else { 0 });
    data.extend_from_slice(&sign_count.to_be_bytes());
    if let Some((credential_id, public_key)) = attested {
        data.extend_from_slice(&[0u8; 16]);
        data.extend_from_slice(&u16::try_from(credential_id.len()).unwrap().to_be_bytes());
        data.extend_from_slice(credential_id);
        ciborium::into_writer(public_key, &mut data).unwrap();
    }
    data
}

fn attestation_object(format: &str, authenticator_data: Vec<u8>) -> Vec<u8> {
    let object = Value::Map(vec![
        (Value::Text("fmt".into()), Value::Text(format.into())),
        (Value::Text("attStmt".into()), Value::Map(Vec::new())),
        (
            Value::Text("authData".into()),
            Value::Bytes(authenticator_data),
        ),
    ]);
    let mut bytes = Vec::new();
    ciborium::into_writer(&object, &mut bytes).unwrap();
    bytes
}

/// A registration as Chromium would post it, with the given parts.
struct Registration {
    client_data_json: Vec<u8>,
    attestation_object: Vec<u8>,
    credential_id: Vec<u8>,
}

impl Registration {
    fn good() -> Registration {
        let key = cose_es256(&signing_key());
        Registration {
            client_data_json: client_data("webauthn.create", &CHALLENGE, ORIGIN),
            attestation_object: attestation_object(
                "none",
                authenticator_data(
                    "localhost",
                    PRESENT_VERIFIED,
                    0,
                    Some((CREDENTIAL_ID, &key)),
                ),
            ),
            credential_id: CREDENTIAL_ID.to_vec(),
        }
    }

    fn verify(&self) -> Result<NewCredential, WebAuthnError> {
        verify_registration(
            &relying_party(),
            &CHALLENGE,
            &RegistrationResponse {
                credential_id: &self.credential_id,
                client_data_json: &self.client_data_json,
                attestation_object: &self.attestation_object,
            },
        )
    }
}

fn stored(public_key: CredentialPublicKey, sign_count: u32) -> StoredCredential {
    StoredCredential {
        id: CREDENTIAL_ID.to_vec(),
        user_handle: USER_HANDLE.to_vec(),
        public_key,
        sign_count,
    }
}

fn es256_stored(sign_count: u32) -> StoredCredential {
    stored(
        CredentialPublicKey::Es256(*signing_key().verifying_key()),
        sign_count,
    )
}

/// An assertion as Chromium would post it, signed by the P-256 test key.
struct Assertion {
    client_data_json: Vec<u8>,
    authenticator_data: Vec<u8>,
    signature: Vec<u8>,
    user_handle: Option<Vec<u8>>,
}

impl Assertion {
    fn signed(client_data_json: Vec<u8>, authenticator_data: Vec<u8>) -> Assertion {
        let mut message = authenticator_data.clone();
        message.extend_from_slice(&Sha256::digest(&client_data_json));
        let signature: p256::ecdsa::Signature = signing_key().sign(&message);
        Assertion {
            client_data_json,
            authenticator_data,
            signature: signature.to_der().as_bytes().to_vec(),
            user_handle: Some(USER_HANDLE.to_vec()),
        }
    }

    fn good(sign_count: u32) -> Assertion {
        Assertion::signed(
            client_data("webauthn.get", &CHALLENGE, ORIGIN),
            authenticator_data("localhost", PRESENT_VERIFIED, sign_count, None),
        )
    }

    fn verify(&self, stored: &StoredCredential) -> Result<VerifiedAssertion, WebAuthnError> {
        verify_assertion(
            &relying_party(),
            &CHALLENGE,
            stored,
            &AssertionResponse {
                client_data_json: &self.client_data_json,
                authenticator_data: &self.authenticator_data,
                signature: &self.signature,
                user_handle: self.user_handle.as_deref(),
            },
        )
    }
}

#[test]
fn es256_registration_returns_the_credential_and_its_counter() {
    let credential = Registration::good().verify().unwrap();
    assert_eq!(credential.id, CREDENTIAL_ID);
    assert_eq!(credential.sign_count, 0);
    assert!(credential.user_verified);
    assert_eq!(credential.public_key.algorithm(), "ES256");
}

#[test]
fn registration_refuses_wrong_type_challenge_origin_or_cross_origin_frame() {
    let cases = [
        (
            client_data("webauthn.get", &CHALLENGE, ORIGIN),
            WebAuthnError::WrongType {
                expected: "webauthn.create",
            },
        ),
        (
            client_data("webauthn.create", &[8; 32], ORIGIN),
            WebAuthnError::WrongChallenge,
        ),
        (
            client_data("webauthn.create", &CHALLENGE, "http://127.0.0.1:4181"),
            WebAuthnError::WrongOrigin("http://127.0.0.1:4181".to_owned()),
        ),
        (
            client_data("webauthn.create", &CHALLENGE, "http://localhost:4180"),
            WebAuthnError::WrongOrigin("http://localhost:4180".to_owned()),
        ),
        (
            serde_json::to_vec(&json!({
                "type": "webauthn.create",
                "challenge": URL_SAFE_NO_PAD.encode(CHALLENGE),
                "origin": ORIGIN,
                "crossOrigin": true,
            }))
            .unwrap(),
            WebAuthnError::CrossOrigin,
        ),
        (b"not json".to_vec(), WebAuthnError::ClientData),
    ];
    for (client_data_json, expected) in cases {
        let registration = Registration {
            client_data_json,
            ..Registration::good()
        };
        assert_eq!(registration.verify().unwrap_err(), expected);
    }
}

#[test]
fn registration_refuses_another_rp_id_or_an_absent_user() {
    let key = cose_es256(&signing_key());
    let other_rp = Registration {
        attestation_object: attestation_object(
            "none",
            authenticator_data("evil.example", PRESENT, 0, Some((CREDENTIAL_ID, &key))),
        ),
        ..Registration::good()
    };
    assert_eq!(other_rp.verify().unwrap_err(), WebAuthnError::WrongRpId);
    let absent = Registration {
        attestation_object: attestation_object(
            "none",
            authenticator_data("localhost", 0, 0, Some((CREDENTIAL_ID, &key))),
        ),
        ..Registration::good()
    };
    assert_eq!(absent.verify().unwrap_err(), WebAuthnError::UserNotPresent);
}

#[test]
fn registration_accepts_attestation_none_only() {
    let key = cose_es256(&signing_key());
    let packed = Registration {
        attestation_object: attestation_object(
            "packed",
            authenticator_data("localhost", PRESENT, 0, Some((CREDENTIAL_ID, &key))),
        ),
        ..Registration::good()
    };
    assert_eq!(
        packed.verify().unwrap_err(),
        WebAuthnError::AttestationFormat("packed".to_owned())
    );
    let garbage = Registration {
        attestation_object: vec![0xff, 0x00],
        ..Registration::good()
    };
    assert_eq!(
        garbage.verify().unwrap_err(),
        WebAuthnError::AttestationObject
    );
}

#[test]
fn registration_refuses_a_missing_or_mismatched_credential_and_trailing_bytes() {
    let no_credential = Registration {
        attestation_object: attestation_object(
            "none",
            authenticator_data("localhost", PRESENT, 0, None),
        ),
        ..Registration::good()
    };
    assert_eq!(
        no_credential.verify().unwrap_err(),
        WebAuthnError::NoCredentialData
    );
    let other_id = Registration {
        credential_id: b"another".to_vec(),
        ..Registration::good()
    };
    assert_eq!(
        other_id.verify().unwrap_err(),
        WebAuthnError::CredentialIdMismatch
    );
    let key = cose_es256(&signing_key());
    let mut data = authenticator_data("localhost", PRESENT, 0, Some((CREDENTIAL_ID, &key)));
    data.push(0);
    let trailing = Registration {
        attestation_object: attestation_object("none", data),
        ..Registration::good()
    };
    assert_eq!(
        trailing.verify().unwrap_err(),
        WebAuthnError::AuthenticatorData
    );
}

#[test]
fn registration_refuses_keys_other_than_es256_and_rs256() {
    let ed25519 = Value::Map(vec![
        (int(1), int(1)),
        (int(3), int(-8)),
        (int(-1), int(6)),
        (int(-2), Value::Bytes(vec![1; 32])),
    ]);
    let not_on_curve = Value::Map(vec![
        (int(1), int(2)),
        (int(3), int(-7)),
        (int(-1), int(1)),
        (int(-2), Value::Bytes(vec![1; 32])),
        (int(-3), Value::Bytes(vec![2; 32])),
    ]);
    for key in [ed25519, not_on_curve] {
        let registration = Registration {
            attestation_object: attestation_object(
                "none",
                authenticator_data("localhost", PRESENT, 0, Some((CREDENTIAL_ID, &key))),
            ),
            ..Registration::good()
        };
        assert!(matches!(
            registration.verify().unwrap_err(),
            WebAuthnError::PublicKey(_)
        ));
    }
}

#[test]
fn assertion_verifies_the_signature_over_authenticator_data_and_client_data_hash() {
    let verified = Assertion::good(1).verify(&es256_stored(0)).unwrap();
    assert_eq!(verified.sign_count, 1);
    assert!(verified.user_verified);
}

#[test]
fn assertion_refuses_a_tampered_signature_client_data_or_key() {
    let mut tampered = Assertion::good(1);
    let last = tampered.signature.len() - 1;
    tampered.signature[last] ^= 1;
    assert_eq!(
        tampered.verify(&es256_stored(0)).unwrap_err(),
        WebAuthnError::Signature
    );

    // Client data swapped after signing: same type, challenge and origin, different bytes.
    let mut swapped = Assertion::good(1);
    swapped.client_data_json = serde_json::to_vec(&json!({
        "type": "webauthn.get",
        "challenge": URL_SAFE_NO_PAD.encode(CHALLENGE),
        "origin": ORIGIN,
    }))
    .unwrap();
    assert_eq!(
        swapped.verify(&es256_stored(0)).unwrap_err(),
        WebAuthnError::Signature
    );

    let other_key = SigningKey::from_slice(&[0x43; 32]).unwrap();
    let other = stored(CredentialPublicKey::Es256(*other_key.verifying_key()), 0);
    assert_eq!(
        Assertion::good(1).verify(&other).unwrap_err(),
        WebAuthnError::Signature
    );
}

#[test]
fn assertion_refuses_wrong_ceremony_challenge_origin_rp_id_and_absent_user() {
    let cases = [
        Assertion::signed(
            client_data("webauthn.create", &CHALLENGE, ORIGIN),
            authenticator_data("localhost", PRESENT, 1, None),
        ),
        Assertion::signed(
            client_data("webauthn.get", &[9; 32], ORIGIN),
            authenticator_data("localhost", PRESENT, 1, None),
        ),
        Assertion::signed(
            client_data("webauthn.get", &CHALLENGE, "http://localhost:9999"),
            authenticator_data("localhost", PRESENT, 1, None),
        ),
        Assertion::signed(
            client_data("webauthn.get", &CHALLENGE, ORIGIN),
            authenticator_data("127.0.0.1", PRESENT, 1, None),
        ),
        Assertion::signed(
            client_data("webauthn.get", &CHALLENGE, ORIGIN),
            authenticator_data("localhost", 0, 1, None),
        ),
    ];
    let expected = [
        WebAuthnError::WrongType {
            expected: "webauthn.get",
        },
        WebAuthnError::WrongChallenge,
        WebAuthnError::WrongOrigin("http://localhost:9999".to_owned()),
        WebAuthnError::WrongRpId,
        WebAuthnError::UserNotPresent,
    ];
    for (assertion, expected) in cases.iter().zip(expected) {
        assert_eq!(assertion.verify(&es256_stored(0)).unwrap_err(), expected);
    }
}

#[test]
fn assertion_counter_must_grow_once_in_use() {
    assert_eq!(
        Assertion::good(5).verify(&es256_stored(5)).unwrap_err(),
        WebAuthnError::CounterNotIncreased
    );
    assert_eq!(
        Assertion::good(4).verify(&es256_stored(5)).unwrap_err(),
        WebAuthnError::CounterNotIncreased
    );
    assert_eq!(
        Assertion::good(0).verify(&es256_stored(5)).unwrap_err(),
        WebAuthnError::CounterNotIncreased
    );
    assert_eq!(
        Assertion::good(6)
            .verify(&es256_stored(5))
            .unwrap()
            .sign_count,
        6
    );
    // An authenticator without a counter reports zero every time.
    assert_eq!(
        Assertion::good(0)
            .verify(&es256_stored(0))
            .unwrap()
            .sign_count,
        0
    );
}

#[test]
fn assertion_refuses_a_user_handle_of_someone_else() {
    let mut assertion = Assertion::good(1);
    assertion.user_handle = Some(b"mallory".to_vec());
    assert_eq!(
        assertion.verify(&es256_stored(0)).unwrap_err(),
        WebAuthnError::UserHandleMismatch
    );
    assertion.user_handle = None;
    assert!(assertion.verify(&es256_stored(0)).is_ok());
}

#[test]
fn rs256_credentials_register_and_sign_in() {
    let key = cose_rs256();
    let registration = Registration {
        attestation_object: attestation_object(
            "none",
            authenticator_data("localhost", PRESENT, 0, Some((CREDENTIAL_ID, &key))),
        ),
        ..Registration::good()
    };
    let credential = registration.verify().unwrap();
    assert_eq!(credential.public_key.algorithm(), "RS256");
    assert!(!credential.user_verified);

    let client_data_json = client_data("webauthn.get", &CHALLENGE, ORIGIN);
    let data = authenticator_data("localhost", PRESENT, 3, None);
    let mut message = data.clone();
    message.extend_from_slice(&Sha256::digest(&client_data_json));
    let signature = key_at(0).unwrap().sign(&message).unwrap();
    let assertion = Assertion {
        client_data_json,
        authenticator_data: data,
        signature,
        user_handle: None,
    };
    let remembered = stored(credential.public_key, 0);
    assert_eq!(assertion.verify(&remembered).unwrap().sign_count, 3);
    let mut forged = assertion;
    forged.signature[0] ^= 1;
    assert_eq!(
        forged.verify(&remembered).unwrap_err(),
        WebAuthnError::Signature
    );
}

#[test]
fn the_challenge_is_found_in_client_data() {
    let client_data_json = client_data("webauthn.get", &CHALLENGE, ORIGIN);
    assert_eq!(
        challenge_in(&client_data_json),
        Some(URL_SAFE_NO_PAD.encode(CHALLENGE))
    );
    assert_eq!(challenge_in(b"{}"), None);
}
