//! The client handle: connecting, the connection state, channel handles.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tether_core::ChannelName;
use tokio::sync::{mpsc, oneshot, watch};

use crate::auth::Auth;
use crate::channel::{Channel, ChannelShared};
use crate::driver::{self, Command, Driver, Request};
use crate::endpoint::Endpoint;
use crate::error::Error;
use crate::options::ClientOptions;
use crate::reply::Replier;
use crate::rest::Rest;

/// Where the connection stands. Observe it with [`Client::state`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConnectionState {
    /// Opening a connection; `attempt` counts failures since the last
    /// healthy connection.
    Connecting {
        /// 0 for the first try.
        attempt: u32,
    },
    /// Open; channels are (re)attached and queued operations sent.
    Connected {
        /// The server's name for this connection.
        connection_id: String,
    },
    /// Lost; the next attempt starts after `retry_in`. Operations are
    /// queued meanwhile.
    Disconnected {
        /// Why, in one line.
        reason: String,
        /// Delay before the next attempt.
        retry_in: Duration,
    },
    /// [`Client::close`] was called or every handle was dropped.
    Closed,
}

/// What the driver task and the handles share. The driver holds this (not
/// [`Inner`]) so that dropping every handle closes the command queue and
/// ends the driver.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) endpoint: Endpoint,
    pub(crate) options: ClientOptions,
    /// The credential, shared by the WebSocket and REST.
    pub(crate) auth: Arc<Auth>,
    pub(crate) state: watch::Sender<ConnectionState>,
    /// Operations not yet resolved, for [`ClientOptions::max_pending`].
    pub(crate) pending: AtomicUsize,
}

/// What the handles share.
#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) shared: Arc<Shared>,
    pub(crate) rest: Rest,
    commands: mpsc::UnboundedSender<Command>,
    channels: Mutex<HashMap<ChannelName, Weak<ChannelShared>>>,
    next_id: AtomicU64,
}

impl Inner {
    pub(crate) fn send(&self, command: Command) -> Result<(), Error> {
        self.commands.send(command).map_err(|_| Error::Closed)
    }

    pub(crate) fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Queues `request` for the driver, counting it against the backlog
    /// limit; `reply` hears the outcome.
    pub(crate) fn enqueue(
        &self,
        channel: ChannelName,
        request: Request,
        reply: Replier,
    ) -> Result<(), Error> {
        let limit = self.shared.options.max_pending;
        let slot = driver::Slot::take(&self.shared, limit)?;
        self.send(Command::Op(driver::PendingOp::new(
            channel,
            request,
            reply,
            Some(slot),
        )))
    }
}

/// A connection to a Tether server that reconnects and resumes by itself.
///
/// Cheap to clone. The connection is closed when [`Client::close`] is
/// called or every clone, [`Channel`] and subscription is dropped.
///
/// ```no_run
/// # async fn run() -> Result<(), tether_client::Error> {
/// use tether_client::{Client, ClientOptions, ConnectionState};
///
/// let client = Client::connect("http://127.0.0.1:7400", ClientOptions::default()).await?;
/// let mut state = client.state();
/// tokio::spawn(async move {
///     while state.changed().await.is_ok() {
///         if let ConnectionState::Disconnected { reason, retry_in } = &*state.borrow() {
///             eprintln!("disconnected ({reason}); retrying in {retry_in:?}");
///         }
///     }
/// });
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

impl Client {
    /// Connects to the server at `url` (`http://host:port`, or the
    /// `ws://host:port/ws` URL itself).
    ///
    /// The first connection is made before this returns, so a wrong URL or
    /// a server that is not running is reported here. After that the
    /// client reconnects by itself, with exponential backoff and jitter,
    /// and resumes every subscription where it left off.
    pub async fn connect(url: &str, options: ClientOptions) -> Result<Client, Error> {
        let endpoint = Endpoint::parse(url)?;
        let auth = Auth::new(&options);
        let rest = Rest::with_endpoint(endpoint.clone(), &options, auth.clone());
        let shared = Arc::new(Shared {
            endpoint,
            auth,
            options,
            state: watch::Sender::new(ConnectionState::Connecting { attempt: 0 }),
            pending: AtomicUsize::new(0),
        });
        let first = driver::open(&shared).await?;
        shared.state.send_replace(ConnectionState::Connected {
            connection_id: first.1.connection_id.clone(),
        });
        let (commands, rx) = mpsc::unbounded_channel();
        let driver = Driver::new(shared.clone(), rx);
        tokio::spawn(driver.run(first));
        Ok(Client {
            inner: Arc::new(Inner {
                shared,
                rest,
                commands,
                channels: Mutex::new(HashMap::new()),
                next_id: AtomicU64::new(1),
            }),
        })
    }

    /// A handle on channel `name` (validated here, so a bad name fails
    /// before anything is sent).
    pub fn channel(&self, name: &str) -> Result<Channel, Error> {
        let name = ChannelName::new(name)?;
        let mut channels = self
            .inner
            .channels
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let shared = match channels.get(&name).and_then(Weak::upgrade) {
            Some(shared) => shared,
            None => {
                // Forget channels nobody holds any more before adding one.
                channels.retain(|_, weak| weak.strong_count() > 0);
                let shared = Arc::new(ChannelShared::new());
                channels.insert(name.clone(), Arc::downgrade(&shared));
                shared
            }
        };
        Ok(Channel {
            name,
            inner: self.inner.clone(),
            shared,
        })
    }

    /// The connection state, updated as it changes. Do not hold a
    /// `borrow()` of it across an `.await`: the client cannot update it
    /// meanwhile.
    pub fn state(&self) -> watch::Receiver<ConnectionState> {
        self.inner.shared.state.subscribe()
    }

    /// The REST client of the same server, with the same credentials.
    pub fn rest(&self) -> &Rest {
        &self.inner.rest
    }

    /// Drops the current connection (like a network failure would, so the
    /// server keeps it for a resume) and reconnects at once, resuming the
    /// connection: presence is kept, channels continue from their
    /// positions, and what was not acknowledged is re-sent and applied
    /// once. Useful after a network change; tests use it to exercise resume.
    pub fn reconnect(&self) {
        let _ = self.inner.send(Command::Reconnect);
    }

    /// Closes the connection cleanly: the server leaves this connection's
    /// presence at once and forgets it (it cannot be resumed). Operations
    /// not yet acknowledged fail with [`Error::Closed`]; subscriptions end.
    pub async fn close(&self) {
        let (done, wait) = oneshot::channel();
        if self.inner.send(Command::Close(done)).is_ok() {
            let _ = wait.await;
        }
    }
}

/// A fresh idempotency key for a publish: random, so it cannot collide with
/// another client's within the server's dedupe window.
pub(crate) fn new_message_id() -> String {
    format!("sdk-{:032x}", rand::random::<u128>())
}
