//! The client subcommands of `tether` (publish, subscribe, history,
//! stream, presence), one file each, all built on the Rust SDK
//! (`tether-client`). Each takes the server's URL and a credential: a
//! token, or an API key (with the client to act as).
//!
//! Output: JSON lines when stdout is not a terminal (one message or ack per
//! line, for `jq` and scripts), one readable line per event on a terminal.
//! Errors: one line on stderr, `tether: ...`, and exit code 1.

use std::fmt;
use std::future::Future;
use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use clap::Args;
use serde::Serialize;
use serde_json::Value;
use tether_client::{ClientOptions, Message};

pub mod history;
pub mod presence;
pub mod publish;
pub mod stream;
pub mod subscribe;
pub mod token;

/// Which server to talk to; shared by every client subcommand.
#[derive(Debug, Args)]
pub struct Target {
    /// The server's URL.
    #[arg(long, env = "TETHER_URL", default_value = "http://127.0.0.1:7400")]
    pub url: String,
    /// A token, sent as the `token` query parameter (WebSocket) or a
    /// bearer token (REST).
    #[arg(long, env = "TETHER_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// An API key, `name:secret` (back ends; used when no token is given).
    #[arg(long, env = "TETHER_KEY", hide_env_values = true)]
    pub key: Option<String>,
    /// With a key: the client to act as.
    #[arg(long, env = "TETHER_CLIENT_ID")]
    pub client_id: Option<String>,
}

impl Target {
    /// SDK options for this target.
    pub fn options(&self) -> ClientOptions {
        let mut options = ClientOptions::default();
        if let Some(token) = &self.token {
            options = options.token(token.clone());
        }
        if let Some(key) = &self.key {
            options = options.key(key.clone());
        }
        if let Some(client_id) = &self.client_id {
            options = options.client_id(client_id.clone());
        }
        options
    }
}

/// Why a subcommand failed, already worded for a person.
#[derive(Debug)]
pub struct Failure(String);

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<tether_client::Error> for Failure {
    fn from(err: tether_client::Error) -> Failure {
        Failure(err.to_string())
    }
}

impl From<std::io::Error> for Failure {
    fn from(err: std::io::Error) -> Failure {
        Failure(err.to_string())
    }
}

impl From<String> for Failure {
    fn from(message: String) -> Failure {
        Failure(message)
    }
}

/// Runs a subcommand to completion and turns its outcome into an exit
/// code, printing a failure as one line.
pub fn run(command: impl Future<Output = Result<(), Failure>>) -> ExitCode {
    tether_server::runtime::block_on(async move {
        match command.await {
            Ok(()) => ExitCode::SUCCESS,
            Err(failure) => {
                eprintln!("tether: {failure}");
                ExitCode::FAILURE
            }
        }
    })
}

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// One JSON value per line.
    Json,
    /// One readable line per item.
    Human,
}

impl Format {
    /// Human on a terminal, JSON lines otherwise.
    pub fn detect() -> Format {
        if std::io::stdout().is_terminal() {
            Format::Human
        } else {
            Format::Json
        }
    }
}

/// Writes one line to stdout. A closed stdout (`| head`) is not an error
/// worth a message: it ends the command quietly.
pub fn print_line(line: &str) -> Result<(), Failure> {
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{line}").and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(0),
        Err(err) => Err(err.into()),
    }
}

/// Prints a value as one JSON line.
pub fn print_json(value: &impl Serialize) -> Result<(), Failure> {
    let line = serde_json::to_string(value).map_err(|e| Failure(e.to_string()))?;
    print_line(&line)
}

/// Prints a message (an event or a stored message) in `format`.
pub fn print_message(format: Format, message: &Message) -> Result<(), Failure> {
    match format {
        Format::Json => print_json(message),
        Format::Human => print_line(&human(message)),
    }
}

/// `12:00:01.123 append 1764151200000-0000000000000042 response Hello {"stream":"streaming"}`
pub fn human(message: &Message) -> String {
    let data = match &message.data {
        Value::String(text) => text.replace('\\', "\\\\").replace('\n', "\\n"),
        other => other.to_string(),
    };
    let mut line = format!(
        "{} {:<6} {} {} {}",
        clock(message.version.timestamp),
        format!("{:?}", message.action).to_lowercase(),
        message.serial,
        message.name.as_deref().unwrap_or("-"),
        data
    );
    if let Some(extras) = &message.extras {
        line.push(' ');
        line.push_str(&Value::Object(extras.clone()).to_string());
    }
    line
}

/// `HH:MM:SS.mmm` (UTC) of a millisecond timestamp.
fn clock(ms: u64) -> String {
    let day_ms = ms % 86_400_000;
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        day_ms / 3_600_000,
        day_ms / 60_000 % 60,
        day_ms / 1000 % 60,
        day_ms % 1000
    )
}

/// Whether notes about the connection should go to stderr: only when a
/// person is watching it.
pub fn notes_enabled() -> bool {
    std::io::stderr().is_terminal()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_is_utc_time_of_day() {
        assert_eq!(clock(0), "00:00:00.000");
        assert_eq!(clock(1_764_151_200_123 + 3_723_000), "11:02:03.123");
    }

    #[test]
    fn human_lines_stay_on_one_line() {
        let message: Message = serde_json::from_value(serde_json::json!({
            "serial": "1764151200000-0000000000000001",
            "id": "x",
            "name": "response",
            "data": "two\nlines",
            "extras": {"stream": "complete"},
            "timestamp": 1_764_151_200_000u64,
            "action": "update",
            "version": {"serial": "1764151200000-0000000000000002", "timestamp": 1_764_151_200_000u64}
        }))
        .expect("message");
        assert_eq!(
            human(&message),
            r#"10:00:00.000 update 1764151200000-0000000000000001 response two\nlines {"stream":"complete"}"#
        );
    }
}
