//! The seam between the engine and durable storage: the [`LogStore`]
//! trait and every type that crosses it. Implementations live beside it
//! (the embedded [`crate::fjall_store`]; Redis next) and must pass
//! [`crate::conformance`].

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tether_core::conventions::Authority;
use tether_core::{
    ChannelName, ContinuityLost, ErrorCode, FoldError, LogBounds, Message, Operation, Serial,
};
use tokio::sync::oneshot;

use crate::sessions::Sequenced;

/// A boxed future, so the trait can be used as `Arc<dyn LogStore>`.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A request to change a channel, with the identity the server vouches for.
#[derive(Debug, Clone)]
pub struct Submission {
    /// The channel to change.
    pub channel: ChannelName,
    /// What to do.
    pub op: Operation,
    /// The caller's identity, from its credential (never from the payload).
    pub client_id: Option<String>,
    /// The caller's connection, when it came over one.
    pub connection_id: Option<String>,
    /// The caller may only append to, update or delete messages it created
    /// (checked by the writer, atomically with the write).
    pub own_only: bool,
    /// The caller's rights for the message conventions (`handoff`,
    /// `cancel`), checked by the writer against the target's current name
    /// (see [`tether_core::conventions::check`]).
    pub authority: Authority,
    /// Whose idempotency ids these are. A client-supplied message id only
    /// suppresses a repeat from the same publisher, so one client cannot
    /// swallow another's message by guessing its id. The server passes the
    /// caller's `client_id`, or its key name when it acts as no client.
    pub publisher: String,
    /// A connection's exactly-once operation: its outcome is recorded in the
    /// same batch (see [`crate::sessions`]).
    pub sequence: Option<Sequenced>,
}

/// The acknowledgement of an applied operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ack {
    /// The serial of the message (of the create).
    pub serial: Serial,
    /// The serial of this operation: the message's new version.
    pub version_serial: Serial,
    /// True when this was a repeat of an idempotent publish: nothing new was
    /// written and `serial` is the original message's.
    pub duplicate: bool,
}

/// Resolves when the submitted operation is durable (or was refused).
///
/// Obtained from [`LogStore::submit`]; awaiting it is separate from
/// submitting so a connection can pipeline many operations in order.
pub struct Receipt {
    rx: oneshot::Receiver<Result<Ack, StoreError>>,
}

impl Receipt {
    /// A receipt and the sender the writer completes it with.
    pub fn channel() -> (oneshot::Sender<Result<Ack, StoreError>>, Receipt) {
        let (tx, rx) = oneshot::channel();
        (tx, Receipt { rx })
    }
}

impl Future for Receipt {
    type Output = Result<Ack, StoreError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.rx)
            .poll(cx)
            .map(|r| r.unwrap_or(Err(StoreError::Closed)))
    }
}

/// One committed operation, handed to fan-out in serial order.
#[derive(Debug, Clone, PartialEq)]
pub struct Committed {
    /// The channel it happened on.
    pub channel: ChannelName,
    /// The event subscribers receive; its position in the log is
    /// `event.version.serial`.
    pub event: Message,
}

/// Where the writer hands committed operations, in serial order, after they
/// are durable. The server plugs its fan-out in here.
pub trait CommitSink: Send + Sync + 'static {
    /// Called once per committed batch; must not block.
    fn deliver(&self, batch: Vec<Arc<Committed>>);
}

/// Which way history pages go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Oldest first.
    Forwards,
    /// Newest first (the default, like a chat scrolling up).
    #[default]
    Backwards,
}

/// A page request for history. All bounds are inclusive and combine.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HistoryQuery {
    /// Order of the page.
    pub direction: Direction,
    /// At most this many messages (the caller caps it).
    pub limit: usize,
    /// Continue after this serial (exclusive), in `direction`.
    pub cursor: Option<Serial>,
    /// Only messages with serial >= this.
    pub start: Option<Serial>,
    /// Only messages with serial <= this.
    pub end: Option<Serial>,
    /// Only messages created at or after this time (ms since the Unix epoch).
    pub from_time: Option<u64>,
    /// Only messages created at or before this time.
    pub to_time: Option<u64>,
}

/// A page of current messages.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HistoryPage {
    /// Current version of each message, in the requested direction.
    pub messages: Vec<Message>,
    /// Cursor for the next page, when there may be more.
    pub next: Option<Serial>,
}

/// Everything that can go wrong in a store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The operation was refused by the folding rules; nothing was written.
    #[error(transparent)]
    Rejected(#[from] FoldError),
    /// A resume position cannot be served exactly.
    #[error(transparent)]
    ContinuityLost(#[from] ContinuityLost),
    /// The writer has stopped (shutdown or a fatal storage error).
    #[error("the store is closed")]
    Closed,
    /// The storage engine failed.
    #[error("storage failure: {0}")]
    Storage(String),
    /// The disk (or the file system holding the data directory) is full:
    /// the write was refused before anything of it was acknowledged. Reads
    /// keep working and writing resumes by itself once space is back.
    #[error("insufficient storage: {0}")]
    InsufficientStorage(String),
    /// Stored bytes could not be decoded.
    #[error("corrupt record in {what}: {detail}")]
    Corrupt {
        /// Which record.
        what: &'static str,
        /// The decoder's message.
        detail: String,
    },
}

impl StoreError {
    /// The stable code a client is told.
    pub fn code(&self) -> ErrorCode {
        match self {
            StoreError::Rejected(e) => e.code(),
            StoreError::ContinuityLost(_) => ErrorCode::ContinuityLost,
            StoreError::Closed => ErrorCode::ShuttingDown,
            StoreError::Storage(_) | StoreError::Corrupt { .. } => ErrorCode::StorageUnavailable,
            StoreError::InsufficientStorage(_) => ErrorCode::InsufficientStorage,
        }
    }
}

/// Whether a store can take writes right now, for readiness checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreHealth {
    /// Writes are being accepted.
    Ready,
    /// Writes are refused until the condition clears (reads may still work).
    NotReady {
        /// What a write would be refused with right now.
        code: ErrorCode,
        /// Why, for operators.
        reason: String,
    },
}

/// The durable log of every channel.
pub trait LogStore: Send + Sync + 'static {
    /// Whether writes are being accepted right now (a full disk makes the
    /// store refuse writes until space is back); `/readyz` reports it. The
    /// default is for stores that have no such condition.
    fn health(&self) -> StoreHealth {
        StoreHealth::Ready
    }

    /// Queues an operation. Operations are applied in the order of `submit`
    /// calls; the returned future completes once the operation is queued
    /// (waiting only when the writer is saturated, which is back-pressure),
    /// and the [`Receipt`] once it is durable.
    fn submit(&self, submission: Submission) -> StoreFuture<'_, Result<Receipt, StoreError>>;

    /// The epoch and sequence range of a channel's log; `None` if the
    /// channel was never written.
    fn bounds(
        &self,
        channel: &ChannelName,
    ) -> StoreFuture<'_, Result<Option<LogBounds>, StoreError>>;

    /// Up to `limit` events with position strictly after `after`, oldest
    /// first: exactly the events live subscribers received, in order.
    /// Fails with [`StoreError::ContinuityLost`] when `after` cannot be
    /// served exactly (see [`tether_core::check_resume`]); never returns a
    /// list with a gap.
    fn read_log(
        &self,
        channel: &ChannelName,
        after: Serial,
        limit: usize,
    ) -> StoreFuture<'_, Result<Vec<Message>, StoreError>>;

    /// The current version of one message.
    fn message(
        &self,
        channel: &ChannelName,
        serial: Serial,
    ) -> StoreFuture<'_, Result<Option<Message>, StoreError>>;

    /// Every version of one message (create, updates, delete, and the
    /// current one if appends came after the last of those), oldest first.
    /// Empty if the message does not exist.
    fn versions(
        &self,
        channel: &ChannelName,
        serial: Serial,
    ) -> StoreFuture<'_, Result<Vec<Message>, StoreError>>;

    /// A page of current messages.
    fn history(
        &self,
        channel: &ChannelName,
        query: HistoryQuery,
    ) -> StoreFuture<'_, Result<HistoryPage, StoreError>>;

    /// Stops taking writes after committing everything submitted before
    /// the call, and makes it durable whatever the fsync mode; later
    /// submissions fail with [`StoreError::Closed`], reads keep working.
    /// Safe to call twice. The server calls it last in a graceful shutdown.
    fn shutdown(&self) -> StoreFuture<'_, Result<(), StoreError>>;

    /// Every message, on every channel, whose current `extras.stream` is
    /// `streaming`. The server reads this once at start-up: responses whose
    /// writer died with the previous process would otherwise stream
    /// forever. May scan every stored message; not for a hot path.
    fn streaming_messages(
        &self,
    ) -> StoreFuture<'_, Result<Vec<(ChannelName, Message)>, StoreError>>;
}
