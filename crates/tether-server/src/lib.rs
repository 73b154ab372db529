//! Tether's server: front doors, fan-out, configuration.
//!
//! # Layout
//! Data flows one way: socket → [`protocol`] decode → [`engine`] → store
//! (`tether-store`) → [`fanout`] → [`protocol`] encode → socket.
//!
//! - [`config`]: layered configuration (defaults, TOML, `TETHER_*`, flags).
//! - [`app`]: assembles store and engine; starts and stops a server.
//! - [`engine`]: the one entry point for changing and reading channels, and
//!   [`engine::subscription`], the exact-resume mechanism.
//! - [`auth`]: API keys, tokens, capabilities; who a caller is.
//! - [`limits`]: connection caps.
//! - [`llm`]: the LLM bridge, the fake LLM and the AI SDK resume endpoint.
//! - [`demo`]: `tether demo` (fake model, demo agents, demo pages).
//! - [`presence`]: who is on each channel (state, not log).
//! - [`tls`]: optional HTTPS/WSS with rustls.
//! - [`fanout`]: the fan-out seam (in `tether-engine`).
//! - [`protocol`]: every wire type; the only place frames are built.
//! - [`ws`]: the WebSocket connection (reader, writer, ack loop, attachments).
//! - [`http`]: router, REST ([`http::rest`]) and SSE ([`http::sse`]).

pub mod app;
pub mod auth;
pub mod config;
pub mod demo;
pub mod http;
pub mod limits;
pub mod llm;
pub mod protocol;
pub mod tls;
pub mod ws;

// The engine, fan-out and presence live in `tether-engine`; these names
// keep the doors' paths (`crate::engine::…`) as they were.
pub use tether_engine as engine;
pub use tether_engine::{fanout, presence};

pub use app::{Server, StartError};
pub use config::Config;
