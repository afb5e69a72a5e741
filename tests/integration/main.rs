//! portico's integration tests: one binary, one harness (`support`), real
//! parts only — redis-server, the dev OpenID Provider over HTTP, an echo
//! upstream, and the gateway built by `portico::build`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

mod authorization;
mod browser;
mod cache;
mod cli;
mod cluster;
mod compose;
mod connection_limit;
mod descope;
mod descope_browser;
mod descope_scenarios;
mod ext_authz;
mod forward_auth_redirect;
mod grpc;
mod hostile;
mod https_upstreams;
mod idle_connections;
mod ingress_nginx;
mod kubernetes;
mod lifecycle;
mod limits;
mod login;
mod logs;
mod metrics;
mod observability;
mod outages;
mod pages;
mod properties;
mod proxy;
mod screenshots;
mod sentinel;
mod sessions;
mod signals;
mod suspicions;
mod telemetry;
mod token_kinds;
mod tokens;
mod upstream_wire;
mod userinfo;
mod walkarounds;
mod websocket;
