//! The `portico` command: serve, check a config, or run the demo.
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "portico", version, about = "An OpenID Connect session gateway")]
struct Cli {
    /// The TOML config file (or PORTICO_CONFIG).
    #[arg(long, env = "PORTICO_CONFIG", global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Validate the config and print the effective config, secrets masked.
    Check,
    /// Run the gateway, a dev OpenID Provider and an echo upstream on loopback.
    Demo {
        /// Where the gateway listens; the dev OP and the echo upstream take
        /// the next two ports.
        #[arg(long, default_value = "127.0.0.1:4180")]
        listen: SocketAddr,
    },
    /// Run the dev OpenID Provider alone (for scripts/bench), until SIGINT/SIGTERM.
    #[command(name = "dev-op", hide = true)]
    DevOp {
        /// Address to listen on; the issuer is `http://ADDR`.
        #[arg(long)]
        listen: SocketAddr,
        #[arg(long)]
        client_id: String,
        #[arg(long)]
        client_secret: String,
        /// A redirect URI the client may use (exact match); repeat for more.
        #[arg(long = "redirect-uri", required = true)]
        redirect_uris: Vec<String>,
        /// Sign every authorization request in as this user, with no page.
        #[arg(long)]
        auto_approve: String,
        /// Lifetime of issued access tokens, in seconds.
        #[arg(long, default_value_t = 300)]
        access_token_ttl: u64,
        /// Once running, write an access token (an RS256 JWT) for the
        /// auto-approved user to this file: the benchmark's bearer token.
        #[arg(long)]
        write_access_token: Option<PathBuf>,
    },
}

fn environment() -> BTreeMap<String, String> {
    std::env::vars()
        .filter(|(name, _)| name.starts_with("PORTICO_"))
        .collect()
}

/// mimalloc instead of the system allocator: a proxied request makes many
/// short-lived allocations (headers, futures), and glibc's malloc showed as
/// a sixth of the hot path's CPU time in the benchmark's profile.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Check) => check(cli.config),
        Some(Command::Demo { listen }) => {
            portico::ops::logging::init(portico::config::LogFormat::Text);
            match portico::demo::run(listen).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    eprintln!("portico demo: {error}");
                    ExitCode::FAILURE
                }
            }
        }
        Some(Command::DevOp {
            listen,
            client_id,
            client_secret,
            redirect_uris,
            auto_approve,
            access_token_ttl,
            write_access_token,
        }) => {
            portico::ops::logging::init(portico::config::LogFormat::Text);
            let options = portico::devop::DevOpOptions {
                client_id,
                client_secret,
                redirect_uris,
                access_token_ttl: Duration::from_secs(access_token_ttl),
                ..portico::devop::DevOpOptions::default()
            };
            dev_op(listen, options, auto_approve, write_access_token).await
        }
        None => serve(cli.config).await,
    }
}

async fn dev_op(
    listen: SocketAddr,
    options: portico::devop::DevOpOptions,
    auto_approve: String,
    write_access_token: Option<PathBuf>,
) -> ExitCode {
    match portico::devop::DevOp::start_on(listen, options).await {
        Ok(provider) => {
            if let Some(path) = write_access_token {
                if let Err(error) = std::fs::write(&path, provider.access_token(&auto_approve)) {
                    tracing::error!(path = %path.display(), %error, "cannot write the access token");
                    return ExitCode::FAILURE;
                }
            }
            provider.set_auto_approve(Some(auto_approve));
            tracing::info!(issuer = %provider.issuer(), "dev OP running; stop it with Ctrl-C or SIGTERM");
            portico::shutdown_signal().await;
            provider.shutdown();
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("portico dev-op: cannot start on {listen}: {error}");
            ExitCode::FAILURE
        }
    }
}

fn load(path: Option<PathBuf>) -> Result<portico::config::Config, ExitCode> {
    let Some(path) = path else {
        eprintln!("portico: no config file given; pass --config PATH or set PORTICO_CONFIG (try `portico demo` to see it work without one)");
        return Err(ExitCode::FAILURE);
    };
    portico::config::load(&path, &environment()).map_err(|errors| {
        eprintln!("{errors}");
        ExitCode::FAILURE
    })
}

fn check(path: Option<PathBuf>) -> ExitCode {
    match load(path) {
        Ok(config) => {
            println!("{}", portico::config::render_effective(&config));
            ExitCode::SUCCESS
        }
        Err(code) => code,
    }
}

async fn serve(path: Option<PathBuf>) -> ExitCode {
    let config = match load(path.clone()) {
        Ok(config) => config,
        Err(code) => return code,
    };
    portico::ops::logging::init(config.server.log_format);
    let source = path.map(|path| portico::ops::lifecycle::ConfigSource {
        path,
        environment: environment(),
    });
    match portico::serve_with_reload(config, source).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "portico stopped");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn dev_op_takes_repeated_redirect_uris_and_stays_out_of_the_help() {
        let cli = Cli::try_parse_from([
            "portico",
            "dev-op",
            "--listen",
            "127.0.0.1:4181",
            "--client-id",
            "bench",
            "--client-secret",
            "s",
            "--redirect-uri",
            "http://127.0.0.1:1/oauth2/callback",
            "--redirect-uri",
            "http://127.0.0.1:2/app/redirect_uri",
            "--auto-approve",
            "alice",
        ])
        .unwrap();
        match cli.command {
            Some(Command::DevOp {
                redirect_uris,
                access_token_ttl,
                auto_approve,
                ..
            }) => {
                assert_eq!(redirect_uris.len(), 2);
                assert_eq!(access_token_ttl, 300);
                assert_eq!(auto_approve, "alice");
            }
            _ => panic!("expected the dev-op subcommand"),
        }
        let without_redirect = Cli::try_parse_from([
            "portico",
            "dev-op",
            "--listen",
            "127.0.0.1:4181",
            "--client-id",
            "bench",
            "--client-secret",
            "s",
            "--auto-approve",
            "alice",
        ]);
        assert!(without_redirect.is_err());
        let help = Cli::command().render_help().to_string();
        assert!(!help.contains("dev-op"));
    }
}
