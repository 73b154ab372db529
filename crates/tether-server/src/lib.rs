//! Tether's server: the front doors, auth, limits, configuration, TLS, and
//! the assembly that starts and stops a server.
//!
//! # Layout
//! Data flows one way: socket → door decode ([`doors`], [`protocol`]) →
//! engine (`tether-engine`) → store (`tether-store`) → fan-out → door
//! encode → socket.
//!
//! - [`config`]: layered configuration (defaults, TOML, `TETHER_*`, flags).
//! - `app`: builds store, engine and router; starts and stops a server.
//! - `state`: what every handler reaches (the engine, config, registries).
//! - `router`: every route, in one table.
//! - `doors`: one module per front door (`ws`, `sse`, `rest`, `llm`,
//!   `aisdk`) and the HTTP credential extractor they share.
//! - `sessions`: connection sessions, so a dropped connection resumes as
//!   the same one (within the TTL, and across a restart).
//! - [`auth`]: API keys, tokens, capabilities; who a caller is.
//! - `limits`: connection caps.
//! - `llm`: the LLM bridge (upstream client, jobs).
//! - [`protocol`]: the doors' encoders around `tether-protocol`.
//! - `listener`, `tls`: the accept loop and optional HTTPS/WSS.
//! - `error`: errors as HTTP responses.
//! - [`runtime`]: tokio start-up and shutdown helpers.

#![warn(missing_docs, unreachable_pub)]

mod app;
pub mod auth;
pub mod config;
mod doors;
mod error;
mod limits;
mod listener;
mod llm;
pub mod protocol;
mod router;
pub mod runtime;
mod sessions;
mod state;
mod tls;

// The engine, fan-out and presence live in `tether-engine`; these names
// keep the doors' paths (`crate::engine::…`) short.
use tether_engine as engine;
use tether_engine::{fanout, presence};

pub use app::{Server, StartError};
pub use config::Config;
pub use llm::LlmConfig;
