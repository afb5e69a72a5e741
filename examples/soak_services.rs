//! The dev OP and the echo upstream in their own process, for `scripts/soak`:
//! the gateway under test then runs alone in its process, so its memory is
//! measured without theirs.
//!
//!   soak_services OP_ADDRESS UPSTREAM_ADDRESS REDIRECT_URI TOKEN_SECONDS
//!
//! The OP signs `alice` in without a form (auto-approve) and issues tokens
//! living TOKEN_SECONDS. Runs until killed.
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::time::Duration;

use portico::devop::{DevOp, DevOpOptions, EchoUpstream};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let arguments: Vec<String> = std::env::args().skip(1).collect();
    let [op_address, upstream_address, redirect_uri, token_seconds] = arguments.as_slice() else {
        return Err(
            "usage: soak_services OP_ADDRESS UPSTREAM_ADDRESS REDIRECT_URI TOKEN_SECONDS".into(),
        );
    };
    let op_address: SocketAddr = op_address.parse()?;
    let upstream_address: SocketAddr = upstream_address.parse()?;
    let lifetime = Duration::from_secs(token_seconds.parse()?);
    let options = DevOpOptions {
        client_id: "portico-soak".to_owned(),
        client_secret: "soak-secret".to_owned(),
        redirect_uris: vec![redirect_uri.clone()],
        access_token_ttl: lifetime,
        id_token_ttl: lifetime,
        ..DevOpOptions::default()
    };
    let op = DevOp::start_on(op_address, options).await?;
    op.set_auto_approve(Some("alice".to_owned()));
    let upstream = EchoUpstream::start_on(upstream_address).await?;
    eprintln!(
        "soak services: OP {} upstream {}",
        op.issuer(),
        upstream.url()
    );
    tokio::signal::ctrl_c().await?;
    Ok(())
}
