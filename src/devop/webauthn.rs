//! The WebAuthn relying-party checks behind the dev OP's passkeys (Web Authentication Level 2,
//! §7.1 registering a credential and §7.2 verifying an assertion).
//!
//! Only what a dev OP on `localhost` needs: attestation `"none"`, ES256 and RS256 credential
//! keys, no extensions. These are plain functions over bytes, with the expected challenge,
//! origin and RP ID passed in, so each check is unit-tested with vectors the tests sign
//! themselves (`webauthn_tests.rs`). A check that fails names what was wrong; none of them
//! echoes key material or signatures.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ciborium::Value;
use p256::ecdsa::signature::Verifier as _;
use serde::Deserialize;
use sha2::{Digest as _, Sha256};

/// COSE algorithm identifiers (RFC 9053) this RP accepts.
pub(crate) const COSE_ES256: i64 = -7;
pub(crate) const COSE_RS256: i64 = -257;

/// Authenticator data flags (§6.1).
const FLAG_USER_PRESENT: u8 = 0x01;
const FLAG_USER_VERIFIED: u8 = 0x04;
const FLAG_ATTESTED_CREDENTIAL_DATA: u8 = 0x40;
const FLAG_EXTENSION_DATA: u8 = 0x80;

/// Smallest RSA modulus accepted for RS256 credentials, in bits.
const MINIMUM_RSA_BITS: usize = 2048;

/// Who the credentials are for: the RP ID (a host name, never an IP address) and the one
/// origin the ceremonies may run on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RelyingParty {
    pub id: String,
    pub origin: String,
}

/// A credential's public key.
#[derive(Clone, Debug)]
pub(crate) enum CredentialPublicKey {
    Es256(p256::ecdsa::VerifyingKey),
    Rs256(rsa::pkcs1v15::VerifyingKey<Sha256>),
}

impl CredentialPublicKey {
    fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        match self {
            CredentialPublicKey::Es256(key) => p256::ecdsa::Signature::from_der(signature)
                .is_ok_and(|signature| key.verify(message, &signature).is_ok()),
            CredentialPublicKey::Rs256(key) => rsa::pkcs1v15::Signature::try_from(signature)
                .is_ok_and(|signature| {
                    rsa::signature::Verifier::verify(key, message, &signature).is_ok()
                }),
        }
    }

    /// "ES256" or "RS256", for logs and pages.
    pub fn algorithm(&self) -> &'static str {
        match self {
            CredentialPublicKey::Es256(_) => "ES256",
            CredentialPublicKey::Rs256(_) => "RS256",
        }
    }
}

/// What `navigator.credentials.create()` returned, as posted by the page.
pub(crate) struct RegistrationResponse<'a> {
    /// `rawId`.
    pub credential_id: &'a [u8],
    pub client_data_json: &'a [u8],
    pub attestation_object: &'a [u8],
}

/// A credential that passed registration.
#[derive(Clone, Debug)]
pub(crate) struct NewCredential {
    pub id: Vec<u8>,
    pub public_key: CredentialPublicKey,
    pub sign_count: u32,
    pub user_verified: bool,
}

/// What `navigator.credentials.get()` returned, as posted by the page.
pub(crate) struct AssertionResponse<'a> {
    pub client_data_json: &'a [u8],
    pub authenticator_data: &'a [u8],
    pub signature: &'a [u8],
    /// `userHandle`: present for discoverable credentials.
    pub user_handle: Option<&'a [u8]>,
}

/// A registered credential, as the RP remembers it.
#[derive(Clone, Debug)]
pub(crate) struct StoredCredential {
    pub id: Vec<u8>,
    pub user_handle: Vec<u8>,
    pub public_key: CredentialPublicKey,
    pub sign_count: u32,
}

/// A successful assertion.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct VerifiedAssertion {
    /// The counter to remember from now on.
    pub sign_count: u32,
    pub user_verified: bool,
}

/// Why a ceremony's answer was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum WebAuthnError {
    #[error("the client data is not valid JSON")]
    ClientData,
    #[error("the client data is for another ceremony (expected {expected})")]
    WrongType { expected: &'static str },
    #[error("the challenge is not the one this page was given")]
    WrongChallenge,
    #[error("the origin {0} is not this provider's")]
    WrongOrigin(String),
    #[error("the ceremony ran in a cross-origin frame")]
    CrossOrigin,
    #[error("the authenticator data is malformed")]
    AuthenticatorData,
    #[error("the credential is for another relying party (RP ID hash differs)")]
    WrongRpId,
    #[error("the authenticator did not report user presence")]
    UserNotPresent,
    #[error("the attestation object is malformed")]
    AttestationObject,
    #[error("attestation format {0:?} is not accepted (only \"none\")")]
    AttestationFormat(String),
    #[error("the authenticator data carries no credential")]
    NoCredentialData,
    #[error("the credential id differs from the one in the authenticator data")]
    CredentialIdMismatch,
    #[error("unsupported credential public key: {0}")]
    PublicKey(&'static str),
    #[error("the user handle does not belong to this credential")]
    UserHandleMismatch,
    #[error("the signature does not verify")]
    Signature,
    #[error("the signature counter did not increase (a cloned authenticator?)")]
    CounterNotIncreased,
}

#[derive(Deserialize)]
struct ClientData {
    #[serde(rename = "type")]
    kind: String,
    challenge: String,
    origin: String,
    #[serde(rename = "crossOrigin", default)]
    cross_origin: Option<bool>,
}

/// The challenge a client data JSON names (base64url text as the browser wrote it), to find
/// the ceremony it answers. Says nothing about validity.
pub(crate) fn challenge_in(client_data_json: &[u8]) -> Option<String> {
    serde_json::from_slice::<ClientData>(client_data_json)
        .ok()
        .map(|client_data| client_data.challenge)
}

/// Steps 7–12 of §7.1 and 10–14 of §7.2: type, challenge, origin, not cross-origin.
fn check_client_data(
    relying_party: &RelyingParty,
    challenge: &[u8],
    client_data_json: &[u8],
    expected_type: &'static str,
) -> Result<(), WebAuthnError> {
    let client_data: ClientData =
        serde_json::from_slice(client_data_json).map_err(|_| WebAuthnError::ClientData)?;
    if client_data.kind != expected_type {
        return Err(WebAuthnError::WrongType {
            expected: expected_type,
        });
    }
    let named = URL_SAFE_NO_PAD
        .decode(client_data.challenge.trim_end_matches('='))
        .map_err(|_| WebAuthnError::WrongChallenge)?;
    if !same_bytes(&named, challenge) {
        return Err(WebAuthnError::WrongChallenge);
    }
    if client_data.origin != relying_party.origin {
        return Err(WebAuthnError::WrongOrigin(
            client_data.origin.chars().take(100).collect(),
        ));
    }
    if client_data.cross_origin == Some(true) {
        return Err(WebAuthnError::CrossOrigin);
    }
    Ok(())
}

/// Compares without stopping at the first difference.
fn same_bytes(left: &[u8], right: &[u8]) -> bool {
    left.len() == right.len()
        && left
            .iter()
            .zip(right)
            .fold(0u8, |difference, (a, b)| difference | (a ^ b))
            == 0
}

/// Authenticator data (§6.1), parsed.
struct AuthenticatorData {
    rp_id_hash: [u8; 32],
    flags: u8,
    sign_count: u32,
    /// Credential id and COSE public key, when the AT flag is set.
    attested: Option<(Vec<u8>, Value)>,
}

fn parse_authenticator_data(bytes: &[u8]) -> Result<AuthenticatorData, WebAuthnError> {
    let malformed = || WebAuthnError::AuthenticatorData;
    let rp_id_hash: [u8; 32] = bytes
        .get(..32)
        .and_then(|slice| slice.try_into().ok())
        .ok_or_else(malformed)?;
    let flags = *bytes.get(32).ok_or_else(malformed)?;
    let counter: [u8; 4] = bytes
        .get(33..37)
        .and_then(|slice| slice.try_into().ok())
        .ok_or_else(malformed)?;
    let mut rest = bytes.get(37..).ok_or_else(malformed)?;
    let attested = if flags & FLAG_ATTESTED_CREDENTIAL_DATA != 0 {
        // AAGUID (16 bytes), credential id length (2 bytes, big-endian), id, COSE key.
        let length_bytes: [u8; 2] = rest
            .get(16..18)
            .and_then(|slice| slice.try_into().ok())
            .ok_or_else(malformed)?;
        let length = usize::from(u16::from_be_bytes(length_bytes));
        let credential_id = rest.get(18..18 + length).ok_or_else(malformed)?.to_vec();
        rest = rest.get(18 + length..).ok_or_else(malformed)?;
        let public_key: Value = ciborium::from_reader(&mut rest).map_err(|_| malformed())?;
        Some((credential_id, public_key))
    } else {
        None
    };
    if flags & FLAG_EXTENSION_DATA != 0 {
        let _extensions: Value = ciborium::from_reader(&mut rest).map_err(|_| malformed())?;
    }
    if !rest.is_empty() {
        return Err(malformed());
    }
    Ok(AuthenticatorData {
        rp_id_hash,
        flags,
        sign_count: u32::from_be_bytes(counter),
        attested,
    })
}

/// RP ID hash and user presence: checked in both ceremonies.
fn check_authenticator_data(
    relying_party: &RelyingParty,
    data: &AuthenticatorData,
) -> Result<(), WebAuthnError> {
    let expected = Sha256::digest(relying_party.id.as_bytes());
    if !same_bytes(&data.rp_id_hash, &expected) {
        return Err(WebAuthnError::WrongRpId);
    }
    if data.flags & FLAG_USER_PRESENT == 0 {
        return Err(WebAuthnError::UserNotPresent);
    }
    Ok(())
}

/// The value under an integer key of a CBOR map.
fn map_get(map: &[(Value, Value)], key: i64) -> Option<&Value> {
    map.iter().find_map(|(name, value)| match name {
        Value::Integer(integer) if i128::from(*integer) == i128::from(key) => Some(value),
        _ => None,
    })
}

fn integer(value: Option<&Value>) -> Option<i128> {
    match value {
        Some(Value::Integer(integer)) => Some(i128::from(*integer)),
        _ => None,
    }
}

fn bytes(value: Option<&Value>) -> Option<&[u8]> {
    match value {
        Some(Value::Bytes(bytes)) => Some(bytes),
        _ => None,
    }
}

/// A COSE_Key (RFC 9052 §7) for ES256 (EC2, P-256) or RS256 (RSA, ≥ 2048 bits).
fn public_key_from_cose(key: &Value) -> Result<CredentialPublicKey, WebAuthnError> {
    let Value::Map(map) = key else {
        return Err(WebAuthnError::PublicKey("not a COSE key map"));
    };
    let key_type = integer(map_get(map, 1));
    let algorithm = integer(map_get(map, 3));
    match (key_type, algorithm) {
        (Some(2), Some(alg)) if alg == i128::from(COSE_ES256) => {
            if integer(map_get(map, -1)) != Some(1) {
                return Err(WebAuthnError::PublicKey("ES256 needs curve P-256"));
            }
            let (Some(x), Some(y)) = (bytes(map_get(map, -2)), bytes(map_get(map, -3))) else {
                return Err(WebAuthnError::PublicKey("EC2 key without x and y"));
            };
            if x.len() != 32 || y.len() != 32 {
                return Err(WebAuthnError::PublicKey(
                    "P-256 coordinates must be 32 bytes",
                ));
            }
            let mut point = Vec::with_capacity(65);
            point.push(0x04);
            point.extend_from_slice(x);
            point.extend_from_slice(y);
            p256::ecdsa::VerifyingKey::from_sec1_bytes(&point)
                .map(CredentialPublicKey::Es256)
                .map_err(|_| WebAuthnError::PublicKey("not a point on P-256"))
        }
        (Some(3), Some(alg)) if alg == i128::from(COSE_RS256) => {
            let (Some(modulus), Some(exponent)) =
                (bytes(map_get(map, -1)), bytes(map_get(map, -2)))
            else {
                return Err(WebAuthnError::PublicKey("RSA key without n and e"));
            };
            let modulus = rsa::BigUint::from_bytes_be(modulus);
            if modulus.bits() < MINIMUM_RSA_BITS {
                return Err(WebAuthnError::PublicKey(
                    "RSA modulus shorter than 2048 bits",
                ));
            }
            rsa::RsaPublicKey::new(modulus, rsa::BigUint::from_bytes_be(exponent))
                .map(|key| CredentialPublicKey::Rs256(rsa::pkcs1v15::VerifyingKey::new(key)))
                .map_err(|_| WebAuthnError::PublicKey("invalid RSA key"))
        }
        _ => Err(WebAuthnError::PublicKey(
            "only ES256 and RS256 are accepted",
        )),
    }
}

/// The text value under a text key of a CBOR map.
fn text_key<'a>(map: &'a [(Value, Value)], key: &str) -> Option<&'a Value> {
    map.iter().find_map(|(name, value)| match name {
        Value::Text(text) if text == key => Some(value),
        _ => None,
    })
}

/// §7.1: checks a new credential made for `challenge` and returns it.
pub(crate) fn verify_registration(
    relying_party: &RelyingParty,
    challenge: &[u8],
    response: &RegistrationResponse<'_>,
) -> Result<NewCredential, WebAuthnError> {
    check_client_data(
        relying_party,
        challenge,
        response.client_data_json,
        "webauthn.create",
    )?;
    let attestation: Value = ciborium::from_reader(response.attestation_object)
        .map_err(|_| WebAuthnError::AttestationObject)?;
    let Value::Map(attestation) = attestation else {
        return Err(WebAuthnError::AttestationObject);
    };
    let format = match text_key(&attestation, "fmt") {
        Some(Value::Text(format)) => format.clone(),
        _ => return Err(WebAuthnError::AttestationObject),
    };
    let statement_is_empty =
        matches!(text_key(&attestation, "attStmt"), Some(Value::Map(map)) if map.is_empty());
    if format != "none" || !statement_is_empty {
        return Err(WebAuthnError::AttestationFormat(
            format.chars().take(32).collect(),
        ));
    }
    let Some(Value::Bytes(authenticator_data)) = text_key(&attestation, "authData") else {
        return Err(WebAuthnError::AttestationObject);
    };
    let data = parse_authenticator_data(authenticator_data)?;
    check_authenticator_data(relying_party, &data)?;
    let Some((credential_id, cose_key)) = data.attested else {
        return Err(WebAuthnError::NoCredentialData);
    };
    if !same_bytes(&credential_id, response.credential_id) {
        return Err(WebAuthnError::CredentialIdMismatch);
    }
    let public_key = public_key_from_cose(&cose_key)?;
    Ok(NewCredential {
        id: credential_id,
        public_key,
        sign_count: data.sign_count,
        user_verified: data.flags & FLAG_USER_VERIFIED != 0,
    })
}

/// §7.2: checks an assertion by `stored` for `challenge`; returns the counter to remember.
pub(crate) fn verify_assertion(
    relying_party: &RelyingParty,
    challenge: &[u8],
    stored: &StoredCredential,
    response: &AssertionResponse<'_>,
) -> Result<VerifiedAssertion, WebAuthnError> {
    if let Some(user_handle) = response.user_handle {
        if !same_bytes(user_handle, &stored.user_handle) {
            return Err(WebAuthnError::UserHandleMismatch);
        }
    }
    check_client_data(
        relying_party,
        challenge,
        response.client_data_json,
        "webauthn.get",
    )?;
    let data = parse_authenticator_data(response.authenticator_data)?;
    check_authenticator_data(relying_party, &data)?;
    let mut signed = Vec::with_capacity(response.authenticator_data.len() + 32);
    signed.extend_from_slice(response.authenticator_data);
    signed.extend_from_slice(&Sha256::digest(response.client_data_json));
    if !stored.public_key.verify(&signed, response.signature) {
        return Err(WebAuthnError::Signature);
    }
    // §7.2 step 21: a counter in use must grow; zero on both sides means "no counter".
    let counting = data.sign_count != 0 || stored.sign_count != 0;
    if counting && data.sign_count <= stored.sign_count {
        return Err(WebAuthnError::CounterNotIncreased);
    }
    Ok(VerifiedAssertion {
        sign_count: data.sign_count,
        user_verified: data.flags & FLAG_USER_VERIFIED != 0,
    })
}
