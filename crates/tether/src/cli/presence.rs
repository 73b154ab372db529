//! `tether presence enter|members|subscribe <channel>`: be present on a
//! channel (until interrupted), list who is present, or print member
//! changes as they happen.

use clap::{Args, Subcommand};
use futures::StreamExt;
use serde_json::{Value, json};
use tether_client::{Client, Member, PresenceEvent, Rest};

use super::{Failure, Format, Target, notes_enabled, print_json, print_line};

/// Flags of `tether presence`.
#[derive(Debug, Args)]
pub struct PresenceArgs {
    #[command(subcommand)]
    pub action: PresenceCommand,
}

/// What `tether presence` does.
#[derive(Debug, Subcommand)]
pub enum PresenceCommand {
    /// Enter the member set and stay present until interrupted (Ctrl-C
    /// leaves at once; a killed process leaves after the server's grace
    /// period).
    Enter(EnterArgs),
    /// Print the members present now, one per line.
    Members(ChannelArgs),
    /// Print member changes (enter, update, leave) as they happen,
    /// starting with who is already present.
    Subscribe(ChannelArgs),
}

/// `tether presence enter`.
#[derive(Debug, Args)]
pub struct EnterArgs {
    /// The channel.
    pub channel: String,
    /// The member data, a JSON value, e.g. `{"role":"agent","status":"idle"}`.
    #[arg(long, default_value = "null")]
    pub data: String,
    #[command(flatten)]
    pub target: Target,
}

/// `tether presence members` and `tether presence subscribe`.
#[derive(Debug, Args)]
pub struct ChannelArgs {
    /// The channel.
    pub channel: String,
    #[command(flatten)]
    pub target: Target,
}

/// Runs the chosen presence command.
pub async fn run(args: PresenceArgs) -> Result<(), Failure> {
    match args.action {
        PresenceCommand::Enter(args) => enter(args).await,
        PresenceCommand::Members(args) => members(args).await,
        PresenceCommand::Subscribe(args) => subscribe(args).await,
    }
}

async fn enter(args: EnterArgs) -> Result<(), Failure> {
    let data: Value =
        serde_json::from_str(&args.data).map_err(|e| format!("--data is not valid JSON: {e}"))?;
    let client = Client::connect(&args.target.url, args.target.options()).await?;
    let presence = client.channel(&args.channel)?.presence();
    presence.enter(data).await?;
    match Format::detect() {
        Format::Json => print_json(&json!({"entered": args.channel}))?,
        Format::Human => print_line(&format!("present on {} (Ctrl-C to leave)", args.channel))?,
    }
    // The SDK keeps the membership across reconnects (and enters again
    // if the connection could not be resumed).
    tokio::signal::ctrl_c().await?;
    client.close().await;
    if notes_enabled() {
        eprintln!("tether: left {}", args.channel);
    }
    Ok(())
}

async fn members(args: ChannelArgs) -> Result<(), Failure> {
    let rest = Rest::new(&args.target.url, &args.target.options())?;
    let format = Format::detect();
    for member in rest.presence(&args.channel).await? {
        match format {
            Format::Json => print_json(&member)?,
            Format::Human => print_line(&human(&member))?,
        }
    }
    Ok(())
}

async fn subscribe(args: ChannelArgs) -> Result<(), Failure> {
    let client = Client::connect(&args.target.url, args.target.options()).await?;
    let mut changes = client
        .channel(&args.channel)?
        .presence()
        .subscribe()
        .await?;
    let format = Format::detect();
    while let Some(change) = changes.next().await {
        match format {
            Format::Json => print_json(&event_json(&change))?,
            Format::Human => print_line(&format!(
                "{:<6} {}",
                format!("{:?}", change.action).to_lowercase(),
                human(&change.member)
            ))?,
        }
    }
    Err("the subscription ended".to_owned().into())
}

/// `{"action":"enter","member":{..},"from_sync":true}`.
fn event_json(change: &PresenceEvent) -> Value {
    json!({"action": change.action, "member": change.member, "from_sync": change.from_sync})
}

/// `c_1234 alice {"status":"idle"}`.
fn human(member: &Member) -> String {
    format!(
        "{} {} {}",
        member.connection_id,
        member.client_id.as_deref().unwrap_or("-"),
        member.data
    )
}
