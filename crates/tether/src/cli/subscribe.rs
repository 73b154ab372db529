//! `tether subscribe <channel>`: prints events as they happen, resuming by
//! itself across reconnects (the SDK does the resume).

use clap::Args;
use futures::StreamExt;
use serde_json::json;
use tether_client::{Client, ConnectionState, Event, Serial, SubscribeOptions};

use super::{Failure, Format, Target, notes_enabled, print_json, print_line, print_message};

/// Flags of `tether subscribe`.
#[derive(Debug, Args)]
pub struct SubscribeArgs {
    /// The channel.
    pub channel: String,
    /// Resume after this position (a serial printed earlier).
    #[arg(long)]
    pub from: Option<String>,
    /// First print the current version of the last N messages (0-1000).
    #[arg(long)]
    pub rewind: Option<usize>,
    #[command(flatten)]
    pub target: Target,
}

/// Subscribes and prints until interrupted. Piped output is one JSON
/// message event per line, and `{"event":"continuity_lost","error":{..}}`
/// when the server could not resume (what was printed before is stale).
pub async fn run(args: SubscribeArgs) -> Result<(), Failure> {
    let mut options = SubscribeOptions::default();
    if let Some(from) = &args.from {
        let from: Serial = from.parse().map_err(|e| format!("--from: {e}"))?;
        options = options.from(from);
    }
    if let Some(rewind) = args.rewind {
        options = options.rewind(rewind);
    }
    let client = Client::connect(&args.target.url, args.target.options()).await?;
    let channel = client.channel(&args.channel)?;
    if notes_enabled() {
        tokio::spawn(report_connection(client.clone()));
    }
    let mut events = channel.subscribe_with(options).await?;
    let format = Format::detect();
    while let Some(event) = events.next().await {
        match event {
            Event::Message(message) => print_message(format, &message)?,
            Event::ContinuityLost(error) => match format {
                Format::Json => print_json(&json!({"event": "continuity_lost", "error": error}))?,
                Format::Human => print_line(&format!(
                    "-- continuity lost ({error}); current state follows --"
                ))?,
            },
            _ => {}
        }
    }
    Err("the subscription ended".to_owned().into())
}

/// Tells the person at the terminal when the connection drops and when it
/// is back (not every failed attempt in between).
async fn report_connection(client: Client) {
    let mut state = client.state();
    let mut down = false;
    while state.changed().await.is_ok() {
        let note = match &*state.borrow_and_update() {
            ConnectionState::Disconnected { reason, .. } if !down => {
                down = true;
                format!("connection lost ({reason}); reconnecting")
            }
            ConnectionState::Connected { .. } if down => {
                down = false;
                "reconnected; resuming".to_owned()
            }
            _ => continue,
        };
        eprintln!("tether: {note}");
    }
}
