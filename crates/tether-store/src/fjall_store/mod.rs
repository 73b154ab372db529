//! The embedded store: channel logs in one [fjall] database.
//!
//! # Layout
//! - this file: configuration, opening, the [`LogStore`] impl, shutdown.
//! - [`keys`] / [`records`]: how keys and values are encoded.
//! - `reader`: the read side, run on the caller's thread against a fjall
//!   snapshot, never through the writer.
//! - `writer` / `batch`: the single writer thread: it drains the queue,
//!   assigns serials, folds with [`tether_core::apply`], commits one fjall
//!   write batch per group, fsyncs once, then calls the sink and completes
//!   the receipts.
//! - `retention`: dropping whole old messages, and forgetting old
//!   idempotency ids.
//! - `cache`: the writer's bounded cache of hot message states.
//! - `space`: refusing writes while the disk is full, without poisoning
//!   fjall; `health`: what `/readyz` reports.
//! - `marks` / `recover`: the operation high-water mark outside the journal,
//!   and the fix-up at open when the journal lost acknowledged data.
//!
//! # Keyspaces
//! | keyspace   | key                          | value                          |
//! |------------|------------------------------|--------------------------------|
//! | `log`      | channel, seq                 | the event (`Message`)          |
//! | `states`   | channel, message seq         | the current message            |
//! | `versions` | channel, message seq, seq    | the message after create/update/delete |
//! | `created`  | channel, message seq         | creation time (retention, history time ranges) |
//! | `meta`     | channel                      | epoch, first/last seq, count   |
//! | `ids`      | channel, client message id, publisher | serial and time of the original |
//! | `id_times` | time, then the `ids` key     | nothing: expiry index          |
//! | `sessions` | `s` connection id; `alive`   | session record; last alive time |
//! | `session_ops` | connection id, seq        | outcome of a sequenced operation |
//! | `meta`, `log` | `0x00 ops`                | store-wide operation count (`marks.rs`) |
//!
//! Idempotency keys were once `channel, id` with no publisher. Directories
//! written then open unchanged: those records no longer match any publish
//! (a re-send straddling the upgrade may be stored twice) and expire on the
//! usual schedule, since the expiry index still parses them.
//!
//! Every write of a group, metadata included, is one atomic fjall batch, so
//! a crash leaves the store at a batch boundary.

mod batch;
mod cache;
mod fragments;
mod keys;
mod marks;
mod message_codec;
mod reader;
mod records;
mod recover;
mod retention;
mod sessions;
mod space;
mod streaming;
mod writer;

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

use fjall::{Database, Keyspace, KeyspaceCreateOptions};
use tether_core::{ChannelName, LogBounds, Message, Namespaces, Serial};
use tokio::sync::{mpsc, oneshot};

use crate::{
    CommitSink, HistoryPage, HistoryQuery, LogStore, Receipt, StoreError, StoreFuture, StoreHealth,
    Submission,
};
use writer::{Command, Writer};

/// When an acknowledgement may be sent, relative to the disk.
///
/// Every mode writes each committed group to the OS before acknowledging, so
/// a process crash (even `kill -9`) loses nothing acknowledged; the modes
/// differ in what survives a power loss or kernel crash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FsyncMode {
    /// Group commit (default): the writer takes up to `max_batch` queued
    /// operations, commits them as one batch and fsyncs once before
    /// acknowledging any of them. Acknowledged operations survive power loss;
    /// the cost of an fsync is shared by everything that queued up behind it.
    #[default]
    Batch,
    /// One fsync per operation, no grouping. Same promise as `batch`, much
    /// slower; kept as the baseline that shows what grouping buys.
    Always,
    /// No fsync: acknowledged once handed to the OS. Survives a process crash,
    /// not a power loss or kernel crash (the OS flushes within seconds).
    Never,
}

impl FsyncMode {
    /// The names accepted by [`FromStr`], for help texts.
    pub const NAMES: [&'static str; 3] = ["batch", "always", "never"];

    fn as_str(self) -> &'static str {
        match self {
            FsyncMode::Batch => "batch",
            FsyncMode::Always => "always",
            FsyncMode::Never => "never",
        }
    }
}

impl fmt::Display for FsyncMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a string is not an fsync mode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown fsync mode {0:?}: use batch, always or never")]
pub struct InvalidFsyncMode(pub String);

impl FromStr for FsyncMode {
    type Err = InvalidFsyncMode;

    fn from_str(s: &str) -> Result<FsyncMode, InvalidFsyncMode> {
        match s {
            "batch" => Ok(FsyncMode::Batch),
            "always" => Ok(FsyncMode::Always),
            "never" => Ok(FsyncMode::Never),
            other => Err(InvalidFsyncMode(other.chars().take(32).collect())),
        }
    }
}

/// How to open a [`FjallStore`].
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// The data directory; created if missing. One process at a time.
    pub path: PathBuf,
    /// What an acknowledgement promises (see [`FsyncMode`]).
    pub fsync: FsyncMode,
    /// Most operations committed (and fsynced) as one group. Bigger groups
    /// amortize fsync further but delay the first acknowledgement of a group.
    pub max_batch: usize,
    /// Operations that may wait for the writer; a full queue makes
    /// [`LogStore::submit`] wait, which is how back-pressure reaches
    /// publishers.
    pub queue_capacity: usize,
    /// Retention, limits and idempotency windows per namespace.
    pub namespaces: Namespaces,
    /// How often the writer drops messages past their retention age and
    /// forgets old idempotency ids. `Duration::ZERO` disables the timer
    /// (retention by count still happens on write; [`FjallStore::sweep`]
    /// runs a sweep by hand).
    pub retention_sweep: Duration,
    /// Free bytes the data directory's file system must keep: below this,
    /// writes are refused with [`StoreError::InsufficientStorage`] (nothing
    /// of them applied) and the store reports not ready, until space is
    /// back. The reserve keeps fjall's own flushes and compactions from
    /// failing on a full disk (which would stop the database until it is
    /// reopened). 0 disables the check; a full disk is then noticed only
    /// when a write fails.
    pub min_free_bytes: u64,
    /// While writes are refused, how often the store checks by itself
    /// whether space is back (a write also checks).
    pub health_probe: Duration,
    /// Store-wide operations reserved ahead in the serial high-water mark
    /// (`tether-serials`): one fsync of that small file per this many
    /// operations. After a machine restart without a clean shutdown, up to
    /// this many operations count as possibly lost.
    pub serial_reserve: u64,
    /// fjall's block cache (bytes): recently read disk blocks.
    pub cache_bytes: u64,
    /// Most bytes all memtables hold together: over it, the writer has the
    /// largest flushed to disk. fjall enforces no such total (each keyspace
    /// may buffer 64 MiB before flushing, eight keyspaces here), so under
    /// steady load memory kept growing for minutes. At least 1 MiB.
    pub write_buffer_bytes: u64,
    /// The writer's cache of hot message states (approximate bytes, in two
    /// generations of half each, see `cache.rs`). Streaming needs only the
    /// messages being streamed to be hot.
    pub state_cache_bytes: u64,
    /// How long a cached message state nobody appends to (or otherwise
    /// changes) stays cached: at least this, at most twice. Without it the
    /// cache filled up to `state_cache_bytes` with finished responses,
    /// which under steady streaming took many minutes and looked like a
    /// leak; with it the cache holds only recently written messages. A
    /// message written again after that is read from disk once.
    pub state_cache_idle: Duration,
}

impl StoreConfig {
    /// Default of [`StoreConfig::min_free_bytes`]: 64 MiB.
    pub const DEFAULT_MIN_FREE_BYTES: u64 = 64 << 20;
    /// Default of [`StoreConfig::cache_bytes`]: 32 MiB.
    pub const DEFAULT_CACHE_BYTES: u64 = 32 << 20;
    /// Default of [`StoreConfig::write_buffer_bytes`]: 64 MiB.
    pub const DEFAULT_WRITE_BUFFER_BYTES: u64 = 64 << 20;
    /// Default of [`StoreConfig::state_cache_bytes`]: 32 MiB.
    pub const DEFAULT_STATE_CACHE_BYTES: u64 = 32 << 20;
    /// Default of [`StoreConfig::state_cache_idle`]: 30 s, far longer than
    /// the gap between two fragments of a live response.
    pub const DEFAULT_STATE_CACHE_IDLE: Duration = Duration::from_secs(30);
}

impl StoreConfig {
    /// The defaults for a store at `path`: group commit, batches of 1024, a
    /// queue of 8192, default namespace settings, a sweep every 30 s, a
    /// 64 MiB free-space reserve probed every second, 10,000 operations
    /// reserved ahead.
    pub fn new(path: impl Into<PathBuf>) -> StoreConfig {
        StoreConfig {
            path: path.into(),
            fsync: FsyncMode::Batch,
            max_batch: 1024,
            queue_capacity: 8192,
            namespaces: Namespaces::default(),
            retention_sweep: Duration::from_secs(30),
            min_free_bytes: StoreConfig::DEFAULT_MIN_FREE_BYTES,
            health_probe: Duration::from_secs(1),
            serial_reserve: 10_000,
            cache_bytes: StoreConfig::DEFAULT_CACHE_BYTES,
            write_buffer_bytes: StoreConfig::DEFAULT_WRITE_BUFFER_BYTES,
            state_cache_bytes: StoreConfig::DEFAULT_STATE_CACHE_BYTES,
            state_cache_idle: StoreConfig::DEFAULT_STATE_CACHE_IDLE,
        }
    }
}

/// Handles to the database and its keyspaces, shared by the writer and the
/// readers (fjall handles are cheap clones of one shared database).
#[derive(Clone)]
pub(crate) struct Handles {
    pub(crate) db: Database,
    pub(crate) log: Keyspace,
    pub(crate) states: Keyspace,
    /// Appends after each message's checkpoint (see `fragments.rs`).
    pub(crate) fragments: Keyspace,
    pub(crate) versions: Keyspace,
    pub(crate) created: Keyspace,
    pub(crate) meta: Keyspace,
    pub(crate) ids: Keyspace,
    pub(crate) id_times: Keyspace,
    pub(crate) sessions: Keyspace,
    pub(crate) session_ops: Keyspace,
}

impl Handles {
    /// Opens the database; errors name the path (and what to do, when that
    /// is known).
    fn open(config: &StoreConfig) -> Result<Handles, StoreError> {
        let path = config.path.as_path();
        let db = Database::builder(path)
            .cache_size(config.cache_bytes)
            .open()
            .map_err(|e| open_error(path, &e))?;
        let ks = |name: &str| {
            db.keyspace(name, KeyspaceCreateOptions::default)
                .map_err(|e| open_error(path, &e))
        };
        Ok(Handles {
            log: ks("log")?,
            states: ks("states")?,
            fragments: ks("fragments")?,
            versions: ks("versions")?,
            created: ks("created")?,
            meta: ks("meta")?,
            ids: ks("ids")?,
            id_times: ks("id_times")?,
            sessions: ks("sessions")?,
            session_ops: ks("session_ops")?,
            db,
        })
    }
}

/// Maps a fjall error: the engine failed, not the data.
pub(crate) fn storage(e: fjall::Error) -> StoreError {
    StoreError::Storage(e.to_string())
}

/// Why the database at `path` could not be opened, naming the path, and the
/// lock file when that is what is missing or held.
fn open_error(path: &Path, e: &fjall::Error) -> StoreError {
    let lock = path.join("lock");
    let hint = match e {
        fjall::Error::Locked => format!(
            " (another process holds the lock {}; one process per data directory)",
            lock.display()
        ),
        fjall::Error::Io(io)
            if io.kind() == std::io::ErrorKind::NotFound
                && path.join("version").exists()
                && !lock.exists() =>
        {
            format!(
                " (the lock file {} is missing; if no other process uses this directory, \
                 create it empty and start again)",
                lock.display()
            )
        }
        fjall::Error::JournalRecovery(_) => format!(
            " (a journal file, *.jnl in {}, is damaged before its end; keep a copy of the \
             directory; moving the newest journal file away lets the store open without what \
             it held, and the store then reports that loss and keeps serials past it)",
            path.display()
        ),
        _ => String::new(),
    };
    let what = format!("cannot open the database in {}: {e}{hint}", path.display());
    match e {
        fjall::Error::Io(io) => space::io_error(io, &what),
        _ => StoreError::Storage(what),
    }
}

/// The current database handles, shared by the writer and the readers.
///
/// Empty only while the writer reopens the database after a failed write
/// (fjall refuses all writes after one failed, until reopened); reads then
/// fail with [`StoreError::Storage`] for that moment.
pub(crate) struct Slot {
    current: RwLock<Option<Arc<Handles>>>,
}

impl Slot {
    fn new(handles: Arc<Handles>) -> Slot {
        Slot {
            current: RwLock::new(Some(handles)),
        }
    }

    /// The handles to read with.
    pub(crate) fn get(&self) -> Result<Arc<Handles>, StoreError> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .ok_or_else(|| {
                StoreError::Storage("the database is being reopened after a storage failure".into())
            })
    }

    pub(crate) fn set(&self, handles: Option<Arc<Handles>>) {
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = handles;
    }
}

/// Whether the store takes writes: set by the writer, read by `/readyz`.
#[derive(Default)]
pub(crate) struct Health {
    not_ready: AtomicBool,
    state: Mutex<Option<(tether_core::ErrorCode, String)>>,
}

impl Health {
    pub(crate) fn is_ready(&self) -> bool {
        !self.not_ready.load(Ordering::Acquire)
    }

    pub(crate) fn get(&self) -> StoreHealth {
        match &*self.state.lock().unwrap_or_else(PoisonError::into_inner) {
            None => StoreHealth::Ready,
            Some((code, reason)) => StoreHealth::NotReady {
                code: *code,
                reason: reason.clone(),
            },
        }
    }

    /// Marks the store as refusing writes because of `error`; logs the
    /// change once, not per refused write.
    pub(crate) fn fail(&self, error: &StoreError) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if state.is_none() {
            tracing::error!(error = %error, "the store refuses writes until this clears");
        }
        *state = Some((error.code(), error.to_string()));
        self.not_ready.store(true, Ordering::Release);
    }

    /// Marks the store as taking writes again.
    pub(crate) fn recover(&self) {
        if self.is_ready() {
            return;
        }
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if state.take().is_some() {
            tracing::info!("the store takes writes again");
        }
        self.not_ready.store(false, Ordering::Release);
    }
}

/// The embedded [`LogStore`]: one fjall database, one writer thread.
///
/// Reads run inline on the calling task against a fjall snapshot (they are
/// short point reads and range scans, and never wait for the writer), so
/// they see exactly the batches committed when they start. Writes go through
/// a bounded queue to the writer thread.
///
/// Dropping the store stops accepting submissions, lets the writer finish
/// everything already queued, persists and joins the thread (this blocks
/// briefly); [`FjallStore::shutdown`] does the same without blocking.
pub struct FjallStore {
    slot: Arc<Slot>,
    health: Arc<Health>,
    /// `None` once dropping; taking it closes the queue.
    tx: Option<mpsc::Sender<Command>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    /// Dropping it wakes and stops the sweep timer.
    ticker_stop: Option<std::sync::mpsc::Sender<()>>,
    ticker: Option<JoinHandle<()>>,
    /// Dropping it stops the health probe timer.
    probe_stop: Option<std::sync::mpsc::Sender<()>>,
    probe: Option<JoinHandle<()>>,
}

impl FjallStore {
    /// Opens (or creates) the store at `config.path` and starts its writer
    /// thread, which hands every committed batch to `sink`.
    pub fn open(config: StoreConfig, sink: Arc<dyn CommitSink>) -> Result<FjallStore, StoreError> {
        std::fs::create_dir_all(&config.path).map_err(|e| {
            space::io_error(
                &e,
                &format!("cannot create the data directory {}", config.path.display()),
            )
        })?;
        let handles = Arc::new(Handles::open(&config)?);
        let ops = recover::check(&handles, &config.path)?;
        let marks = marks::Marks::open(&config.path, ops, config.serial_reserve)?;
        let slot = Arc::new(Slot::new(handles.clone()));
        let health = Arc::new(Health::default());
        let (tx, rx) = mpsc::channel(config.queue_capacity.max(1));
        let writer = Writer::new(
            handles,
            writer::Shared {
                config: config.clone(),
                slot: slot.clone(),
                health: health.clone(),
                sink,
            },
            marks,
            ops,
        );
        let writer = std::thread::Builder::new()
            .name("tether-store-writer".into())
            .spawn(move || writer::run(writer, rx))
            .map_err(|e| StoreError::Storage(format!("cannot start the writer thread: {e}")))?;
        let (ticker_stop, ticker) = if config.retention_sweep.is_zero() {
            (None, None)
        } else {
            let (stop, handle) =
                writer::spawn_ticker(config.retention_sweep, tx.downgrade(), None)?;
            (Some(stop), Some(handle))
        };
        let (probe_stop, probe) = if config.health_probe.is_zero() {
            (None, None)
        } else {
            let (stop, handle) =
                writer::spawn_ticker(config.health_probe, tx.downgrade(), Some(health.clone()))?;
            (Some(stop), Some(handle))
        };
        Ok(FjallStore {
            slot,
            health,
            tx: Some(tx),
            writer: Mutex::new(Some(writer)),
            ticker_stop,
            ticker,
            probe_stop,
            probe,
        })
    }

    /// Stops the writer after it has committed everything queued before this
    /// call; later submissions fail with [`StoreError::Closed`]. Persists
    /// with fsync whatever the mode. Reads keep working. Safe to call twice.
    pub async fn shutdown(&self) -> Result<(), StoreError> {
        let (reply, done) = oneshot::channel();
        if self.send(Command::Shutdown(reply)).await.is_err() {
            return Ok(());
        }
        done.await.unwrap_or(Ok(()))
    }

    /// Runs a retention sweep now (drops messages past their age or count,
    /// forgets expired idempotency ids), after everything queued before it.
    /// The timer does this every `retention_sweep`; this is for tests and
    /// operators.
    pub async fn sweep(&self) -> Result<(), StoreError> {
        let (reply, done) = oneshot::channel();
        self.send(Command::Sweep(Some(reply))).await?;
        done.await.map_err(|_| StoreError::Closed)?
    }

    async fn send(&self, command: Command) -> Result<(), StoreError> {
        let tx = self.tx.as_ref().ok_or(StoreError::Closed)?;
        tx.send(command).await.map_err(|_| StoreError::Closed)
    }
}

impl Drop for FjallStore {
    fn drop(&mut self) {
        // Closing the queue lets the writer drain it, persist and exit.
        self.tx = None;
        self.ticker_stop = None;
        self.probe_stop = None;
        for ticker in [self.ticker.take(), self.probe.take()]
            .into_iter()
            .flatten()
        {
            let _ = ticker.join();
        }
        let writer = match self.writer.get_mut() {
            Ok(w) => w.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        };
        if let Some(writer) = writer
            && writer.join().is_err()
        {
            tracing::error!("the store writer thread panicked");
        }
    }
}

impl LogStore for FjallStore {
    fn health(&self) -> StoreHealth {
        if self.health.is_ready() {
            StoreHealth::Ready
        } else {
            self.health.get()
        }
    }

    fn submit(&self, submission: Submission) -> StoreFuture<'_, Result<Receipt, StoreError>> {
        Box::pin(async move {
            let (reply, receipt) = Receipt::channel();
            self.send(Command::Submit(submission, reply)).await?;
            Ok(receipt)
        })
    }

    fn bounds(
        &self,
        channel: &ChannelName,
    ) -> StoreFuture<'_, Result<Option<LogBounds>, StoreError>> {
        let channel = channel.clone();
        Box::pin(async move { self.slot.get()?.bounds(&channel) })
    }

    fn read_log(
        &self,
        channel: &ChannelName,
        after: Serial,
        limit: usize,
    ) -> StoreFuture<'_, Result<Vec<Message>, StoreError>> {
        let channel = channel.clone();
        Box::pin(async move { self.slot.get()?.read_log(&channel, after, limit) })
    }

    fn message(
        &self,
        channel: &ChannelName,
        serial: Serial,
    ) -> StoreFuture<'_, Result<Option<Message>, StoreError>> {
        let channel = channel.clone();
        Box::pin(async move { self.slot.get()?.message(&channel, serial) })
    }

    fn versions(
        &self,
        channel: &ChannelName,
        serial: Serial,
    ) -> StoreFuture<'_, Result<Vec<Message>, StoreError>> {
        let channel = channel.clone();
        Box::pin(async move { self.slot.get()?.versions(&channel, serial) })
    }

    fn history(
        &self,
        channel: &ChannelName,
        query: HistoryQuery,
    ) -> StoreFuture<'_, Result<HistoryPage, StoreError>> {
        let channel = channel.clone();
        Box::pin(async move { self.slot.get()?.history(&channel, &query) })
    }

    fn streaming_messages(
        &self,
    ) -> StoreFuture<'_, Result<Vec<(ChannelName, Message)>, StoreError>> {
        Box::pin(async move { self.slot.get()?.streaming_messages() })
    }

    fn shutdown(&self) -> StoreFuture<'_, Result<(), StoreError>> {
        Box::pin(FjallStore::shutdown(self))
    }
}
