//! A small OpenID Provider for `portico demo` and the tests.
//!
//! portico's integration tests need a real OP on a real port: one that does discovery, shows a
//! sign-in page, exchanges codes with PKCE, signs genuine RS256 tokens and rotates its keys — and
//! that can misbehave on demand ([`Misbehavior`]), so each test can prove portico refuses one
//! kind of bad token or answer. It signs with any asymmetric JWS algorithm ([`SigningAlg`]), and
//! its strict `descope` profile ([`DescopeShape`]) behaves as Descope's public docs and SDKs say
//! (paths, claims per scope, session JWTs, access-key exchange). The echo upstream
//! ([`EchoUpstream`]) is the app behind portico: it shows what portico forwarded.

mod authorize;
mod descope;
mod echo;
mod endpoints;
mod grants;
mod jwt;
pub(crate) mod keys;
mod logout;
mod mint;
mod misbehavior;
mod options;
mod pages;
mod passkey;
mod server;
mod signers;
mod state;
mod token_endpoint;
mod tokens;
mod webauthn;

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly
mod echo_tests;
#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly
mod openidconnect_tests;
#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly
mod tests;
#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly
mod webauthn_tests;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use tokio::net::TcpListener;

pub use descope::{DescopeAccessKey, DescopeShape, SessionIssuerForm};
pub use echo::EchoUpstream;
pub use logout::{LogoutDefect, LogoutTokenSpec, BACKCHANNEL_LOGOUT_EVENT};
pub use mint::MintKey;
pub use options::{DevOpOptions, DevOpStats, DevUser, Misbehavior, TokenAuthMethods};
pub use signers::{AlgKey, SignerError, SigningAlg};

use server::ServerHandle;
use state::SharedState;

/// A running dev OP. Dropping it stops the server.
pub struct DevOp {
    shared: Arc<SharedState>,
    server: ServerHandle,
}

impl std::fmt::Debug for DevOp {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("DevOp")
            .field("issuer", &self.shared.issuer)
            .finish_non_exhaustive()
    }
}

/// `http://{host}:{port}`: the public host when set, else the bound address (127.0.0.1 when
/// bound to every interface).
fn issuer_for(address: SocketAddr, public_host: Option<&str>) -> String {
    let port = address.port();
    match public_host {
        Some(host) => format!("http://{host}:{port}"),
        None if address.ip().is_unspecified() => format!("http://{}:{port}", Ipv4Addr::LOCALHOST),
        None => match address.ip() {
            IpAddr::V4(ip) => format!("http://{ip}:{port}"),
            IpAddr::V6(ip) => format!("http://[{ip}]:{port}"),
        },
    }
}

impl DevOp {
    /// Starts a dev OP on 127.0.0.1 and a free port.
    pub async fn start(options: DevOpOptions) -> std::io::Result<DevOp> {
        DevOp::start_on(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), options).await
    }

    /// Starts a dev OP on `address`.
    pub async fn start_on(address: SocketAddr, options: DevOpOptions) -> std::io::Result<DevOp> {
        let key = tokio::task::spawn_blocking(|| keys::key_at(0))
            .await
            .map_err(std::io::Error::other)?
            .map_err(std::io::Error::other)?;
        keys::prepare_in_background(1);
        let listener = TcpListener::bind(address).await?;
        let origin = issuer_for(listener.local_addr()?, options.public_host.as_deref());
        let descope_project = options
            .descope
            .as_ref()
            .map(|descope| descope.project_id.clone());
        let issuer = match &descope_project {
            Some(project) => format!("{origin}/{project}"),
            None => origin,
        };
        let shared = Arc::new(SharedState::new(issuer, options, key));
        shared.prepare_alg_keys().map_err(std::io::Error::other)?;
        let router = match &descope_project {
            Some(project) => endpoints::descope_router(shared.clone(), project),
            None => endpoints::router(shared.clone()),
        };
        let server = ServerHandle::spawn(listener, router, |_| {})?;
        tracing::info!(issuer = %shared.issuer, "dev OP listening");
        Ok(DevOp { shared, server })
    }

    /// `http://127.0.0.1:PORT` (no trailing slash), or with the public host.
    pub fn issuer(&self) -> String {
        self.shared.issuer.clone()
    }

    pub fn addr(&self) -> SocketAddr {
        self.server.address()
    }

    pub fn set_misbehavior(&self, misbehavior: Misbehavior) {
        if matches!(
            misbehavior,
            Misbehavior::UnknownKid | Misbehavior::OmitKidAmongSeveralKeys
        ) {
            keys::prepare_stranger_in_background();
        }
        tracing::debug!(?misbehavior, "dev OP misbehaviour set");
        self.shared.lock().misbehavior = misbehavior;
    }

    /// `Some(sub)`: `GET /authorize` redirects back at once, signed in as that user (created
    /// without roles when unknown). `None`: show the sign-in page.
    pub fn set_auto_approve(&self, user: Option<String>) {
        self.shared.lock().auto_approve = user;
    }

    /// Adds `user`, or replaces the user with the same sub.
    pub fn set_user(&self, user: DevUser) {
        self.shared.lock().set_user(user);
    }

    /// Switches to a new signing key with a new kid; the JWKS then holds only the new key.
    /// May block while a key is generated (normally one is ready in the background).
    pub fn rotate_keys(&self) {
        let next = self.shared.lock().key_index + 1;
        match keys::key_at(next) {
            Ok(key) => {
                tracing::debug!(kid = %key.kid, "dev OP rotated its signing key");
                let mut mutable = self.shared.lock();
                mutable.key_index = next;
                mutable.current_key = key.clone();
                mutable.used_keys.push(key);
                keys::prepare_in_background(next + 1);
            }
            Err(error) => tracing::error!(%error, "dev OP could not generate a signing key"),
        }
    }

    /// Signs ID tokens with `alg` from now on; its key joins the JWKS (the
    /// keys already published stay).
    pub fn set_signing_alg(&self, alg: SigningAlg) {
        if let Err(error) = self.shared.use_signing_alg(alg) {
            tracing::error!(%error, "dev OP could not make a signing key");
        }
    }

    /// Moves this OP's clock forward: tokens it issues from now on carry the later time.
    pub fn advance_clock(&self, duration: std::time::Duration) {
        self.shared
            .advance_clock(i64::try_from(duration.as_secs()).unwrap_or(i64::MAX));
    }

    /// Forgets every refresh token issued so far: the next refresh with any
    /// of them gets `invalid_grant` (as when an administrator ends a session).
    pub fn revoke_refresh_tokens(&self) {
        self.shared.lock().refresh_tokens = Default::default();
    }

    /// Any claims, signed as `key` says (for bearer-token tests).
    pub fn mint_jwt(
        &self,
        claims: &serde_json::Map<String, serde_json::Value>,
        key: MintKey,
    ) -> String {
        mint::mint(&self.shared, claims, key)
    }

    /// An access token for `sub` as the token endpoint would issue it now.
    pub fn access_token(&self, sub: &str) -> String {
        mint::access_token(&self.shared, sub)
    }

    /// A signed Back-Channel Logout token as `spec` describes (defects included).
    pub fn logout_token(&self, spec: &LogoutTokenSpec) -> String {
        logout::logout_token(&self.shared, spec)
    }

    pub fn stats(&self) -> DevOpStats {
        self.shared.lock().stats.clone()
    }

    /// Stops serving: the listener closes and open connections end after their current request.
    pub fn shutdown(&self) {
        self.server.stop();
    }

    /// The dev OP's endpoints as a router, to embed elsewhere (tokens still name this
    /// instance's issuer).
    pub fn router(&self) -> axum::Router {
        endpoints::router(self.shared.clone())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly
mod issuer_tests {
    use super::*;

    #[test]
    fn issuer_uses_loopback_for_unspecified_and_the_public_host_when_set() {
        let any = SocketAddr::from(([0, 0, 0, 0], 4000));
        assert_eq!(issuer_for(any, None), "http://127.0.0.1:4000");
        assert_eq!(issuer_for(any, Some("localhost")), "http://localhost:4000");
        let loopback = SocketAddr::from(([127, 0, 0, 1], 4001));
        assert_eq!(issuer_for(loopback, None), "http://127.0.0.1:4001");
        let v6 = SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, 4002));
        assert_eq!(issuer_for(v6, None), "http://[::1]:4002");
    }
}
