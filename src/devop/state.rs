//! The dev OP's shared state: fixed options plus what changes while it runs.
//!
//! One `std::sync::Mutex` guards everything that changes; it is never held across an `.await`,
//! and a poisoned lock is recovered (the data stays consistent: every update is one assignment
//! or one map operation).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use url::{Host, Url};

use super::descope::DescopeShape;
use super::grants::{CodeStore, RefreshStore};
use super::keys::KeyPair;
use super::options::{DevOpOptions, DevOpStats, DevUser, Misbehavior};
use super::passkey::{relying_party_for, Ceremonies, PasskeyStore};
use super::signers::{AlgKey, SignerError, SigningAlg};
use super::tokens::TokenContext;
use super::webauthn::RelyingParty;

/// Seconds since the Unix epoch.
pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

/// What changes while the dev OP runs.
pub(crate) struct MutableState {
    pub misbehavior: Misbehavior,
    pub auto_approve: Option<String>,
    pub users: Vec<DevUser>,
    /// Index of the current key in the process-wide key pool.
    pub key_index: usize,
    /// The key that signs now and the only one in the JWKS.
    pub current_key: Arc<KeyPair>,
    /// Every key this dev OP has signed with (its own access tokens stay checkable).
    pub used_keys: Vec<Arc<KeyPair>>,
    pub codes: CodeStore,
    pub refresh_tokens: RefreshStore,
    /// Passkey challenges handed to sign-in pages and not yet answered.
    pub ceremonies: Ceremonies,
    pub passkeys: PasskeyStore,
    pub stats: DevOpStats,
    /// Who signed in lately, most recent first, at most [`MAX_RECENT`]: the
    /// sign-in page's chips.
    pub recent: VecDeque<String>,
    /// The algorithm ID tokens are signed with.
    pub signing_alg: SigningAlg,
    /// Keys for algorithms other than RS256 with the pool key, all published.
    pub alg_keys: Vec<Arc<AlgKey>>,
}

/// How many names the sign-in page offers as chips.
pub(crate) const MAX_RECENT: usize = 5;

/// Everything the handlers share.
pub(crate) struct SharedState {
    pub issuer: String,
    pub options: DevOpOptions,
    /// The WebAuthn relying party; `None` when the issuer's host is an IP address.
    pub relying_party: Option<RelyingParty>,
    mutable: Mutex<MutableState>,
    /// Seconds added to the real time (tests move time forward without sleeping).
    clock_offset: AtomicI64,
}

impl SharedState {
    pub fn new(issuer: String, options: DevOpOptions, key: Arc<KeyPair>) -> SharedState {
        let users = options.users.clone();
        SharedState {
            relying_party: relying_party_for(&issuer),
            issuer,
            options,
            clock_offset: AtomicI64::new(0),
            mutable: Mutex::new(MutableState {
                misbehavior: Misbehavior::None,
                auto_approve: None,
                users,
                key_index: 0,
                current_key: key.clone(),
                used_keys: vec![key],
                codes: CodeStore::default(),
                refresh_tokens: RefreshStore::default(),
                ceremonies: Ceremonies::default(),
                passkeys: PasskeyStore::default(),
                stats: DevOpStats::default(),
                recent: VecDeque::new(),
                signing_alg: SigningAlg::Rs256,
                alg_keys: Vec::new(),
            }),
        }
    }

    /// Seconds since the Unix epoch on this OP's clock.
    pub fn now(&self) -> u64 {
        let offset = self.clock_offset.load(Ordering::SeqCst);
        unix_now().saturating_add_signed(offset)
    }

    pub fn advance_clock(&self, seconds: i64) {
        self.clock_offset.fetch_add(seconds, Ordering::SeqCst);
    }

    pub fn lock(&self) -> MutexGuard<'_, MutableState> {
        self.mutable
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn misbehavior(&self) -> Misbehavior {
        self.lock().misbehavior.clone()
    }

    pub fn token_context(&self, now: u64) -> TokenContext<'_> {
        let descope = self.options.descope.as_ref();
        TokenContext {
            issuer: &self.issuer,
            client_id: &self.options.client_id,
            client_secret: &self.options.client_secret,
            now,
            id_token_ttl_seconds: self.options.id_token_ttl.as_secs(),
            access_token_ttl_seconds: self.options.access_token_ttl.as_secs(),
            // Descope: `aud` = the project id (and a federated app's client
            // id beside it when that differs).
            audience: match descope {
                Some(descope) if descope.project_id != self.options.client_id => {
                    serde_json::json!([descope.project_id, self.options.client_id])
                }
                Some(descope) => serde_json::json!(descope.project_id),
                None => serde_json::json!(self.options.client_id),
            },
            send_azp: descope.is_none_or(|descope| descope.send_azp),
            descope,
            scope: "openid",
            claims_at_userinfo: self.options.claims_at_userinfo && descope.is_none(),
        }
    }

    /// The `iss` of this OP's access tokens: the issuer, or in the Descope
    /// profile the session-JWT issuer form it is set to.
    pub fn access_token_issuer(&self) -> String {
        match self.descope() {
            Some(descope) => {
                super::descope::session_issuer(descope, &self.issuer, descope.session_issuer)
            }
            None => self.issuer.clone(),
        }
    }

    /// The Descope profile, when on.
    pub fn descope(&self) -> Option<&DescopeShape> {
        self.options.descope.as_ref()
    }

    /// Where the OAuth endpoints live: `{issuer}` normally, Descope's
    /// `{base}/oauth2/v1` in the Descope profile.
    pub fn endpoint_base(&self) -> String {
        match self.descope() {
            Some(descope) => format!(
                "{}/oauth2/v1",
                super::descope::base_of(&self.issuer, &descope.project_id)
            ),
            None => self.issuer.clone(),
        }
    }

    /// Makes the keys the options ask for (signing and published algorithms).
    pub fn prepare_alg_keys(&self) -> Result<(), SignerError> {
        for alg in self.options.published_algs.clone() {
            self.alg_key(alg)?;
        }
        self.use_signing_alg(self.options.signing_alg)
    }

    /// The key for `alg`, made (and published) on first use; None for RS256,
    /// which the pool key signs.
    pub fn alg_key(&self, alg: SigningAlg) -> Result<Option<Arc<AlgKey>>, SignerError> {
        if alg == SigningAlg::Rs256 {
            return Ok(None);
        }
        if let Some(key) = self.lock().alg_keys.iter().find(|key| key.alg() == alg) {
            return Ok(Some(key.clone()));
        }
        let key = Arc::new(AlgKey::new(alg)?);
        self.lock().alg_keys.push(key.clone());
        Ok(Some(key))
    }

    pub fn use_signing_alg(&self, alg: SigningAlg) -> Result<(), SignerError> {
        self.alg_key(alg)?;
        self.lock().signing_alg = alg;
        Ok(())
    }

    /// The key ID tokens are signed with now (None: the RS256 pool key).
    pub fn id_token_key(&self) -> Option<Arc<AlgKey>> {
        let mutable = self.lock();
        let alg = mutable.signing_alg;
        mutable
            .alg_keys
            .iter()
            .find(|key| key.alg() == alg)
            .cloned()
    }

    /// Whether `/authorize` and `/token` accept this redirect URI.
    pub fn redirect_uri_allowed(&self, redirect_uri: &str) -> bool {
        if self.options.redirect_uris.is_empty() {
            is_loopback_http_uri(redirect_uri)
        } else {
            self.options
                .redirect_uris
                .iter()
                .any(|allowed| allowed == redirect_uri)
        }
    }

    /// Whether `/end_session` may redirect to this URI.
    pub fn post_logout_redirect_uri_allowed(&self, uri: &str) -> bool {
        let registered = &self.options.post_logout_redirect_uris;
        let parses = Url::parse(uri).is_ok_and(|url| matches!(url.scheme(), "http" | "https"));
        parses && (registered.is_empty() || registered.iter().any(|allowed| allowed == uri))
    }
}

impl MutableState {
    /// The user with this sub, if known.
    pub fn user(&self, sub: &str) -> Option<DevUser> {
        self.users.iter().find(|user| user.sub == sub).cloned()
    }

    /// The user with this sub; an unknown one is made up (no roles) and not
    /// stored, so typing names at the sign-in page grows nothing: the same
    /// sub always makes the same user.
    pub fn user_or_create(&self, sub: &str) -> DevUser {
        self.user(sub).unwrap_or_else(|| DevUser::new(sub))
    }

    /// Notes that `sub` just signed in: first among the recent names.
    pub fn remember_sign_in(&mut self, sub: &str) {
        self.recent.retain(|known| known != sub);
        self.recent.push_front(sub.to_owned());
        self.recent.truncate(MAX_RECENT);
    }

    /// The users the sign-in page offers: who signed in lately, then the
    /// configured users, at most [`MAX_RECENT`] in all.
    pub fn recent_users(&self) -> Vec<DevUser> {
        let mut chosen: Vec<DevUser> = self
            .recent
            .iter()
            .map(|sub| self.user_or_create(sub))
            .collect();
        for user in &self.users {
            if chosen.len() >= MAX_RECENT {
                break;
            }
            if !chosen.iter().any(|known| known.sub == user.sub) {
                chosen.push(user.clone());
            }
        }
        chosen.truncate(MAX_RECENT);
        chosen
    }

    /// Adds `user`, or replaces the user with the same sub.
    pub fn set_user(&mut self, user: DevUser) {
        match self.users.iter_mut().find(|known| known.sub == user.sub) {
            Some(known) => *known = user,
            None => self.users.push(user),
        }
    }
}

/// An absolute http(s) URI on a loopback host, without a fragment.
fn is_loopback_http_uri(uri: &str) -> bool {
    let Ok(url) = Url::parse(uri) else {
        return false;
    };
    let loopback = match url.host() {
        Some(Host::Ipv4(address)) => address.is_loopback(),
        Some(Host::Ipv6(address)) => address.is_loopback(),
        Some(Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        None => false,
    };
    matches!(url.scheme(), "http" | "https") && loopback && url.fragment().is_none()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly
mod tests {
    use super::*;

    #[test]
    fn any_loopback_http_uri_is_allowed_when_none_are_registered() {
        assert!(is_loopback_http_uri(
            "http://127.0.0.1:4180/oauth2/callback"
        ));
        assert!(is_loopback_http_uri("https://localhost/cb?x=1"));
        assert!(is_loopback_http_uri("http://[::1]:8080/cb"));
        assert!(!is_loopback_http_uri("http://evil.example/cb"));
        assert!(!is_loopback_http_uri("http://127.0.0.1/cb#fragment"));
        assert!(!is_loopback_http_uri("javascript:alert(1)"));
        assert!(!is_loopback_http_uri("/relative"));
    }

    #[test]
    fn the_sign_in_page_offers_at_most_five_recent_names_newest_first() {
        let state = SharedState::new(
            "http://127.0.0.1:9".to_owned(),
            DevOpOptions::default(),
            super::super::keys::key_at(0).unwrap(),
        );
        let mut mutable = state.lock();
        let names = |mutable: &MutableState| -> Vec<String> {
            mutable
                .recent_users()
                .into_iter()
                .map(|user| user.sub)
                .collect()
        };
        // Before anyone signs in: the configured users.
        assert_eq!(names(&mutable), ["alice", "bob"]);
        mutable.remember_sign_in("carol");
        assert_eq!(names(&mutable), ["carol", "alice", "bob"]);
        for name in ["d1", "d2", "d3", "d4", "d5", "d6"] {
            mutable.remember_sign_in(name);
        }
        assert_eq!(names(&mutable), ["d6", "d5", "d4", "d3", "d2"]);
        mutable.remember_sign_in("d3");
        assert_eq!(names(&mutable), ["d3", "d6", "d5", "d4", "d2"]);
        // Typed names are not kept as users: nothing grows with each new name.
        assert_eq!(mutable.users.len(), 2);
        assert_eq!(mutable.user_or_create("d3").email, "d3@example.test");
        // A configured user keeps its roles on its chip.
        mutable.remember_sign_in("alice");
        assert_eq!(mutable.recent_users()[0].roles, ["admin"]);
    }

    #[test]
    fn claims_at_userinfo_applies_except_in_the_descope_shape() {
        let state = |descope: Option<super::super::descope::DescopeShape>| {
            let options = DevOpOptions {
                claims_at_userinfo: true,
                descope,
                ..DevOpOptions::default()
            };
            SharedState::new(
                "http://127.0.0.1:9".to_owned(),
                options,
                super::super::keys::key_at(0).unwrap(),
            )
        };
        assert!(state(None).token_context(0).claims_at_userinfo);
        let descope = super::super::descope::DescopeShape::new("P2test");
        assert!(
            !state(Some(descope)).token_context(0).claims_at_userinfo,
            "Descope keeps its own behaviour"
        );
    }

    #[test]
    fn registered_redirect_uris_must_match_exactly() {
        let options = DevOpOptions {
            redirect_uris: vec!["http://127.0.0.1:4180/oauth2/callback".to_owned()],
            ..DevOpOptions::default()
        };
        let state = SharedState::new(
            "http://127.0.0.1:9".to_owned(),
            options,
            super::super::keys::key_at(0).unwrap(),
        );
        assert!(state.redirect_uri_allowed("http://127.0.0.1:4180/oauth2/callback"));
        assert!(!state.redirect_uri_allowed("http://127.0.0.1:4180/oauth2/callback/"));
        assert!(!state.redirect_uri_allowed("http://127.0.0.1:4181/oauth2/callback"));
    }
}
