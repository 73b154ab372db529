//! Server configuration: defaults, then an optional TOML file, then
//! `TETHER_*` environment variables, then command-line flags (each layer
//! overrides the one before).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};
use tether_core::{NamespaceSettings, Namespaces};
use tether_store::FsyncMode;

/// Everything `tether serve` can be told.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Where the embedded store keeps its files.
    pub data_dir: PathBuf,
    /// When the store fsyncs: `batch` (default), `always` or `never`.
    pub fsync: FsyncMode,
    /// Development mode: no authentication, loopback only.
    pub dev: bool,
    /// Origins allowed by CORS; `*` allows any. Empty disables CORS.
    pub cors_origins: Vec<String>,
    /// How often the server sends heartbeats (ms).
    pub heartbeat_ms: u64,
    /// A WebSocket that sends nothing for this long is closed (ms).
    pub idle_timeout_ms: u64,
    /// Largest accepted WebSocket frame or HTTP body (bytes).
    pub max_frame_bytes: usize,
    /// Most channels one WebSocket connection may attach.
    pub max_channels_per_connection: usize,
    /// Frames queued for one slow connection before it is disconnected.
    pub outbound_queue: usize,
    /// Messages of current state sent after a continuity loss when the
    /// client asked for no rewind.
    pub rewind_on_lost: usize,
    /// Log format: `text` or `json`.
    pub log_format: String,
    /// Settings for channels whose namespace has no entry below.
    pub namespace_defaults: NamespaceSettings,
    /// Settings per namespace (the part of a channel name before `:`).
    pub namespaces: HashMap<String, NamespaceSettings>,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 7400)),
            data_dir: PathBuf::from("./tether-data"),
            fsync: FsyncMode::Batch,
            dev: false,
            cors_origins: Vec::new(),
            heartbeat_ms: 15_000,
            idle_timeout_ms: 45_000,
            max_frame_bytes: 128 * 1024,
            max_channels_per_connection: 100,
            outbound_queue: 4096,
            rewind_on_lost: 100,
            log_format: "text".into(),
            namespace_defaults: NamespaceSettings::default(),
            namespaces: HashMap::new(),
        }
    }
}

/// Why a configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A layer could not be read or has wrong types.
    #[error("invalid configuration: {0}")]
    Invalid(#[from] Box<figment::Error>),
    /// Values that are each valid but make no sense together.
    #[error("invalid configuration: {0}")]
    Inconsistent(String),
}

impl Config {
    /// Loads the layers. `file` is an optional TOML path; `overrides` are
    /// the command-line flags that were given (serialized, `None`s skipped).
    pub fn load(file: Option<&PathBuf>, overrides: impl Serialize) -> Result<Config, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = file {
            figment = figment.merge(Toml::file_exact(path));
        }
        let config: Config = figment
            // TETHER_LOG (log filter), TETHER_CONFIG (this file's path) and
            // the CLI's TETHER_URL / TETHER_TOKEN are not server settings.
            .merge(
                Env::prefixed("TETHER_")
                    .ignore(&["log", "config", "url", "token"])
                    .split("__"),
            )
            .merge(Serialized::defaults(overrides))
            .extract()
            .map_err(Box::new)?;
        config.validate()?;
        Ok(config)
    }

    /// Rejects settings that would make the server misbehave.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.heartbeat_ms == 0 || self.idle_timeout_ms <= self.heartbeat_ms {
            return Err(ConfigError::Inconsistent(
                "idle_timeout_ms must be greater than heartbeat_ms, and both positive".into(),
            ));
        }
        if self.outbound_queue == 0 || self.max_frame_bytes < 1024 {
            return Err(ConfigError::Inconsistent(
                "outbound_queue must be positive and max_frame_bytes at least 1024".into(),
            ));
        }
        if self.dev && !self.listen.ip().is_loopback() {
            return Err(ConfigError::Inconsistent(
                "--dev disables authentication and may only listen on a loopback address".into(),
            ));
        }
        if !matches!(self.log_format.as_str(), "text" | "json") {
            return Err(ConfigError::Inconsistent(
                "log_format must be text or json".into(),
            ));
        }
        Ok(())
    }

    /// The per-namespace settings as the core understands them.
    pub fn namespaces(&self) -> Namespaces {
        Namespaces {
            default: self.namespace_defaults.clone(),
            namespaces: self.namespaces.clone(),
        }
    }

    /// Heartbeat interval.
    pub fn heartbeat(&self) -> Duration {
        Duration::from_millis(self.heartbeat_ms)
    }

    /// Idle timeout.
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_millis(self.idle_timeout_ms)
    }
}
