//! Durable connection sessions: what a WebSocket connection needs to be
//! resumed after the server restarts (graceful or `kill -9`).
//!
//! Two kinds of records, both in the same database (and so the same journal)
//! as the log:
//! - the **session record**: opaque bytes the server encodes (identity,
//!   resume key, attachments, presence data), written with
//!   [`SessionStore::put_session`] whenever the session changes. These writes
//!   are handed to the OS but not fsynced on their own: the fsync of the next
//!   operation batch covers them, because the journal is one file written in
//!   order. A connection's record is written before it submits anything, so
//!   it is durable no later than the first acknowledgement that needs it.
//! - the **outcomes** of sequenced operations (`seq` → ack or refusal).
//!   These are written by the store's writer *in the same atomic batch as
//!   the operation itself* (see [`Sequenced`]), so after any crash an
//!   operation is applied if and only if its outcome is recorded: a re-send
//!   finds the original outcome instead of applying twice, and an operation
//!   that was not applied is not mistaken for one that was.

use tether_core::ErrorInfo;

use crate::{Ack, StoreError};

/// Outcomes kept per connection: the writer forgets the outcome of `seq -
/// SEQ_WINDOW` when it records `seq`, which bounds the records of a
/// connection whose sequence numbers grow by one, as the protocol asks.
pub const SEQ_WINDOW: u64 = 8192;

/// Marks a submission as a connection's exactly-once operation: the writer
/// records its outcome under (`connection_id`, `seq`) atomically with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sequenced {
    /// The connection (server-issued id, kept across resumes).
    pub connection_id: String,
    /// The client's sequence number.
    pub seq: u64,
}

/// What a sequenced operation resulted in: its ack, or why it was refused
/// (code and message as the client was told).
pub type SeqOutcome = Result<Ack, ErrorInfo>;

/// Where connection sessions are kept so they survive a restart.
///
/// Calls are short synchronous writes and reads (no fsync), safe to make
/// from async code the way the log's reads are.
pub trait SessionStore: Send + Sync + 'static {
    /// Stores (replaces) the record of a session.
    fn put_session(&self, connection_id: &str, record: &[u8]) -> Result<(), StoreError>;

    /// The record of a session, if there is one.
    fn session(&self, connection_id: &str) -> Result<Option<Vec<u8>>, StoreError>;

    /// Every session record, for sweeping expired ones.
    fn sessions(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError>;

    /// Forgets a session: its record and every recorded outcome.
    fn delete_session(&self, connection_id: &str) -> Result<(), StoreError>;

    /// The recorded outcomes of a session's sequenced operations, by `seq`.
    fn outcomes(&self, connection_id: &str) -> Result<Vec<(u64, SeqOutcome)>, StoreError>;

    /// Records that this server was alive at `now_ms`. After a crash, this
    /// is the latest moment the sessions that were live can have dropped,
    /// which is where their resume TTL starts.
    fn set_alive(&self, now_ms: u64) -> Result<(), StoreError>;

    /// The last time recorded with [`SessionStore::set_alive`].
    fn alive(&self) -> Result<Option<u64>, StoreError>;
}
