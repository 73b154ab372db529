//! What every request handler of every front door can reach: the engine,
//! the configuration and the server-wide registries. Kept apart from
//! [`crate::app`], which builds it, so the doors depend on this and not on
//! the assembly.

use std::sync::Arc;

use metrics_exporter_prometheus::PrometheusHandle;
use tokio::sync::watch;

use crate::auth::Authenticator;
use crate::config::Config;
use crate::engine::Engine;
use crate::limits::ConnectionSlots;
use crate::sessions::Sessions;

/// What every request handler can reach.
#[derive(Clone)]
pub(crate) struct App {
    /// The engine (store, fan-out, presence).
    pub engine: Engine,
    /// The configuration the server runs with.
    pub config: Arc<Config>,
    /// Flips to `true` when the server starts shutting down.
    pub shutdown: watch::Receiver<bool>,
    /// Renders `/metrics`.
    pub metrics: Option<PrometheusHandle>,
    /// Verifies credentials.
    pub auth: Arc<Authenticator>,
    /// Connection caps.
    pub slots: Arc<ConnectionSlots>,
    /// Connections that vanished and may still be resumed.
    pub sessions: Arc<Sessions>,
    /// Running LLM bridge jobs.
    pub llm: Arc<crate::llm::Jobs>,
}
