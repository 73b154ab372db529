//! Assembling and running a server: store and engine, router, and
//! graceful shutdown. Tests start servers in-process through [`Server`].

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use axum::Router;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tether_store::{FjallStore, LogStore, StoreConfig};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::auth::Authenticator;
use crate::config::Config;
use crate::engine::{Engine, EngineConfig};
use crate::limits::ConnectionSlots;
use crate::listener::{self, ListenerLimits};
use crate::router;
use crate::sessions::Sessions;
use crate::state::App;

/// Why a server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The store could not be opened.
    #[error("cannot open the store in {path}: {source}")]
    Store {
        /// The data directory.
        path: String,
        /// The store's error.
        source: tether_store::StoreError,
    },
    /// A configured public key is unusable.
    #[error(transparent)]
    Auth(#[from] crate::auth::BadPublicKey),
    /// The TLS certificate or key is unusable.
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    /// The address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
}

/// A running server.
pub struct Server {
    addr: SocketAddr,
    tls: bool,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
    /// The log, closed last in [`Server::shutdown`].
    store: Arc<dyn LogStore>,
    /// LLM jobs, so shutdown lets them record their final status.
    jobs: Arc<crate::llm::Jobs>,
    /// WebSocket connections, so shutdown waits for their replies.
    sessions: Arc<Sessions>,
    /// How long shutdown waits for connections (`shutdown_grace_ms`).
    grace: std::time::Duration,
}

impl Server {
    /// Opens the store and starts serving on `config.listen` (port 0 picks
    /// a free port; see [`Server::addr`]).
    pub async fn start(config: Config) -> Result<Server, StartError> {
        Server::start_with(config, Router::new()).await
    }

    /// Like [`Server::start`], also serving `extra` routes next to Tether's
    /// own on the same listener (`tether demo` serves its pages this way).
    /// They must not overlap Tether's routes.
    pub async fn start_with(config: Config, extra: Router) -> Result<Server, StartError> {
        let auth = Arc::new(
            Authenticator::new(config.dev, config.keys.clone(), &config.public_keys)?
                .with_max_token_lifetime(config.max_token_lifetime_secs),
        );
        let slots = Arc::new(ConnectionSlots::new(
            config.max_connections,
            config.max_connections_per_key,
            config.max_unauthenticated_connections,
        ));
        let mut store_config = StoreConfig::new(config.data_dir.clone());
        store_config.fsync = config.fsync;
        store_config.min_free_bytes = config.min_free_bytes;
        store_config.cache_bytes = config.store_cache_bytes;
        store_config.write_buffer_bytes = config.store_write_buffer_bytes;
        store_config.state_cache_bytes = config.store_state_cache_bytes;
        store_config.state_cache_idle =
            std::time::Duration::from_secs(config.store_state_cache_idle_secs);
        store_config.namespaces = config.namespaces();
        let engine_config = EngineConfig {
            namespaces: config.namespaces(),
            rewind_on_lost: config.rewind_on_lost,
            rate_per_sec: config.publish_rate_per_sec,
            burst: config.publish_burst,
            fanout_capacity: config.broadcast_capacity,
            max_presence_members: config.max_presence_members,
        };
        let (engine, store) =
            Engine::start(engine_config, |sink| FjallStore::open(store_config, sink))
                .await
                .map_err(|source| StartError::Store {
                    path: config.data_dir.display().to_string(),
                    source,
                })?;
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| StartError::Bind {
                    addr: config.listen,
                    source,
                })?;
        let addr = listener.local_addr().map_err(|source| StartError::Bind {
            addr: config.listen,
            source,
        })?;
        let (stop, shutdown) = watch::channel(false);
        tokio::spawn(engine.sweep_abandoned(shutdown.clone()));
        let sessions = Arc::new(
            Sessions::new(config.resume_ttl(), config.presence_grace()).with_store(store.clone()),
        );
        sessions.housekeeping(shutdown.clone());
        let llm = Arc::new(crate::llm::Jobs::new(&config.llm));
        let grace = std::time::Duration::from_millis(config.shutdown_grace_ms);
        let app = App {
            engine,
            config: Arc::new(config),
            shutdown: shutdown.clone(),
            metrics: metrics_handle(),
            auth,
            slots,
            sessions: sessions.clone(),
            llm: llm.clone(),
        };
        let tls = match (&app.config.tls_cert, &app.config.tls_key) {
            (Some(cert), Some(key)) => Some(crate::tls::acceptor(cert, key)?),
            _ => None,
        };
        let is_tls = tls.is_some();
        let app_config = app.config.clone();
        let router: Router = router::router(app).merge(extra);
        let limits = ListenerLimits::from_config(&app_config);
        let task = tokio::spawn(listener::serve(listener, tls, router, limits, shutdown));
        tracing::info!(%addr, "listening");
        Ok(Server {
            addr,
            tls: is_tls,
            stop,
            task,
            store,
            jobs: llm,
            sessions,
            grace,
        })
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The server's base URL (`http://` or `https://`).
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// Stops accepting and tells every connection to stop reading; waits (up
    /// to `shutdown_grace_ms`) until each has answered every operation it
    /// read and closed with 4001, and for open requests; then closes the
    /// store. Connections park on disk, so clients resume them on the next
    /// process.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        // Running LLM jobs see the flag and write their final status; give
        // them a moment before the store closes.
        let jobs = self.jobs.wait_idle(std::time::Duration::from_secs(3));
        // Each connection bounds its own drain by the grace period; the
        // margin lets one that used all of it still park its session.
        let connections = self
            .sessions
            .drained(self.grace + std::time::Duration::from_secs(1));
        let (_, drained) = tokio::join!(jobs, connections);
        if !drained {
            tracing::warn!("connections still open at the end of the shutdown grace period");
        }
        let _ = self.task.await;
        if let Err(err) = self.store.shutdown().await {
            tracing::error!(error = %err, "store did not shut down cleanly");
        }
    }

    /// Runs until `signal` resolves, then shuts down gracefully.
    pub async fn run_until(self, signal: impl std::future::Future<Output = ()>) {
        signal.await;
        tracing::info!("shutting down");
        self.shutdown().await;
    }
}

/// The process-wide Prometheus recorder. Installed once; servers started
/// later in the same process (tests) share it.
fn metrics_handle() -> Option<PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets(&[
                    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                    0.5, 1.0,
                ])
                .ok()?;
            builder.install_recorder().ok()
        })
        .clone()
}
