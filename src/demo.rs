//! `portico demo`: the gateway, the dev OpenID Provider and an echo upstream,
//! all on loopback, with no account and no files.
//!
//! The config is `config/demo.toml` (built into the binary) with its ports
//! moved to follow `--listen`. Sessions live in memory, or in Redis when
//! `REDIS_URL` is set.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use url::Url;

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
/// on the one after, the public URL browsers use (derived from `listen` when
/// None), and the store named by `redis_url` (memory if None).
pub fn demo_config(
    listen: SocketAddr,
    public_url: Option<&Url>,
    redis_url: Option<&str>,
) -> Result<crate::config::Config, crate::config::ConfigErrors> {
    let provider = with_port(listen, 1);
    let upstream = reachable(with_port(listen, 2));
    let public_url = public_url.map_or_else(
        || default_public_url(listen),
        |url| url.as_str().trim_end_matches('/').to_owned(),
    );
    // The public URL goes in last, so that it is never rewritten as a listen address.
    const PUBLIC_URL_LINE: &str = "public_url = \"http://127.0.0.1:4180\"";
    const MARKER: &str = "public_url = \"@PUBLIC_URL@\"";
    let text = DEMO_CONFIG
        .replace(PUBLIC_URL_LINE, MARKER)
        .replace("127.0.0.1:4180", &listen.to_string())
        .replace("localhost:4181", &format!("localhost:{}", provider.port()))
        .replace("127.0.0.1:4182", &upstream.to_string())
        .replace("@PUBLIC_URL@", &public_url);
    let mut environment = BTreeMap::new();
    if let Some(url) = redis_url {
        environment.insert("PORTICO_SESSION__STORE".to_string(), "redis".to_string());
        environment.insert("PORTICO_SESSION__REDIS_URL".to_string(), url.to_string());
    }
    crate::config::parse(&text, &environment)
}

/// The URL browsers use when none is given: the listen address, or loopback
/// on its port when it listens on every interface (http://0.0.0.0:4180 is no
/// address a browser can use, and a container publishes to the host's loopback).
pub fn default_public_url(listen: SocketAddr) -> String {
    format!("http://{}", reachable(listen))
}

/// `address`, with an unspecified IP (0.0.0.0, ::) replaced by loopback.
fn reachable(address: SocketAddr) -> SocketAddr {
    let ip = match address.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, address.port())
}

fn with_port(address: SocketAddr, offset: u16) -> SocketAddr {
    SocketAddr::new(address.ip(), address.port().saturating_add(offset))
}

/// Runs the demo until SIGINT/SIGTERM. The dev OP listens where the gateway
/// does (browsers must reach both); the echo upstream only on loopback, so
/// nothing but portico reaches it even when the demo listens on 0.0.0.0.
pub async fn run(listen: SocketAddr, public_url: Option<Url>) -> Result<(), DemoError> {
    let redis_url = std::env::var("REDIS_URL").ok();
    let config = demo_config(listen, public_url.as_ref(), redis_url.as_deref())?;
    let provider_address = with_port(listen, 1);
    let upstream_address = reachable(with_port(listen, 2));
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
        redis_url = %redis_url.as_deref().map(crate::config::shown_secret_url).unwrap_or_default(),
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
        let config = demo_config("127.0.0.1:5180".parse().unwrap(), None, None).unwrap();
        assert_eq!(config.oidc.issuer, "http://localhost:5181");
        assert_eq!(config.routes[0].upstream.as_str(), "http://127.0.0.1:5182/");
        assert_eq!(config.server.public_url.as_str(), "http://127.0.0.1:5180/");
        assert_eq!(config.session.store, crate::config::StoreKind::Memory);
        let with_redis = demo_config(
            "127.0.0.1:5180".parse().unwrap(),
            None,
            Some("redis://127.0.0.1:1/0"),
        )
        .unwrap();
        assert_eq!(with_redis.session.store, crate::config::StoreKind::Redis);
    }

    #[test]
    fn listening_on_every_interface_keeps_a_public_url_browsers_can_use() {
        let config = demo_config("0.0.0.0:4180".parse().unwrap(), None, None).unwrap();
        assert_eq!(config.server.public_url.as_str(), "http://127.0.0.1:4180/");
        assert_eq!(config.server.listen.to_string(), "0.0.0.0:4180");
        assert_eq!(config.routes[0].upstream.as_str(), "http://127.0.0.1:4182/");
        assert_eq!(
            config.oidc.redirect_url.as_str(),
            "http://127.0.0.1:4180/oauth2/callback"
        );
        let config = demo_config("[::]:4180".parse().unwrap(), None, None).unwrap();
        assert_eq!(config.server.public_url.as_str(), "http://[::1]:4180/");
    }

    #[test]
    fn a_given_public_url_is_used_as_it_is() {
        let public = Url::parse("http://127.0.0.1:4180").unwrap();
        let config = demo_config("0.0.0.0:4180".parse().unwrap(), Some(&public), None).unwrap();
        assert_eq!(config.server.public_url.as_str(), "http://127.0.0.1:4180/");
        assert_eq!(config.server.listen.to_string(), "0.0.0.0:4180");
        let public = Url::parse("http://localhost:8080/").unwrap();
        let config = demo_config("0.0.0.0:4180".parse().unwrap(), Some(&public), None).unwrap();
        assert_eq!(
            config.oidc.redirect_url.as_str(),
            "http://localhost:8080/oauth2/callback"
        );
        // The config's own rules still hold: plain http only on loopback.
        let public = Url::parse("http://demo.example.com/").unwrap();
        let errors = demo_config("0.0.0.0:4180".parse().unwrap(), Some(&public), None)
            .unwrap_err()
            .to_string();
        assert!(errors.contains("https"), "{errors}");
    }
}
