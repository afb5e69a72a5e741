//! How each [`Misbehavior`] changes an ID token.
//!
//! Kept apart from token building so that every bad token the tests rely on is described in
//! one place and checked claim by claim.

use serde_json::{json, Map, Value};

use super::options::Misbehavior;

/// How the (possibly altered) ID token is to be signed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SignatureChoice {
    /// RS256 with the current, published key.
    Normal,
    /// RS256 with the current key, signature bytes then corrupted.
    Corrupted,
    /// `alg: none`.
    Unsigned,
    /// HS256 keyed with the client secret.
    ClientSecretHmac,
    /// RS256 with a key whose kid is never published.
    StrangerKey,
    /// RS256 with the current key, no `kid` in the header.
    NoKid,
}

/// The audience a wrong token is issued to.
pub(crate) const SOMEONE_ELSE: &str = "someone-else";

/// The issuer a wrong token names: the real one with `/other` appended.
pub(crate) fn wrong_issuer(issuer: &str) -> String {
    format!("{issuer}/other")
}

/// Alters `claims` (an ID token about to be signed at `now`, valid for `ttl_seconds`) as
/// `misbehavior` says, and tells how to sign it.
pub(crate) fn apply_to_id_token(
    misbehavior: &Misbehavior,
    claims: &mut Map<String, Value>,
    client_id: &str,
    now: u64,
    ttl_seconds: u64,
) -> SignatureChoice {
    match misbehavior {
        Misbehavior::BadSignature => return SignatureChoice::Corrupted,
        Misbehavior::AlgNone => return SignatureChoice::Unsigned,
        Misbehavior::HmacWithClientSecret => return SignatureChoice::ClientSecretHmac,
        Misbehavior::UnknownKid => return SignatureChoice::StrangerKey,
        Misbehavior::OmitKid | Misbehavior::OmitKidAmongSeveralKeys => {
            return SignatureChoice::NoKid
        }
        Misbehavior::OmitSub => {
            claims.remove("sub");
        }
        Misbehavior::OmitIat => {
            claims.remove("iat");
        }
        Misbehavior::WrongIssuer => {
            let issuer = claims
                .get("iss")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let wrong = wrong_issuer(issuer);
            claims.insert("iss".to_owned(), json!(wrong));
        }
        Misbehavior::WrongAudience => {
            claims.insert("aud".to_owned(), json!(SOMEONE_ELSE));
        }
        Misbehavior::ExtraAudience(other) => {
            claims.insert("aud".to_owned(), json!([client_id, other]));
        }
        Misbehavior::WrongAzp => {
            claims.insert("azp".to_owned(), json!(SOMEONE_ELSE));
        }
        Misbehavior::OmitAzp => {
            claims.remove("azp");
        }
        Misbehavior::Expired => {
            let issued_at = now.saturating_sub(20 * 60);
            claims.insert("iat".to_owned(), json!(issued_at));
            claims.insert("auth_time".to_owned(), json!(issued_at));
            claims.insert("exp".to_owned(), json!(now.saturating_sub(10 * 60)));
        }
        Misbehavior::IssuedInFuture => {
            let issued_at = now + 10 * 60;
            claims.insert("iat".to_owned(), json!(issued_at));
            claims.insert("exp".to_owned(), json!(issued_at + ttl_seconds));
        }
        Misbehavior::WrongNonce => {
            claims.insert("nonce".to_owned(), json!("not-the-nonce"));
        }
        Misbehavior::OmitNonce => {
            claims.remove("nonce");
        }
        Misbehavior::None
        | Misbehavior::TokenEndpointError
        | Misbehavior::AuthorizeError
        | Misbehavior::WrongIssParam
        | Misbehavior::DiscoveryWrongIssuer
        | Misbehavior::Unavailable
        | Misbehavior::Slow(_)
        | Misbehavior::UserinfoWrongSub
        | Misbehavior::UserinfoUnavailable
        | Misbehavior::UserinfoWrongAudience
        | Misbehavior::RefreshWithoutIdToken => {}
    }
    SignatureChoice::Normal
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly
mod tests {
    use super::*;

    const NOW: u64 = 1_700_000_000;

    fn claims() -> Map<String, Value> {
        let Value::Object(claims) = json!({
            "iss": "http://127.0.0.1:9", "sub": "alice", "aud": "portico-test",
            "azp": "portico-test", "iat": NOW, "auth_time": NOW, "exp": NOW + 300, "nonce": "n1",
        }) else {
            unreachable!()
        };
        claims
    }

    fn applied(misbehavior: Misbehavior) -> (Map<String, Value>, SignatureChoice) {
        let mut claims = claims();
        let choice = apply_to_id_token(&misbehavior, &mut claims, "portico-test", NOW, 300);
        (claims, choice)
    }

    #[test]
    fn none_and_non_token_misbehaviours_leave_the_claims_alone() {
        for misbehavior in [
            Misbehavior::None,
            Misbehavior::TokenEndpointError,
            Misbehavior::AuthorizeError,
            Misbehavior::WrongIssParam,
            Misbehavior::DiscoveryWrongIssuer,
        ] {
            assert_eq!(applied(misbehavior), (claims(), SignatureChoice::Normal));
        }
    }

    #[test]
    fn signature_misbehaviours_pick_their_signing() {
        assert_eq!(
            applied(Misbehavior::BadSignature).1,
            SignatureChoice::Corrupted
        );
        assert_eq!(applied(Misbehavior::AlgNone).1, SignatureChoice::Unsigned);
        assert_eq!(
            applied(Misbehavior::HmacWithClientSecret).1,
            SignatureChoice::ClientSecretHmac
        );
        assert_eq!(
            applied(Misbehavior::UnknownKid).1,
            SignatureChoice::StrangerKey
        );
        assert_eq!(applied(Misbehavior::UnknownKid).0, claims());
    }

    #[test]
    fn issuer_audience_and_azp_misbehaviours() {
        assert_eq!(
            applied(Misbehavior::WrongIssuer).0["iss"],
            "http://127.0.0.1:9/other"
        );
        assert_eq!(applied(Misbehavior::WrongAudience).0["aud"], "someone-else");
        assert_eq!(
            applied(Misbehavior::ExtraAudience("api".to_owned())).0["aud"],
            json!(["portico-test", "api"])
        );
        assert_eq!(applied(Misbehavior::WrongAzp).0["azp"], "someone-else");
        assert!(!applied(Misbehavior::OmitAzp).0.contains_key("azp"));
    }

    #[test]
    fn time_misbehaviours() {
        let (expired, _) = applied(Misbehavior::Expired);
        assert_eq!(expired["exp"], NOW - 600);
        assert_eq!(expired["iat"], NOW - 1200);
        let (future, _) = applied(Misbehavior::IssuedInFuture);
        assert_eq!(future["iat"], NOW + 600);
        assert_eq!(future["exp"], NOW + 900);
    }

    #[test]
    fn certification_misbehaviours_drop_kid_sub_or_iat() {
        assert_eq!(
            applied(Misbehavior::OmitKid),
            (claims(), SignatureChoice::NoKid)
        );
        assert_eq!(
            applied(Misbehavior::OmitKidAmongSeveralKeys),
            (claims(), SignatureChoice::NoKid)
        );
        let (no_sub, choice) = applied(Misbehavior::OmitSub);
        assert!(!no_sub.contains_key("sub"));
        assert_eq!(choice, SignatureChoice::Normal);
        let (no_iat, _) = applied(Misbehavior::OmitIat);
        assert!(!no_iat.contains_key("iat"));
        assert_eq!(no_iat["exp"], NOW + 300);
        for misbehavior in [
            Misbehavior::UserinfoWrongSub,
            Misbehavior::UserinfoUnavailable,
            Misbehavior::UserinfoWrongAudience,
            Misbehavior::RefreshWithoutIdToken,
        ] {
            assert_eq!(applied(misbehavior), (claims(), SignatureChoice::Normal));
        }
    }

    #[test]
    fn nonce_misbehaviours() {
        assert_eq!(applied(Misbehavior::WrongNonce).0["nonce"], "not-the-nonce");
        assert!(!applied(Misbehavior::OmitNonce).0.contains_key("nonce"));
    }
}
