//! `tether demo`: the server in development mode, a built-in fake language
//! model, the demo agents and the demo pages, in one process.
//!
//! ```text
//! tether demo [--listen 127.0.0.1:7400] [--data-dir ./tether-data] [--assets demo/dist]
//! ```
//!
//! # Layout
//! - this file: flags, start-up and shutdown, the agents' supervisor.
//! - [`pages`]: the built pages (from a directory) and
//!   `POST /demo/api/session`, which mints browser tokens and announces
//!   conversations to the supervisor.
//! - [`answers`]: what the built-in model (the shared fake OpenAI-compatible
//!   server, which the LLM bridge calls) answers; a real model can be
//!   configured instead: `--llm-base-url`.
//! - [`chat`]: the chat agent (one per conversation), which answers through
//!   the LLM bridge and follows the cancel and handoff conventions.
//! - [`planner`]: the trip planner's coordinator (one per trip
//!   conversation) and its flights, hotels and weather specialists.
//!
//! Development mode keeps curl and the README's examples working without
//! credentials; the demo also creates an API key so the pages use real
//! tokens with narrow capabilities (a user may edit only their own
//! messages, only an operator may claim a conversation).

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde_json::json;
use tokio::sync::mpsc;
use tokio::task::{AbortHandle, JoinSet};

use tether_server::{Config, Server};

pub mod answers;
pub mod chat;
pub mod pages;
pub mod planner;

use pages::{Announce, Kind, Pages};
use tether_client::{Client, ClientOptions, NewMessage};

/// The channel where conversations are announced; the operator page lists
/// it.
pub const LOBBY: &str = "demo:conversations";
/// Agents watching conversations at once; the oldest stop beyond it.
const MAX_AGENTS: usize = 256;
/// How long the lobby waits for an announcement's acknowledgement before
/// it gives up on its connection (the SDK would otherwise queue it until
/// the server is back, and the page waits for the announcement).
const ANNOUNCE_WITHIN: Duration = Duration::from_secs(5);

/// Flags of `tether demo`.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// A TOML configuration file (as for `tether serve`).
    #[arg(long, env = "TETHER_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:7400]. Port 0 picks a free
    /// one; the URL to open is printed.
    #[arg(long)]
    pub listen: Option<String>,
    /// Data directory of the embedded store [default: ./tether-data].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Directory of the built demo pages [default: demo/dist].
    #[arg(long)]
    pub assets: Option<PathBuf>,
    /// Pace of the built-in model and of the planner's agents.
    #[arg(long, default_value_t = 50.0)]
    pub tokens_per_second: f64,
    /// Use this OpenAI-compatible server instead of the built-in model
    /// (its key from TETHER_LLM__API_KEY). Also `[llm]` in the config file.
    #[arg(long)]
    pub llm_base_url: Option<String>,
    /// The model to ask for with --llm-base-url.
    #[arg(long)]
    pub llm_model: Option<String>,
}

/// The flags that override the configuration layers.
#[derive(Serialize)]
struct Overrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    listen: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data_dir: Option<PathBuf>,
    dev: bool,
}

/// What every agent needs.
#[derive(Clone)]
pub struct Ctx {
    /// The server's base URL.
    pub url: String,
    /// The demo's API key, `name:secret`.
    pub key: String,
    /// For the LLM bridge requests.
    pub http: reqwest::Client,
    /// Pace of the planner's agents.
    pub tokens_per_second: f64,
}

impl Ctx {
    /// Connects an agent to the server with the demo's API key, acting as
    /// `client_id`. The agents are ordinary clients on the Rust SDK, which
    /// from then on reconnects and resumes by itself (presence kept,
    /// channels continued exactly, operations applied once).
    pub async fn connect(&self, client_id: &str) -> Result<Client, tether_client::Error> {
        let options = ClientOptions::default()
            .key(self.key.clone())
            .client_id(client_id);
        Client::connect(&self.url, options).await
    }
}

/// The object of a `json!` literal (message extras are objects).
pub(crate) fn object(
    value: serde_json::Value,
) -> Option<serde_json::Map<String, serde_json::Value>> {
    match value {
        serde_json::Value::Object(map) => Some(map),
        _ => None,
    }
}

/// Runs the demo until `shutdown` resolves.
pub async fn run(args: DemoArgs, shutdown: impl Future<Output = ()>) -> ExitCode {
    let secret = format!(
        "{:016x}{:016x}",
        rand::random::<u64>(),
        rand::random::<u64>()
    );
    let key_name = "demo".to_owned();
    let overrides = Overrides {
        listen: args.listen.clone(),
        data_dir: args.data_dir.clone(),
        dev: true,
    };
    let mut config = match Config::load(
        args.config.as_ref(),
        &overrides,
        &[format!("{key_name}:{secret}")],
    ) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("tether: {err}");
            return ExitCode::from(2);
        }
    };
    if let Some(url) = args.llm_base_url {
        config.llm.base_url = Some(url);
    }
    if let Some(model) = args.llm_model {
        config.llm.model = Some(model);
    }
    // The built-in model, unless a real one is configured.
    let _model = if config.llm.base_url.is_none() {
        match answers::start(args.tokens_per_second.max(0.0), Duration::from_millis(400)).await {
            Ok(model) => {
                config.llm.base_url = Some(model.base_url());
                config.llm.model.get_or_insert_with(|| "tether-demo".into());
                Some(model)
            }
            Err(err) => {
                eprintln!("tether: cannot start the built-in model: {err}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        None
    };
    // The chat agent starts every conversation's jobs with the one demo
    // key, so it is one credential serving every visitor: let it use every
    // slot rather than `max_jobs_per_credential`.
    config.llm.max_jobs_per_credential = config.llm.max_concurrent_jobs;
    let Some(key) = config.keys.get(&key_name).cloned() else {
        eprintln!("tether: the demo key is missing");
        return ExitCode::FAILURE;
    };
    let assets = args.assets.unwrap_or_else(default_assets);
    if !assets.join("index.html").exists() {
        eprintln!(
            "tether: no demo pages in {}: build them with `cd demo && npm ci && npm run build`",
            assets.display()
        );
    }
    let (announce, announced) = mpsc::channel(64);
    let pages = Arc::new(Pages {
        assets,
        key_name: key_name.clone(),
        key,
        announce,
    });
    tracing::warn!(
        "DEVELOPMENT MODE: authentication is off; anyone who can reach {} can read and write every channel",
        config.listen
    );
    let server = match Server::start_with(config, pages::routes(pages)).await {
        Ok(server) => server,
        Err(err) => {
            eprintln!("tether: {err}");
            return ExitCode::FAILURE;
        }
    };
    let url = server.url();
    let ctx = Ctx {
        url: url.clone(),
        key: format!("{key_name}:{secret}"),
        http: reqwest::Client::new(),
        tokens_per_second: args.tokens_per_second.max(0.0),
    };
    let supervisor = tokio::spawn(supervise(ctx, announced));
    // Scripts and tests read these lines.
    println!("listening on {url}");
    println!("Tether demo: open {url}/demo/ in your browser");
    shutdown.await;
    tracing::info!("shutting down");
    // Agents leave first (cleanly: their presence goes at once).
    supervisor.abort();
    let _ = supervisor.await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    server.shutdown().await;
    ExitCode::SUCCESS
}

/// `demo/dist` under the working directory, else next to the sources this
/// binary was built from.
fn default_assets() -> PathBuf {
    let here = PathBuf::from("demo/dist");
    if here.join("index.html").exists() {
        return here;
    }
    let built_from = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../demo/dist"));
    if built_from.join("index.html").exists() {
        return built_from;
    }
    here
}

/// Starts the specialists, then an agent for each announced conversation.
/// Aborting it aborts every agent.
async fn supervise(ctx: Ctx, mut announced: mpsc::Receiver<Announce>) {
    let mut agents = JoinSet::new();
    for specialist in planner::SPECIALISTS {
        agents.spawn(planner::specialist(ctx.clone(), specialist));
    }
    let mut watching: HashMap<String, AbortHandle> = HashMap::new();
    let mut order: VecDeque<String> = VecDeque::new();
    let mut lobby: Option<Client> = None;
    // Announcements get a fresh id per run: an id seen within the
    // idempotency window would not be delivered again.
    let run_id = format!("{:08x}", rand::random::<u32>());
    while let Some(announce) = announced.recv().await {
        while agents.try_join_next().is_some() {}
        if !watching.contains_key(&announce.channel) {
            let handle = match announce.kind {
                Kind::Chat => agents.spawn(chat::run(ctx.clone(), announce.channel.clone())),
                Kind::Trip => {
                    agents.spawn(planner::coordinator(ctx.clone(), announce.channel.clone()))
                }
            };
            watching.insert(announce.channel.clone(), handle);
            order.push_back(announce.channel.clone());
            while order.len() > MAX_AGENTS {
                if let Some(handle) = order.pop_front().and_then(|c| watching.remove(&c)) {
                    handle.abort();
                }
            }
            if lobby.is_none() {
                lobby = ctx.connect("demo-backend").await.ok();
            }
            if let Some(client) = &lobby {
                let kind = match announce.kind {
                    Kind::Chat => "chat",
                    Kind::Trip => "trip",
                };
                let message = NewMessage {
                    id: Some(format!("announce-{run_id}-{}", announce.channel)),
                    name: Some("conversation".into()),
                    data: json!({"channel": announce.channel, "kind": kind, "user": announce.user}),
                    ..NewMessage::default()
                };
                let published = match client.channel(LOBBY) {
                    Ok(channel) => tokio::time::timeout(ANNOUNCE_WITHIN, channel.publish(message))
                        .await
                        .map_err(|_| "timed out".to_owned())
                        .and_then(|ack| ack.map_err(|err| err.to_string())),
                    Err(err) => Err(err.to_string()),
                };
                if let Err(err) = published {
                    tracing::warn!(error = %err, "demo: cannot announce a conversation");
                    if let Some(client) = lobby.take() {
                        client.close().await;
                    }
                }
            }
        }
        let _ = announce.done.send(());
    }
}
