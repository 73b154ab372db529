//! The `tether` binary: `tether serve` runs the server; `publish`,
//! `subscribe`, `history`, `stream` and `presence` are clients (see [`cli`]).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use serde::Serialize;
use tether_server::{Config, Server};

mod cli;
mod demo;
mod fake_llm;

/// Tether: a realtime transport for AI applications.
#[derive(Debug, Parser)]
#[command(
    name = "tether",
    version,
    about = "Tether: a realtime transport for AI applications. Durable, resumable channels over WebSocket, SSE and REST, with token streaming into one message."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server (embedded durable storage, no other service needed).
    Serve(ServeArgs),
    /// Publish one message.
    Publish(cli::publish::PublishArgs),
    /// Print a channel's events as they happen, resuming across reconnects.
    Subscribe(cli::subscribe::SubscribeArgs),
    /// Print a channel's messages (current versions).
    History(cli::history::HistoryArgs),
    /// Stream standard input into one message, as appends.
    Stream(cli::stream::StreamArgs),
    /// Be present on a channel, list its members, or watch them change.
    Presence(cli::presence::PresenceArgs),
    /// Mint a token offline with an API key's secret.
    Token(cli::token::TokenArgs),
    /// Run a deterministic fake OpenAI-compatible LLM (tests, demos, benchmarks).
    FakeLlm(fake_llm::FakeLlmArgs),
    /// Run the browser demo: the server (--dev), a built-in fake LLM, demo
    /// agents and pages (chat, operator handoff, multi-agent planner).
    Demo(demo::DemoArgs),
}

/// Flags of `tether serve`. Each overrides the config file and `TETHER_*`.
#[derive(Debug, Args, Serialize)]
struct ServeArgs {
    /// A TOML configuration file.
    #[arg(long, env = "TETHER_CONFIG")]
    #[serde(skip)]
    config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:7400].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    listen: Option<String>,
    /// Data directory of the embedded store [default: ./tether-data].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    data_dir: Option<PathBuf>,
    /// When to fsync: batch (default: once per group commit), always (every
    /// operation) or never (leave it to the OS).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    fsync: Option<String>,
    /// PEM certificate chain: serve HTTPS and WSS (needs --tls-key).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    tls_key: Option<PathBuf>,
    /// Development mode: no authentication; loopback addresses only.
    #[arg(long)]
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    dev: bool,
    /// An origin allowed by CORS (repeatable; `*` for any).
    #[arg(long = "cors-origin")]
    #[serde(rename = "cors_origins", skip_serializing_if = "Vec::is_empty")]
    cors_origin: Vec<String>,
    /// An API key `name:secret` with every capability (repeatable). Keys
    /// with narrower capabilities go in the config file.
    #[arg(long = "key", env = "TETHER_KEY", hide_env_values = true)]
    #[serde(skip)]
    key: Vec<String>,
    /// Log format: text or json.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    log_format: Option<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve(args),
        Command::Publish(args) => cli::run(cli::publish::run(args)),
        Command::Subscribe(args) => cli::run(cli::subscribe::run(args)),
        Command::History(args) => cli::run(cli::history::run(args)),
        Command::Stream(args) => cli::run(cli::stream::run(args)),
        Command::Presence(args) => cli::run(cli::presence::run(args)),
        Command::Token(args) => cli::token::run(args),
        Command::FakeLlm(args) => fake_llm::run(args),
        Command::Demo(args) => demo(args),
    }
}

fn demo(args: demo::DemoArgs) -> ExitCode {
    init_logging("text");
    tether_server::runtime::block_on(async move { demo::run(args, shutdown_signal()).await })
}

fn serve(args: ServeArgs) -> ExitCode {
    let config = match Config::load(args.config.as_ref(), &args, &args.key) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("tether: {err}");
            return ExitCode::from(2);
        }
    };
    init_logging(&config.log_format);
    tether_server::runtime::block_on(async move {
        // Listening for SIGTERM before anyone can connect: a signal that
        // came before the handler would kill the process ungracefully.
        let signal = shutdown_signal();
        let dev = config.dev;
        let server = match Server::start(config).await {
            Ok(server) => server,
            Err(err) => {
                eprintln!("tether: {err}");
                return ExitCode::FAILURE;
            }
        };
        if dev {
            // After binding, so the warning names the real address (the
            // port the OS chose for `--listen 127.0.0.1:0`).
            tracing::warn!(
                "DEVELOPMENT MODE: authentication is off; anyone who can reach {} can read and write every channel",
                server.url()
            );
        }
        // The one line on stdout: scripts and tests read the bound address.
        println!("listening on {}", server.url());
        server.run_until(signal).await;
        ExitCode::SUCCESS
    })
}

/// Tether's own lines at `info`; the storage engine's start-up chatter
/// (fjall and lsm-tree log several INFO lines per open) only when it warns.
/// `TETHER_LOG` replaces the whole filter.
const DEFAULT_LOG_FILTER: &str = "info,fjall=warn,lsm_tree=warn";

fn init_logging(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("TETHER_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(DEFAULT_LOG_FILTER));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// Resolves on Ctrl-C or SIGTERM. The SIGTERM handler is installed when
/// this is called (inside the runtime), not when the future is first polled.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    let term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    async move {
        let ctrl_c = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        #[cfg(unix)]
        let term = async move {
            match term {
                Some(mut signal) => {
                    signal.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        #[cfg(not(unix))]
        let term = std::future::pending::<()>();
        tokio::select! {
            _ = ctrl_c => {},
            _ = term => {},
        }
    }
}
