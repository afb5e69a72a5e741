//! `portico demo`: the gateway, the dev OpenID Provider and an echo upstream,
//! all on loopback, with no account and no files.
//!
//! The config is `config/demo.toml` (built into the binary) with its ports
//! moved to follow `--listen`. Sessions live in memory, or in Redis when
//! `REDIS_URL` is set.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use crate::devop::{DevOp, DevOpOptions, EchoUpstream};

const DEMO_CONFIG: &str = include_str!("../config/demo.toml");

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("cannot start the dev OpenID Provider on {address}: {source}")]
    Provider {
        address: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot start the echo upstream on {address}: {source}")]
    Upstream {
        address: SocketAddr,
        source: std::io::Error,
    },
    #[error("demo config: {0}")]
    Config(#[from] crate::config::ConfigErrors),
    #[error("{0}")]
    Serve(#[from] crate::ServeError),
}

/// The demo config for a gateway on `listen`, OP on the next port, upstream
/// on the one after, and the store named by `redis_url` (memory if None).
pub fn demo_config(
    listen: SocketAddr,
    redis_url: Option<&str>,
) -> Result<crate::config::Config, crate::config::ConfigErrors> {
    let provider = with_port(listen, 1);
    let upstream = with_port(listen, 2);
    let text = DEMO_CONFIG
        .replace("127.0.0.1:4180", &listen.to_string())
        .replace("localhost:4181", &format!("localhost:{}", provider.port()))
        .replace("127.0.0.1:4182", &upstream.to_string());
    let mut environment = BTreeMap::new();
    if let Some(url) = redis_url {
        environment.insert("PORTICO_SESSION__STORE".to_string(), "redis".to_string());
        environment.insert("PORTICO_SESSION__REDIS_URL".to_string(), url.to_string());
    }
    crate::config::parse(&text, &environment)
}

fn with_port(address: SocketAddr, offset: u16) -> SocketAddr {
    SocketAddr::new(address.ip(), address.port().saturating_add(offset))
}

pub async fn run(listen: SocketAddr) -> Result<(), DemoError> {
    let redis_url = std::env::var("REDIS_URL").ok();
    let config = demo_config(listen, redis_url.as_deref())?;
    let provider_address = with_port(listen, 1);
    let upstream_address = with_port(listen, 2);
    let options = DevOpOptions {
        client_id: config.oidc.client_id.clone(),
        client_secret: config
            .oidc
            .client_secret
            .as_ref()
            .map(|secret| secret.expose().clone())
            .unwrap_or_default(),
        redirect_uris: vec![config.oidc.redirect_url.to_string()],
        // The issuer in demo.toml: passkeys need a host name as WebAuthn RP ID.
        public_host: Some("localhost".to_string()),
        ..DevOpOptions::default()
    };
    let provider = DevOp::start_on(provider_address, options)
        .await
        .map_err(|source| DemoError::Provider {
            address: provider_address,
            source,
        })?;
    let upstream = EchoUpstream::start_on(upstream_address)
        .await
        .map_err(|source| DemoError::Upstream {
            address: upstream_address,
            source,
        })?;
    tracing::info!(
        gateway = %config.server.public_url,
        provider = %provider.issuer(),
        upstream = %upstream.url(),
        store = if redis_url.is_some() { "redis" } else { "memory" },
        "portico demo is running: open the gateway URL, sign in as alice (role admin) or bob; \
         /admin needs the admin role, /public needs no sign-in"
    );
    crate::serve(config).await?;
    drop(upstream);
    drop(provider);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_config_is_valid_and_follows_the_listen_port() {
        let config = demo_config("127.0.0.1:5180".parse().unwrap(), None).unwrap();
        assert_eq!(config.oidc.issuer, "http://localhost:5181");
        assert_eq!(config.routes[0].upstream.as_str(), "http://127.0.0.1:5182/");
        assert_eq!(config.session.store, crate::config::StoreKind::Memory);
        let with_redis = demo_config(
            "127.0.0.1:5180".parse().unwrap(),
            Some("redis://127.0.0.1:1/0"),
        )
        .unwrap();
        assert_eq!(with_redis.session.store, crate::config::StoreKind::Redis);
    }
}
