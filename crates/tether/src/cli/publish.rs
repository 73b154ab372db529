//! `tether publish <channel> <data>`: one message over REST.

use clap::Args;
use serde_json::Value;
use tether_client::{NewMessage, Rest};

use super::{Failure, Format, Target, print_json, print_line};

/// Flags of `tether publish`.
#[derive(Debug, Args)]
pub struct PublishArgs {
    /// The channel.
    pub channel: String,
    /// The payload (a string, or JSON with --json).
    pub data: String,
    /// The message name (event type), e.g. `prompt`.
    #[arg(long)]
    pub name: Option<String>,
    /// Parse DATA as JSON instead of sending it as a string.
    #[arg(long)]
    pub json: bool,
    /// Extras, a JSON object.
    #[arg(long)]
    pub extras: Option<String>,
    /// An idempotency key: a repeat within the server's window is not
    /// stored again.
    #[arg(long)]
    pub id: Option<String>,
    #[command(flatten)]
    pub target: Target,
}

/// Publishes and prints the acknowledgement.
pub async fn run(args: PublishArgs) -> Result<(), Failure> {
    let data = if args.json {
        serde_json::from_str(&args.data).map_err(|e| format!("DATA is not valid JSON: {e}"))?
    } else {
        Value::String(args.data)
    };
    let extras = match args.extras.as_deref().map(serde_json::from_str::<Value>) {
        None => None,
        Some(Ok(Value::Object(map))) => Some(map),
        Some(_) => return Err("--extras must be a JSON object".to_owned().into()),
    };
    let rest = Rest::new(&args.target.url, &args.target.options())?;
    let message = NewMessage {
        id: args.id,
        name: args.name,
        data,
        extras,
    };
    let ack = rest.publish(&args.channel, &message).await?;
    match Format::detect() {
        Format::Json => print_json(&ack),
        Format::Human => print_line(&format!(
            "published {}{}",
            ack.serial,
            if ack.duplicate { " (duplicate)" } else { "" }
        )),
    }
}
