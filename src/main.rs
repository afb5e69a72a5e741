//! The `portico` command: serve, check a config, or run the demo.
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

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
}

fn environment() -> BTreeMap<String, String> {
    std::env::vars()
        .filter(|(name, _)| name.starts_with("PORTICO_"))
        .collect()
}

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
        None => serve(cli.config).await,
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
