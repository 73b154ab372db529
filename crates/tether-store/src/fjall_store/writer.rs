//! The single writer thread: the one place serials are assigned.
//!
//! A plain OS thread, not a Tokio task: every step is blocking disk I/O
//! (fjall commits and fsync), and a dedicated thread keeps that off the
//! runtime's workers. It receives from a bounded Tokio queue with
//! `blocking_recv`, so submitters can await back-pressure asynchronously.
//!
//! Each round takes one command; for a submission it also takes whatever
//! else is queued (up to `max_batch`, or exactly one in `always` mode) and
//! processes the group as one batch (see `batch.rs`).
//!
//! A failed write does not stop the writer. fjall refuses every write after
//! one failed (it "poisons" the database), so the writer marks itself broken,
//! refuses writes with the failure's code and, once the file system takes
//! writes again (checked on the next command and by the health probe), closes
//! and reopens the database. Reopening recovers it to its last committed
//! batch and the writer starts with empty caches, so nothing of a failed
//! batch lives on in memory: serials continue from what is on disk.

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use fjall::PersistMode;
use tether_core::{ChannelName, Message, Namespaces};
use tokio::sync::{mpsc, oneshot};

use super::cache::HotCache;
use super::fragments::Debt;
use super::keys::{channel_prefix, trailing_seq};
use super::marks::Marks;
use super::records::{ChannelMeta, decode};
use super::{FsyncMode, Handles, Health, Slot, StoreConfig, recover, space, storage};
use crate::{Ack, CommitSink, StoreError, Submission};

/// Cached message states per generation (see [`HotCache`]); the bytes are
/// bounded by `StoreConfig::state_cache_bytes`.
const STATE_CACHE_ENTRIES: usize = 2048;
/// Cached channel metadata records per generation.
const META_CACHE_ENTRIES: usize = 65_536;
/// How long a reopen waits for readers to let go of the failed database.
const RELEASE_WAIT: Duration = Duration::from_secs(10);
/// How often the writer logs what its memory holds (debug level).
const MEMORY_REPORT: Duration = Duration::from_secs(10);
/// Least time between attempts to open the database after it failed, and
/// between checks whether a failed file system takes writes again.
const RETRY_OPEN: Duration = Duration::from_millis(500);

/// What the writer is asked to do.
// Nearly every command is a `Submit`: boxing it to shrink the rare ones would
// cost an allocation per operation.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Command {
    /// Apply an operation; reply once durable (or refused).
    Submit(Submission, oneshot::Sender<Result<Ack, StoreError>>),
    /// Run retention now; the timer sends it without a reply channel.
    Sweep(Option<oneshot::Sender<Result<(), StoreError>>>),
    /// While writes are refused: check whether they can resume.
    Probe,
    /// Finish what is queued, persist, stop.
    Shutdown(oneshot::Sender<Result<(), StoreError>>),
}

/// What the writer keeps across a reopen of the database.
pub(crate) struct Shared {
    pub(crate) config: StoreConfig,
    pub(crate) slot: Arc<Slot>,
    pub(crate) health: Arc<Health>,
    pub(crate) sink: Arc<dyn CommitSink>,
}

/// Why writes are refused until the database is reopened.
#[derive(Debug, Clone)]
pub(super) struct Broken {
    full: bool,
    message: String,
    /// The database was closed and opened again since the failure.
    reopened: bool,
    /// When the failure was seen or last re-checked: checks are spaced by
    /// [`RETRY_OPEN`], so a flood of refused writes does not turn into a
    /// flood of probe files.
    checked: Instant,
}

impl Broken {
    pub(super) fn new(e: &StoreError) -> Broken {
        Broken {
            full: matches!(e, StoreError::InsufficientStorage(_)),
            message: match e {
                StoreError::InsufficientStorage(m) | StoreError::Storage(m) => m.clone(),
                other => other.to_string(),
            },
            reopened: false,
            checked: Instant::now(),
        }
    }

    pub(super) fn error(&self) -> StoreError {
        if self.full {
            StoreError::InsufficientStorage(self.message.clone())
        } else {
            StoreError::Storage(self.message.clone())
        }
    }
}

/// The writer's state; owned by its thread.
pub(crate) struct Writer {
    pub(super) h: Arc<Handles>,
    pub(super) fsync: FsyncMode,
    pub(super) max_batch: usize,
    pub(super) namespaces: Namespaces,
    pub(super) sink: Arc<dyn CommitSink>,
    /// Hot channel metadata; always equal to what is committed.
    pub(super) metas: HotCache<ChannelName, ChannelMeta>,
    /// Hot current message states, each with what it owes its next
    /// checkpoint (`fragments.rs`); always equal to what is committed.
    pub(super) states: HotCache<(ChannelName, u64), (Message, Debt)>,
    /// Last time handed out, so the writer's clock never goes backwards.
    last_now: u64,
    /// When memory use was last logged.
    last_report: Instant,
    pub(super) shared: Shared,
    /// The operation high-water mark (`marks.rs`).
    pub(super) marks: Marks,
    /// Store-wide log entries committed so far.
    pub(super) ops: u64,
    /// Set when a write failed: fjall accepts no more writes from this
    /// database, so it must be reopened first.
    pub(super) broken: Option<Broken>,
}

/// The writer between closing a failed database and opening it again.
struct Detached {
    shared: Shared,
    marks: Marks,
    last_now: u64,
    broken: Broken,
    /// When opening was last tried.
    last_attempt: Instant,
}

enum State {
    Attached(Box<Writer>),
    Detached(Box<Detached>),
}

impl State {
    /// Why writes are refused right now, if they are.
    fn refusal(&self) -> Option<StoreError> {
        match self {
            State::Attached(w) => w.broken.as_ref().map(Broken::error),
            State::Detached(d) => Some(d.broken.error()),
        }
    }

    /// Right after a write failed: closes the failed database at once and
    /// opens it again, so reads go on from a database that recovered to its
    /// last committed batch. Doing it at once matters: closing makes fjall
    /// flush what it still buffers of the failed group, and while the disk
    /// is still full that fails, so recovery drops the torn group instead
    /// of finding it complete once space is back. Writes stay refused until
    /// the file system takes writes again (see [`State::heal`]).
    fn reset(self) -> State {
        match self {
            State::Attached(w) if w.broken.as_ref().is_some_and(|b| !b.reopened) => {
                tracing::warn!("reopening the database after a failed write");
                w.detach().attach()
            }
            other => other,
        }
    }

    /// Lets writes resume once the file system takes them again (the
    /// reserve is free and a probe file can be written and synced): reopens
    /// the database first if it was not reopened since the failure. Caches
    /// start empty after a reopen, so nothing of a failed batch survives in
    /// memory.
    fn heal(self) -> State {
        let state = match self {
            State::Detached(d) if d.last_attempt.elapsed() >= RETRY_OPEN => d.attach(),
            other => other,
        };
        let State::Attached(mut w) = state else {
            return state;
        };
        let Some(broken) = w.broken.clone() else {
            return State::Attached(w);
        };
        if broken.checked.elapsed() < RETRY_OPEN {
            return State::Attached(w);
        }
        let config = &w.shared.config;
        let ready = space::check(&config.path, config.min_free_bytes)
            .and_then(|()| space::probe(&config.path));
        if let Err(e) = ready {
            w.shared.health.fail(&e);
            w.broken = Some(Broken {
                reopened: broken.reopened,
                ..Broken::new(&e)
            });
            return State::Attached(w);
        }
        let mut state = if broken.reopened {
            State::Attached(w)
        } else {
            w.detach().attach()
        };
        if let State::Attached(w) = &mut state {
            w.broken = None;
            w.shared.health.recover();
        }
        state
    }
}

impl Writer {
    /// Closes the database: readers get an error for the moment until it is
    /// open again, and the lock file is released once the last reader let go.
    fn detach(self) -> Detached {
        let Writer {
            h,
            shared,
            marks,
            last_now,
            broken,
            ..
        } = self;
        shared.slot.set(None);
        let weak = Arc::downgrade(&h);
        drop(h);
        wait_released(&weak);
        Detached {
            shared,
            marks,
            last_now,
            broken: broken.unwrap_or_else(|| Broken::new(&StoreError::Closed)),
            last_attempt: Instant::now(),
        }
    }
}

impl Detached {
    /// Opens the database again (fjall recovers it to its last committed
    /// batch); the writer continues at the operation count found there, and
    /// still refuses writes until [`State::heal`] lets them through.
    fn attach(self) -> State {
        let path = self.shared.config.path.clone();
        let opened = super::Handles::open(&self.shared.config)
            .map(Arc::new)
            .and_then(|h| recover::check(&h, &path).map(|ops| (h, ops)));
        match opened {
            Ok((h, ops)) => {
                let Detached {
                    shared,
                    marks,
                    last_now,
                    broken,
                    ..
                } = self;
                shared.slot.set(Some(h.clone()));
                let mut w = Writer::new(h, shared, marks, ops);
                w.last_now = last_now;
                w.broken = Some(Broken {
                    reopened: true,
                    ..broken
                });
                tracing::info!(ops, "database reopened");
                State::Attached(Box::new(w))
            }
            Err(e) => {
                tracing::warn!(error = %e, "reopening the database failed; retrying");
                self.shared.health.fail(&e);
                State::Detached(Box::new(Detached {
                    broken: Broken::new(&e),
                    last_attempt: Instant::now(),
                    ..self
                }))
            }
        }
    }
}

/// Waits until every reader dropped its handles to the failed database, so
/// it closes (releasing its lock file) before it is opened again.
fn wait_released(weak: &Weak<Handles>) {
    let deadline = Instant::now() + RELEASE_WAIT;
    while weak.strong_count() > 0 {
        if Instant::now() > deadline {
            tracing::error!("readers still hold the failed database; reopening anyway");
            return;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Serves commands until the queue is closed and empty. A failed write does
/// not stop it: writes are refused (with the failure's code) until the
/// database takes them again, and reads keep being served meanwhile.
pub(crate) fn run(writer: Writer, mut rx: mpsc::Receiver<Command>) {
    let group = match writer.fsync {
        FsyncMode::Always => 1,
        FsyncMode::Batch | FsyncMode::Never => writer.max_batch,
    };
    let mut state = State::Attached(Box::new(writer));
    let mut deferred = None;
    let mut shutdown_replies = Vec::new();
    loop {
        let Some(command) = deferred.take().or_else(|| rx.blocking_recv()) else {
            break;
        };
        if !matches!(command, Command::Shutdown(_)) {
            state = state.heal();
        }
        match command {
            Command::Submit(submission, reply) => {
                let mut subs = vec![(submission, reply)];
                while subs.len() < group {
                    match rx.try_recv() {
                        Ok(Command::Submit(s, r)) => subs.push((s, r)),
                        Ok(other) => {
                            deferred = Some(other);
                            break;
                        }
                        Err(_) => break,
                    }
                }
                let refusal = state.refusal();
                match (&mut state, refusal) {
                    (State::Attached(w), None) => {
                        w.process(subs);
                        state = state.reset();
                    }
                    (_, refusal) => {
                        for (_, reply) in subs {
                            let _ = reply.send(Err(refusal
                                .as_ref()
                                .map_or(StoreError::Closed, |e| Broken::new(e).error())));
                        }
                    }
                }
            }
            Command::Sweep(reply) => {
                let refusal = state.refusal();
                let result = match (&mut state, refusal) {
                    (State::Attached(w), None) => {
                        let result = w.sweep();
                        if let Err(e) = &result {
                            tracing::warn!(error = %e, "retention sweep failed");
                            w.note_failure(e);
                        }
                        state = state.reset();
                        result
                    }
                    (_, refusal) => Err(refusal.unwrap_or(StoreError::Closed)),
                };
                if let Some(reply) = reply {
                    let _ = reply.send(result);
                }
            }
            Command::Probe => {
                if let State::Attached(w) = &state
                    && w.broken.is_none()
                {
                    let config = &w.shared.config;
                    match space::check(&config.path, config.min_free_bytes) {
                        Ok(()) => w.shared.health.recover(),
                        Err(e) => w.shared.health.fail(&e),
                    }
                }
            }
            Command::Shutdown(reply) => {
                // Refuse new work; what is already queued is still served.
                rx.close();
                shutdown_replies.push(reply);
            }
        }
    }
    let result = match &mut state {
        State::Attached(w) if w.broken.is_none() => {
            let result = w.h.db.persist(PersistMode::SyncAll).map_err(storage);
            // Only a store that persisted everything may claim a clean
            // shutdown (which makes the next open trust the exact count).
            result.and_then(|()| w.marks.close(w.ops))
        }
        _ => Err(state
            .refusal()
            .unwrap_or_else(|| StoreError::Storage("the database had failed".into()))),
    };
    if let Err(e) = &result {
        tracing::error!(error = %e, "final persist failed");
    }
    for reply in shutdown_replies {
        let _ = reply.send(
            result
                .as_ref()
                .map(|_| ())
                .map_err(|e| StoreError::Storage(e.to_string())),
        );
    }
}

impl Writer {
    /// A writer over `h`, continuing the operation count at `ops`.
    pub(crate) fn new(h: Arc<Handles>, shared: Shared, marks: Marks, ops: u64) -> Writer {
        let config = &shared.config;
        Writer {
            h,
            fsync: config.fsync,
            max_batch: config.max_batch.max(1),
            namespaces: config.namespaces.clone(),
            sink: shared.sink.clone(),
            metas: HotCache::new(META_CACHE_ENTRIES, usize::MAX),
            states: HotCache::new(
                STATE_CACHE_ENTRIES,
                usize::try_from(config.state_cache_bytes / 2).unwrap_or(usize::MAX),
            )
            .with_max_age(config.state_cache_idle.max(Duration::from_millis(1))),
            last_now: 0,
            last_report: Instant::now(),
            shared,
            marks,
            ops,
            broken: None,
        }
    }

    /// Logs, every few seconds at debug level, what the store's memory
    /// holds (to tell its bounded parts from the rest of the process).
    pub(super) fn report_memory(&mut self) {
        if self.last_report.elapsed() < MEMORY_REPORT {
            return;
        }
        self.last_report = Instant::now();
        let db = &self.h.db;
        tracing::debug!(
            write_buffers = db.write_buffer_size(),
            block_cache = db.cache_size(),
            outstanding_flushes = db.outstanding_flushes(),
            journals = db.journal_count(),
            states_cached = self.states.len(),
            states_cached_bytes = self.states.bytes(),
            metas_cached = self.metas.len(),
            "store memory"
        );
    }

    /// Keeps all memtables together under `write_buffer_bytes`: fjall's own
    /// cap is not implemented (each keyspace may buffer 64 MiB), so when the
    /// total is over, the largest memtable is sealed and flushed. Only one
    /// flush at a time, so a slow disk gets fewer, larger tables rather than
    /// a pile of tiny ones.
    pub(super) fn bound_memtables(&mut self) {
        use fjall::AbstractTree;
        let cap = self.shared.config.write_buffer_bytes.max(1 << 20);
        let db = &self.h.db;
        if db.write_buffer_size() <= cap || db.outstanding_flushes() > 0 {
            return;
        }
        let h = &self.h;
        let largest = [
            &h.log,
            &h.states,
            &h.fragments,
            &h.versions,
            &h.created,
            &h.meta,
            &h.ids,
            &h.id_times,
        ]
        .into_iter()
        .max_by_key(|k| k.tree.active_memtable().size());
        if let Some(keyspace) = largest
            && let Err(e) = keyspace.rotate_memtable()
        {
            let e = space::write_error(&e);
            tracing::warn!(error = %e, "cannot flush a memtable");
            self.note_failure(&e);
        }
    }

    /// Records a failed write: fjall refuses writes after one failed, so
    /// the database must be reopened before the next (see [`State::heal`]).
    pub(super) fn note_failure(&mut self, e: &StoreError) {
        if matches!(
            e,
            StoreError::Storage(_) | StoreError::InsufficientStorage(_)
        ) {
            self.shared.health.fail(e);
            self.broken = Some(Broken::new(e));
        }
    }

    /// Milliseconds since the Unix epoch, never less than the last value.
    pub(super) fn now(&mut self) -> u64 {
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        self.last_now = self.last_now.max(wall).max(1);
        self.last_now
    }

    /// A channel's committed metadata, from the cache or the disk.
    ///
    /// On a cache miss the log's last key is checked too: if metadata ever
    /// lagged the log, the log wins, so serials are never issued twice.
    pub(super) fn load_meta(
        &mut self,
        channel: &ChannelName,
    ) -> Result<Option<ChannelMeta>, StoreError> {
        if let Some(meta) = self.metas.get(channel) {
            return Ok(Some(*meta));
        }
        let Some(bytes) = self.h.meta.get(channel.as_str()).map_err(storage)? else {
            if self.h.has_log(channel) {
                return Err(StoreError::Corrupt {
                    what: "channel metadata",
                    detail: format!("{channel} has log entries but no metadata"),
                });
            }
            return Ok(None);
        };
        let mut meta: ChannelMeta = decode("channel metadata", &bytes)?;
        if let Some(last) = self.h.log.prefix(channel_prefix(channel)).next_back() {
            let last = trailing_seq(&last.key().map_err(storage)?)?;
            if last > meta.last_seq {
                tracing::warn!(%channel, meta = meta.last_seq, log = last, "metadata lagged the log");
                meta.last_seq = last;
            }
        }
        self.metas.insert(channel.clone(), meta, 1);
        Ok(Some(meta))
    }
}

/// Starts the thread that asks the writer for a sweep every `period`.
///
/// It holds only a weak sender, so it never keeps the queue open; it stops
/// when the returned sender is dropped or the queue closes. A sweep is
/// skipped rather than waited for when the queue is full.
///
/// With `probe` set it is the health probe instead: every `period` while the
/// store refuses writes, it asks the writer to check whether they can resume.
pub(crate) fn spawn_ticker(
    period: Duration,
    weak: mpsc::WeakSender<Command>,
    probe: Option<Arc<Health>>,
) -> Result<(std::sync::mpsc::Sender<()>, std::thread::JoinHandle<()>), StoreError> {
    let (stop, stopped) = std::sync::mpsc::channel::<()>();
    let name = if probe.is_some() {
        "tether-store-probe"
    } else {
        "tether-store-sweep"
    };
    let handle = std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(period)
            {
                let command = match &probe {
                    Some(health) if health.is_ready() => continue,
                    Some(_) => Command::Probe,
                    None => Command::Sweep(None),
                };
                let Some(tx) = weak.upgrade() else { break };
                if let Err(mpsc::error::TrySendError::Closed(_)) = tx.try_send(command) {
                    break;
                }
            }
        })
        .map_err(|e| StoreError::Storage(format!("cannot start the {name} timer: {e}")))?;
    Ok((stop, handle))
}
