//! The `portico` command: serve, check a config, or run the demo.
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::parser::ValueSource;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

const USAGE: &str = "\
portico --config PATH            serve: run the gateway with the config file PATH
       portico check --config PATH      check the file: print the effective config or every problem
       portico demo [--listen ADDR] [--public-url URL]
                                        try it: gateway + dev OpenID Provider + echo app, no files
       portico health [--url URL]       exit 0 when a running portico's /readyz says ready, else 1";

#[derive(Parser)]
#[command(
    name = "portico",
    version,
    about = "An OpenID Connect session gateway: browser sign-in, sessions in Redis, \
             an authenticated reverse proxy",
    override_usage = USAGE,
    after_help = "With no command, portico serves: `portico --config /etc/portico/portico.toml` \
                  (or PORTICO_CONFIG=/etc/portico/portico.toml portico).\n\
                  Every key can be overridden by PORTICO_<SECTION>__<KEY> variables; \
                  docs/configuration.md lists them."
)]
struct Cli {
    /// The TOML config file (or PORTICO_CONFIG). With no command, portico serves it.
    #[arg(long, env = "PORTICO_CONFIG", global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Validate the config and print the effective config (secrets masked),
    /// or every problem with its fix; exit 0 or 1. No network.
    Check,
    /// Try portico with no account and no files: the gateway, a dev OpenID
    /// Provider and an echo app, with the built-in config (config/demo.toml).
    /// Sessions in memory, or in Redis when REDIS_URL is set.
    Demo {
        /// Where the gateway listens; the dev OP and the echo app take the
        /// next two ports (the echo app on loopback only).
        #[arg(long, default_value = "127.0.0.1:4180")]
        listen: SocketAddr,
        /// The URL browsers use to reach the gateway (default: the listen
        /// address, or http://127.0.0.1:PORT when listening on 0.0.0.0 or ::,
        /// as in a container that publishes the port on the host).
        #[arg(long)]
        public_url: Option<url::Url>,
    },
    /// Ask a running portico whether it is ready (GET /readyz): exit 0 when
    /// it is, 1 otherwise. For container healthchecks; needs no curl.
    Health {
        /// portico's address or its /readyz URL [default: from --config's
        /// listen address, else http://127.0.0.1:4180/readyz]
        #[arg(long)]
        url: Option<String>,
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
        /// Serve the End-User claims (email, name, roles, …) at userinfo
        /// only, the ID token carrying just `sub` and the protocol claims,
        /// as conforming providers do for the code flow: portico with
        /// `userinfo = "auto"` then calls userinfo at every sign-in.
        #[arg(long)]
        claims_at_userinfo: bool,
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
    let matches = Cli::command().get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(error) => error.exit(),
    };
    match cli.command {
        Some(Command::Check) => check(cli.config),
        Some(Command::Health { url }) => health(url, cli.config).await,
        Some(Command::Demo { listen, public_url }) => {
            let config_source = matches
                .subcommand_matches("demo")
                .and_then(|demo| demo.value_source("config"));
            if let Some(refusal) = demo_config_refusal(config_source) {
                eprintln!("{refusal}");
                return ExitCode::from(2);
            }
            portico::ops::logging::init(portico::config::LogFormat::Text);
            match portico::demo::run(listen, public_url).await {
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
            claims_at_userinfo,
        }) => {
            portico::ops::logging::init(portico::config::LogFormat::Text);
            let options = portico::devop::DevOpOptions {
                client_id,
                client_secret,
                redirect_uris,
                access_token_ttl: Duration::from_secs(access_token_ttl),
                claims_at_userinfo,
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

/// `portico demo` runs its built-in config: a file given on the command line
/// is refused (silently ignoring it would mislead), one from PORTICO_CONFIG
/// only noted, since a container may set that for the serving image.
fn demo_config_refusal(source: Option<ValueSource>) -> Option<String> {
    match source {
        Some(ValueSource::CommandLine) => Some(
            "portico demo: --config is not used by the demo, which runs its built-in \
             configuration (config/demo.toml) with its own dev OpenID Provider and echo app.\n\
             To serve your own file:  portico --config PATH\n\
             To change the demo:      portico demo --listen ADDR --public-url URL \
             (and REDIS_URL=redis://… for sessions in Redis)"
                .to_owned(),
        ),
        Some(ValueSource::EnvVariable) => {
            eprintln!(
                "portico demo: PORTICO_CONFIG is set; the demo does not use it (it runs its \
                 built-in configuration)"
            );
            None
        }
        _ => None,
    }
}

/// `portico health`: 0 when /readyz says ready, 1 otherwise (one line why).
async fn health(url: Option<String>, config: Option<PathBuf>) -> ExitCode {
    use portico::ops::health;
    let target = match (url, config) {
        (Some(url), _) => health::readyz_url(&url),
        (None, Some(path)) => match load(Some(path)) {
            Ok(config) => health::readyz_url_for_listen(
                config.server.listen,
                config.server.tls_cert.is_some(),
            ),
            Err(code) => return code,
        },
        (None, None) => health::readyz_url(health::DEFAULT_URL),
    };
    let outcome = match target {
        Ok(url) => health::probe(&url).await.map(|()| url),
        Err(error) => Err(error),
    };
    match outcome {
        Ok(url) => {
            println!("portico health: ready ({url})");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("portico health: {error}");
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
                claims_at_userinfo,
                ..
            }) => {
                assert_eq!(redirect_uris.len(), 2);
                assert_eq!(access_token_ttl, 300);
                assert_eq!(auto_approve, "alice");
                assert!(!claims_at_userinfo, "off unless asked for");
            }
            _ => panic!("expected the dev-op subcommand"),
        }
        let at_userinfo = Cli::try_parse_from([
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
            "--auto-approve",
            "alice",
            "--claims-at-userinfo",
        ])
        .unwrap();
        assert!(matches!(
            at_userinfo.command,
            Some(Command::DevOp {
                claims_at_userinfo: true,
                ..
            })
        ));
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
