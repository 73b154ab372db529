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

use crate::auth::{KeyConfig, PublicKeyConfig};

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
    /// Free bytes the data directory's file system must keep. Below it,
    /// writes are refused with 50700 (nothing applied), reads still work,
    /// `/readyz` answers 503, and writing resumes by itself once space is
    /// back. The reserve also keeps the store's own flushes and compactions
    /// from failing. 0 disables the check.
    pub min_free_bytes: u64,
    /// Memory for the store's cache of disk blocks (bytes).
    pub store_cache_bytes: u64,
    /// Most memory all of the store's write buffers (memtables) hold
    /// together before the largest is flushed to disk (bytes). Without a
    /// cap each of its keyspaces may buffer 64 MiB.
    pub store_write_buffer_bytes: u64,
    /// Most memory for the store writer's cache of hot message states, which
    /// spares streaming appends a read per fragment (bytes, approximate).
    pub store_state_cache_bytes: u64,
    /// Seconds a cached message state nobody writes to stays in that cache
    /// (at least this, at most twice). Keeps the cache to what is being
    /// streamed now instead of filling it with finished responses, so
    /// memory levels off under steady streaming. Positive.
    pub store_state_cache_idle_secs: u64,
    /// Recent events each subscribed channel keeps in memory for its live
    /// subscribers; a subscriber further behind reads the log instead. The
    /// buffer stays full (of old events, about 1 KiB each) for as long as
    /// the channel has a subscriber, so this times the number of watched
    /// channels is memory: at 1,024, 200 streaming channels held ~200 MiB.
    /// Each subscriber also has its own outbound queue (`outbound_queue`)
    /// behind this buffer.
    pub broadcast_capacity: usize,
    /// Development mode: no authentication, loopback only.
    pub dev: bool,
    /// PEM certificate chain: serve HTTPS and WSS (with `tls_key`).
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `tls_cert`.
    pub tls_key: Option<PathBuf>,
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
    /// Frames queued for one connection; bursts beyond it wait for the
    /// socket to drain.
    pub outbound_queue: usize,
    /// How long a full outbound queue may stay full before the connection
    /// is closed as too slow (ms).
    pub slow_consumer_timeout_ms: u64,
    /// Messages of current state sent after a continuity loss when the
    /// client asked for no rewind.
    pub rewind_on_lost: usize,
    /// Log format: `text` or `json`.
    pub log_format: String,
    /// API keys by name. `--key name:secret` adds one with every capability.
    pub keys: HashMap<String, KeyConfig>,
    /// Public keys of external token issuers, by `kid`.
    pub public_keys: HashMap<String, PublicKeyConfig>,
    /// Most open connections (WebSocket and SSE) on this server.
    pub max_connections: usize,
    /// Most open connections per API key (tokens count against their key).
    pub max_connections_per_key: usize,
    /// Sustained mutations (publish/append/update/delete) per second per
    /// connection; bursts up to `publish_burst` are allowed.
    pub publish_rate_per_sec: u32,
    /// Largest burst of mutations a connection may send at once.
    pub publish_burst: u32,
    /// Most presence members per channel.
    pub max_presence_members: usize,
    /// A connection that vanishes without closing leaves presence after
    /// this long, unless it resumes first (ms).
    pub presence_grace_ms: u64,
    /// How long a vanished connection can be resumed with its resume key,
    /// keeping its id, presence and exactly-once state (ms).
    pub resume_ttl_ms: u64,
    /// Settings for channels whose namespace has no entry below.
    pub namespace_defaults: NamespaceSettings,
    /// Settings per namespace (the part of a channel name before `:`).
    pub namespaces: HashMap<String, NamespaceSettings>,
    /// The LLM bridge (`[llm]`); off until `base_url` is set.
    pub llm: crate::llm::LlmConfig,
    /// Time for an HTTP request's headers to arrive once the connection is
    /// open or the previous request ended (ms). Past it the connection is
    /// closed, so half-sent requests cannot hold sockets (slowloris).
    pub header_read_timeout_ms: u64,
    /// Time for a request body to arrive completely (ms); past it the
    /// request fails with `40802`.
    pub body_read_timeout_ms: u64,
    /// Most open TCP connections of any kind (plain HTTP, SSE, WebSocket);
    /// beyond it new connections wait in the kernel's backlog. Keep it
    /// below the process's file-descriptor limit.
    pub max_http_connections: usize,
    /// A WebSocket opened without a credential must send its `auth` frame
    /// within this long (ms), or it is closed with `40801`.
    pub auth_timeout_ms: u64,
    /// Most WebSockets waiting for their `auth` frame at once; counted
    /// apart from every key's connections.
    pub max_unauthenticated_connections: usize,
    /// Largest presence data (enter/update) in bytes (`41302`).
    pub max_presence_data_bytes: usize,
    /// Sustained presence changes (enter/update/leave) per second per
    /// connection (`42905`); bursts up to `presence_burst`.
    pub presence_rate_per_sec: u32,
    /// Largest burst of presence changes a connection may send at once.
    pub presence_burst: u32,
    /// Longest token lifetime accepted (`exp` minus `iat`, or minus now when
    /// there is no `iat`), in seconds; longer tokens are refused.
    pub max_token_lifetime_secs: u64,
    /// On SIGTERM, how long operations already read may take to finish and
    /// be answered before connections close (ms).
    pub shutdown_grace_ms: u64,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 7400)),
            data_dir: PathBuf::from("./tether-data"),
            fsync: FsyncMode::Batch,
            min_free_bytes: tether_store::StoreConfig::DEFAULT_MIN_FREE_BYTES,
            store_cache_bytes: tether_store::StoreConfig::DEFAULT_CACHE_BYTES,
            store_write_buffer_bytes: tether_store::StoreConfig::DEFAULT_WRITE_BUFFER_BYTES,
            store_state_cache_bytes: tether_store::StoreConfig::DEFAULT_STATE_CACHE_BYTES,
            store_state_cache_idle_secs: tether_store::StoreConfig::DEFAULT_STATE_CACHE_IDLE
                .as_secs(),
            broadcast_capacity: 256,
            dev: false,
            tls_cert: None,
            tls_key: None,
            cors_origins: Vec::new(),
            heartbeat_ms: 15_000,
            idle_timeout_ms: 45_000,
            max_frame_bytes: 128 * 1024,
            max_channels_per_connection: 100,
            outbound_queue: 1024,
            slow_consumer_timeout_ms: 5_000,
            rewind_on_lost: 100,
            log_format: "text".into(),
            keys: HashMap::new(),
            public_keys: HashMap::new(),
            max_connections: 10_000,
            max_connections_per_key: 5_000,
            publish_rate_per_sec: 500,
            publish_burst: 2_000,
            max_presence_members: 1_000,
            presence_grace_ms: 15_000,
            resume_ttl_ms: 120_000,
            namespace_defaults: NamespaceSettings::default(),
            namespaces: HashMap::new(),
            llm: crate::llm::LlmConfig::default(),
            header_read_timeout_ms: 10_000,
            body_read_timeout_ms: 30_000,
            max_http_connections: 10_000,
            auth_timeout_ms: 10_000,
            max_unauthenticated_connections: 1_000,
            max_presence_data_bytes: 16 * 1024,
            presence_rate_per_sec: 20,
            presence_burst: 200,
            max_token_lifetime_secs: 7 * 24 * 60 * 60,
            shutdown_grace_ms: 5_000,
        }
    }
}

/// The names of the top-level settings, read off the defaults so the list
/// cannot drift from the struct.
fn setting_names() -> Vec<String> {
    match serde_json::to_value(Config::default()) {
        Ok(serde_json::Value::Object(map)) => map.keys().cloned().collect(),
        _ => Vec::new(),
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
    /// the command-line flags that were given (serialized, `None`s skipped);
    /// `keys` are `name:secret` pairs from `--key`, each granted everything.
    pub fn load(
        file: Option<&PathBuf>,
        overrides: impl Serialize,
        keys: &[String],
    ) -> Result<Config, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = file {
            figment = figment.merge(Toml::file_exact(path));
        }
        let config: Config = figment
            // Only TETHER_* variables that name a setting: others (TETHER_LOG,
            // TETHER_CONFIG, the CLI's TETHER_URL, a script's TETHER_BIN...)
            // are not server settings and must not be rejected as unknown.
            .merge(
                Env::prefixed("TETHER_")
                    .filter(|key| {
                        let top = key.as_str().split("__").next().unwrap_or_default();
                        setting_names()
                            .iter()
                            .any(|name| name.eq_ignore_ascii_case(top))
                    })
                    .split("__"),
            )
            .merge(Serialized::defaults(overrides))
            .extract()
            .map_err(Box::new)?;
        let mut config: Config = config;
        for pair in keys {
            let (name, secret) = pair.split_once(':').ok_or_else(|| {
                ConfigError::Inconsistent(format!("--key {pair:?}: expected name:secret"))
            })?;
            config.keys.insert(
                name.to_owned(),
                KeyConfig {
                    secret: secret.to_owned(),
                    capabilities: tether_core::Capabilities::all(),
                },
            );
        }
        if config.dev && config.cors_origins.is_empty() {
            // Development pages are served from anywhere on the machine.
            config.cors_origins.push("*".into());
        }
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
        if !self.dev && self.keys.is_empty() && self.public_keys.is_empty() {
            return Err(ConfigError::Inconsistent(
                "authentication is on but no key is configured: add one with --key name:secret \
                 (or [keys.NAME] in the config file), or run with --dev on a loopback address"
                    .into(),
            ));
        }
        for (name, key) in &self.keys {
            crate::auth::check_key(name, &key.secret).map_err(ConfigError::Inconsistent)?;
        }
        // `-` names the connections still waiting for their `auth` frame.
        let reserved = crate::auth::UNAUTHENTICATED;
        if self.keys.contains_key(reserved) || self.public_keys.contains_key(reserved) {
            return Err(ConfigError::Inconsistent(format!(
                "key {reserved:?}: this name is reserved for connections that have not \
                 authenticated yet; give the key another name"
            )));
        }
        if self.presence_rate_per_sec == 0 || self.presence_burst == 0 {
            return Err(ConfigError::Inconsistent(
                "presence_rate_per_sec and presence_burst must be positive".into(),
            ));
        }
        if self.auth_timeout_ms == 0 {
            return Err(ConfigError::Inconsistent(
                "auth_timeout_ms must be positive".into(),
            ));
        }
        if self.publish_rate_per_sec == 0 || self.publish_burst == 0 {
            return Err(ConfigError::Inconsistent(
                "publish_rate_per_sec and publish_burst must be positive".into(),
            ));
        }
        if self.header_read_timeout_ms == 0
            || self.body_read_timeout_ms == 0
            || self.max_http_connections == 0
            || self.max_token_lifetime_secs == 0
        {
            return Err(ConfigError::Inconsistent(
                "header_read_timeout_ms, body_read_timeout_ms, max_http_connections and \
                 max_token_lifetime_secs must be positive"
                    .into(),
            ));
        }
        if self.store_state_cache_idle_secs == 0 {
            return Err(ConfigError::Inconsistent(
                "store_state_cache_idle_secs must be positive".into(),
            ));
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err(ConfigError::Inconsistent(
                "TLS needs both tls_cert and tls_key".into(),
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

    /// Presence grace period.
    pub fn presence_grace(&self) -> Duration {
        Duration::from_millis(self.presence_grace_ms)
    }

    /// Connection resume TTL.
    pub fn resume_ttl(&self) -> Duration {
        Duration::from_millis(self.resume_ttl_ms)
    }

    /// Slow-consumer grace period.
    pub fn slow_consumer_timeout(&self) -> Duration {
        Duration::from_millis(self.slow_consumer_timeout_ms)
    }

    /// Idle timeout.
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_millis(self.idle_timeout_ms)
    }
}
