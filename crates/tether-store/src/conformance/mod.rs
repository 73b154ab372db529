//! The checks every [`LogStore`] implementation must pass.
//!
//! The engine relies on the contract in the crate docs (one serial order,
//! acknowledged means durable, folding in the writer, reads that never see
//! half a batch), not on fjall. These checks pin that contract through the
//! trait alone, so a second implementation (Redis) is held to exactly what
//! the embedded one does. Each check is an `async fn` generic over the
//! store; [`log_store_conformance!`](crate::log_store_conformance) turns
//! them into one `#[tokio::test]` each:
//!
//! ```ignore
//! fn open(sink: Arc<dyn CommitSink>) -> Opened<FjallStore> {
//!     let dir = tempfile::tempdir().expect("temp dir");
//!     let store = FjallStore::open(StoreConfig::new(dir.path()), sink).expect("open");
//!     Opened::new(store, dir)
//! }
//! tether_store::log_store_conformance!(open);
//! ```

mod reads;
mod rules;
mod writes;

use std::any::Any;
use std::sync::{Arc, Mutex, PoisonError};

pub use reads::{
    history_pages_both_ways_and_filters, read_log_serves_exactly_after_a_position,
    streaming_messages_lists_open_responses,
};
pub use rules::{
    idempotency_ids_are_scoped_by_publisher, own_only_protects_other_clients_messages,
    shutdown_commits_what_was_queued_then_refuses,
};
pub use writes::{
    appends_fold_into_one_message, concurrent_submitters_see_one_serial_order_per_channel,
    pipelined_operations_apply_in_submission_order, refusals_write_nothing_and_burn_no_serial,
    versions_list_each_version_then_the_current_one,
};

use serde_json::Value;
use tether_core::conventions::Authority;
use tether_core::{AppendOp, ChannelName, DeleteOp, NewMessage, Operation, Serial, UpdateOp};

use crate::{Ack, CommitSink, Committed, LogStore, StoreError, Submission};

/// Expands to one `#[tokio::test]` per conformance check, each opening a
/// fresh empty store with `$open`: an expression callable as
/// `Fn(Arc<dyn CommitSink>) -> Opened<S>`.
#[macro_export]
macro_rules! log_store_conformance {
    ($open:expr) => {
        $crate::log_store_conformance!(@each $open;
            appends_fold_into_one_message,
            pipelined_operations_apply_in_submission_order,
            refusals_write_nothing_and_burn_no_serial,
            versions_list_each_version_then_the_current_one,
            concurrent_submitters_see_one_serial_order_per_channel,
            history_pages_both_ways_and_filters,
            read_log_serves_exactly_after_a_position,
            streaming_messages_lists_open_responses,
            idempotency_ids_are_scoped_by_publisher,
            own_only_protects_other_clients_messages,
            shutdown_commits_what_was_queued_then_refuses,
        );
    };
    (@each $open:expr; $($check:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                $crate::conformance::$check(&$open).await;
            }
        )*
    };
}

/// A store under test, with whatever must live as long as it (a temporary
/// directory, a server process).
pub struct Opened<S> {
    /// The store, empty and ready.
    pub store: S,
    _keep: Box<dyn Any + Send + Sync>,
}

impl<S> Opened<S> {
    /// `store`, keeping `keep` alive until the check ends.
    pub fn new(store: S, keep: impl Any + Send + Sync) -> Opened<S> {
        Opened {
            store,
            _keep: Box::new(keep),
        }
    }
}

/// A commit sink that records every committed event in delivery order, so
/// checks can compare what fan-out saw with what the log holds.
#[derive(Default)]
pub struct Recorder(Mutex<Vec<Arc<Committed>>>);

impl CommitSink for Recorder {
    fn deliver(&self, batch: Vec<Arc<Committed>>) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend(batch);
    }
}

impl Recorder {
    /// Every event delivered so far.
    pub fn events(&self) -> Vec<Arc<Committed>> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// Opens a store with a fresh [`Recorder`] as its sink.
fn open_recorded<S, F>(open: &F) -> (Opened<S>, Arc<Recorder>)
where
    F: Fn(Arc<dyn CommitSink>) -> Opened<S>,
{
    let recorder = Arc::new(Recorder::default());
    (open(recorder.clone()), recorder)
}

fn channel(name: &str) -> ChannelName {
    ChannelName::new(name).expect("valid channel name")
}

/// A submission by the client `tester` with every right.
fn submission(channel: &ChannelName, op: Operation) -> Submission {
    Submission {
        channel: channel.clone(),
        op,
        client_id: Some("tester".into()),
        connection_id: None,
        own_only: false,
        authority: Authority::ALL,
        publisher: "c:tester".into(),
        sequence: None,
    }
}

/// Submits and waits until durable.
async fn apply<S: LogStore>(store: &S, submission: Submission) -> Result<Ack, StoreError> {
    store.submit(submission).await?.await
}

/// Submits `op` as `tester` and waits until durable.
async fn run<S: LogStore>(
    store: &S,
    channel: &ChannelName,
    op: Operation,
) -> Result<Ack, StoreError> {
    apply(store, submission(channel, op)).await
}

fn create(data: &str) -> Operation {
    Operation::Create(NewMessage {
        data: Value::String(data.into()),
        ..NewMessage::default()
    })
}

fn create_with_id(id: &str, data: &str) -> Operation {
    Operation::Create(NewMessage {
        id: Some(id.into()),
        data: Value::String(data.into()),
        ..NewMessage::default()
    })
}

fn append(target: Serial, data: &str) -> Operation {
    Operation::Append {
        target,
        append: AppendOp {
            data: data.into(),
            name: None,
            extras: None,
        },
    }
}

fn update(target: Serial, data: &str) -> Operation {
    Operation::Update {
        target,
        update: UpdateOp {
            data: Some(Value::String(data.into())),
            description: Some("edit".into()),
            ..UpdateOp::default()
        },
    }
}

fn delete(target: Serial) -> Operation {
    Operation::Delete {
        target,
        delete: DeleteOp::default(),
    }
}
