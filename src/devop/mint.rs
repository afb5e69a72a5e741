//! Tokens on demand for the relying party's bearer-token tests: a normal
//! access token for a user, or any claims signed any way the test needs.

use serde_json::{Map, Value};

use super::jwt::{self, Signing};
use super::keys;
use super::state::SharedState;
use super::tokens::issue_access_token;

/// How a minted token is signed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MintKey {
    /// The OP's current key (published in its JWKS).
    Current,
    /// The current key, then the signature bytes corrupted.
    CorruptedSignature,
    /// `{"alg":"none"}` and no signature.
    Unsigned,
    /// A key whose kid no JWKS of this OP ever publishes.
    UnknownKid,
    /// HS256 keyed with the client secret.
    ClientSecretHmac,
}

pub(crate) fn mint(shared: &SharedState, claims: &Map<String, Value>, key: MintKey) -> String {
    let current = shared.lock().current_key.clone();
    let stranger = match key {
        MintKey::UnknownKid => keys::stranger_key().ok(),
        _ => None,
    };
    let signing = match (key, &stranger) {
        (MintKey::Current, _) => Signing::Rs256(&current),
        (MintKey::CorruptedSignature, _) => Signing::Rs256Corrupted(&current),
        (MintKey::Unsigned, _) => Signing::Unsigned,
        (MintKey::UnknownKid, Some(stranger)) => Signing::Rs256(stranger),
        (MintKey::UnknownKid, None) => Signing::Rs256Corrupted(&current),
        (MintKey::ClientSecretHmac, _) => Signing::Hs256(shared.options.client_secret.as_bytes()),
    };
    jwt::encode(claims, "JWT", signing).unwrap_or_default()
}

/// An access token for `sub` exactly as the token endpoint would issue it.
pub(crate) fn access_token(shared: &SharedState, sub: &str) -> String {
    let user = shared.lock().user_or_create(sub);
    let key = shared.lock().current_key.clone();
    let context = shared.token_context(shared.now());
    issue_access_token(&context, &key, &user, "openid").unwrap_or_default()
}
