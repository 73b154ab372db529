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

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fjall::PersistMode;
use tether_core::{ChannelName, Message, Namespaces};
use tokio::sync::{mpsc, oneshot};

use super::cache::HotCache;
use super::keys::{channel_prefix, trailing_seq};
use super::records::{ChannelMeta, decode};
use super::{FsyncMode, Handles, StoreConfig, storage};
use crate::{Ack, CommitSink, StoreError, Submission};

/// Cached message states per generation (see [`HotCache`]).
const STATE_CACHE_ENTRIES: usize = 4096;
/// Approximate bytes of cached message states per generation.
const STATE_CACHE_BYTES: usize = 64 << 20;
/// Cached channel metadata records per generation.
const META_CACHE_ENTRIES: usize = 65_536;

/// What the writer is asked to do.
// Nearly every command is a `Submit`: boxing it to shrink the rare ones would
// cost an allocation per operation.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Command {
    /// Apply an operation; reply once durable (or refused).
    Submit(Submission, oneshot::Sender<Result<Ack, StoreError>>),
    /// Run retention now; the timer sends it without a reply channel.
    Sweep(Option<oneshot::Sender<Result<(), StoreError>>>),
    /// Finish what is queued, persist, stop.
    Shutdown(oneshot::Sender<Result<(), StoreError>>),
}

/// The writer's state; owned by its thread.
pub(crate) struct Writer {
    pub(super) h: Handles,
    pub(super) fsync: FsyncMode,
    pub(super) max_batch: usize,
    pub(super) namespaces: Namespaces,
    pub(super) sink: Arc<dyn CommitSink>,
    /// Hot channel metadata; always equal to what is committed.
    pub(super) metas: HotCache<ChannelName, ChannelMeta>,
    /// Hot current message states; always equal to what is committed.
    pub(super) states: HotCache<(ChannelName, u64), Message>,
    /// Last time handed out, so the writer's clock never goes backwards.
    last_now: u64,
}

impl Writer {
    /// A writer over `h`, configured from `config`.
    pub(crate) fn new(h: Handles, config: &StoreConfig, sink: Arc<dyn CommitSink>) -> Writer {
        Writer {
            h,
            fsync: config.fsync,
            max_batch: config.max_batch.max(1),
            namespaces: config.namespaces.clone(),
            sink,
            metas: HotCache::new(META_CACHE_ENTRIES, usize::MAX),
            states: HotCache::new(STATE_CACHE_ENTRIES, STATE_CACHE_BYTES),
            last_now: 0,
        }
    }

    /// Serves commands until the queue is closed and empty, or a storage
    /// failure makes further writes unsafe.
    pub(crate) fn run(mut self, mut rx: mpsc::Receiver<Command>) {
        let group = match self.fsync {
            FsyncMode::Always => 1,
            FsyncMode::Batch | FsyncMode::Never => self.max_batch,
        };
        let mut deferred = None;
        let mut shutdown_replies = Vec::new();
        loop {
            let Some(command) = deferred.take().or_else(|| rx.blocking_recv()) else {
                break;
            };
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
                    if let Err(e) = self.process(subs) {
                        tracing::error!(error = %e, "store writer stopping after a storage failure");
                        // Queued submissions get `Closed` when their replies drop.
                        rx.close();
                        break;
                    }
                }
                Command::Sweep(reply) => {
                    let result = self.sweep();
                    if let Err(e) = &result {
                        tracing::warn!(error = %e, "retention sweep failed");
                    }
                    if let Some(reply) = reply {
                        let _ = reply.send(result);
                    }
                }
                Command::Shutdown(reply) => {
                    // Refuse new work; what is already queued is still served.
                    rx.close();
                    shutdown_replies.push(reply);
                }
            }
        }
        let result = self.h.db.persist(PersistMode::SyncAll).map_err(storage);
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
pub(crate) fn spawn_ticker(
    period: Duration,
    weak: mpsc::WeakSender<Command>,
) -> Result<(std::sync::mpsc::Sender<()>, std::thread::JoinHandle<()>), StoreError> {
    let (stop, stopped) = std::sync::mpsc::channel::<()>();
    let handle = std::thread::Builder::new()
        .name("tether-store-sweep".into())
        .spawn(move || {
            while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(period)
            {
                let Some(tx) = weak.upgrade() else { break };
                if let Err(mpsc::error::TrySendError::Closed(_)) = tx.try_send(Command::Sweep(None))
                {
                    break;
                }
            }
        })
        .map_err(|e| StoreError::Storage(format!("cannot start the sweep timer: {e}")))?;
    Ok((stop, handle))
}
