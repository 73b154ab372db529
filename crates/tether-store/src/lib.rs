//! The durable per-channel log, behind the narrow [`LogStore`] trait.
//!
//! # Layout
//! - [`log`]: the [`LogStore`] trait and the types that cross it.
//! - [`sessions`]: the [`SessionStore`] trait (connection resume state).
//! - [`fjall_store`]: the embedded implementation of both on fjall
//!   (feature `fjall`, on by default).
//! - [`conformance`]: the checks every implementation must pass (feature
//!   `conformance`), run against fjall in `tests/conformance.rs`.
//!
//! # Contract every implementation keeps
//! - **One writer assigns serials.** Submissions are applied in the order
//!   [`LogStore::submit`] was called; serial order, log order and the order
//!   in which [`CommitSink::deliver`] sees events are the same.
//! - **Acknowledged means durable** (as far as the configured fsync mode
//!   promises): a [`Receipt`] resolves only after the batch holding the
//!   operation is committed, and the sink is called after that too.
//! - **Folding happens in the writer**, atomically with serial assignment
//!   and the idempotency check, using [`tether_core::apply`].
//! - Reads never block the writer and never see a half-written batch.

#![warn(missing_docs, unreachable_pub)]

pub mod log;
pub mod sessions;

#[cfg(feature = "fjall")]
pub mod fjall_store;

#[cfg(feature = "conformance")]
pub mod conformance;

#[cfg(feature = "fjall")]
pub use fjall_store::{FjallStore, FsyncMode, StoreConfig};
pub use log::{
    Ack, CommitSink, Committed, Direction, HistoryPage, HistoryQuery, LogStore, Receipt,
    StoreError, StoreFuture, StoreHealth, Submission,
};
pub use sessions::{SEQ_WINDOW, SeqOutcome, Sequenced, SessionStore};
