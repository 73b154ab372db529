//! Helpers shared by the store's integration tests.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::Path;
use std::sync::Arc;

use serde_json::Value;
use tether_core::{
    AppendOp, ChannelName, DeleteOp, Message, NewMessage, Operation, Serial, UpdateOp,
};
use tether_store::{Ack, FjallStore, HistoryQuery, LogStore, StoreConfig, StoreError, Submission};

/// A sink that remembers every event, in delivery order (the conformance
/// suite's recorder).
pub use tether_store::conformance::Recorder as Collect;

/// Opens a store at `dir` with default settings.
pub fn open(dir: &Path) -> (FjallStore, Arc<Collect>) {
    open_with(StoreConfig::new(dir))
}

/// Opens a store with `config`.
pub fn open_with(config: StoreConfig) -> (FjallStore, Arc<Collect>) {
    let sink = Arc::new(Collect::default());
    let store = FjallStore::open(config, sink.clone()).unwrap();
    (store, sink)
}

pub fn ch(name: &str) -> ChannelName {
    ChannelName::new(name).unwrap()
}

pub fn sub(channel: &ChannelName, op: Operation) -> Submission {
    Submission {
        channel: channel.clone(),
        op,
        client_id: Some("tester".into()),
        connection_id: None,
        own_only: false,
        authority: tether_core::conventions::Authority::ALL,
        publisher: "c:tester".into(),
        sequence: None,
    }
}

/// Submits and waits for the receipt.
pub async fn run(
    store: &FjallStore,
    channel: &ChannelName,
    op: Operation,
) -> Result<Ack, StoreError> {
    store.submit(sub(channel, op)).await?.await
}

pub fn create_op(data: &str) -> Operation {
    Operation::Create(NewMessage {
        data: Value::String(data.into()),
        ..NewMessage::default()
    })
}

pub fn create_with_id(id: &str, data: &str) -> Operation {
    Operation::Create(NewMessage {
        id: Some(id.into()),
        data: Value::String(data.into()),
        ..NewMessage::default()
    })
}

pub fn append_op(target: Serial, data: &str) -> Operation {
    Operation::Append {
        target,
        append: AppendOp {
            data: data.into(),
            name: None,
            extras: None,
        },
    }
}

pub fn update_op(target: Serial, data: &str) -> Operation {
    Operation::Update {
        target,
        update: UpdateOp {
            data: Some(Value::String(data.into())),
            description: Some("edit".into()),
            ..UpdateOp::default()
        },
    }
}

pub fn delete_op(target: Serial) -> Operation {
    Operation::Delete {
        target,
        delete: DeleteOp::default(),
    }
}

/// Every current message of `channel`, newest first (history's default).
pub async fn history_all(store: &FjallStore, channel: &ChannelName) -> Vec<Message> {
    let query = HistoryQuery {
        limit: 10_000,
        ..HistoryQuery::default()
    };
    let page = store.history(channel, query).await.unwrap();
    assert_eq!(page.next, None);
    page.messages
}

/// Submits every op without waiting in between (pipelining), then awaits
/// the receipts in order.
pub async fn pipeline(
    store: &FjallStore,
    channel: &ChannelName,
    ops: impl IntoIterator<Item = Operation>,
) -> Vec<Result<Ack, StoreError>> {
    let mut receipts = Vec::new();
    for op in ops {
        receipts.push(store.submit(sub(channel, op)).await.unwrap());
    }
    let mut acks = Vec::with_capacity(receipts.len());
    for r in receipts {
        acks.push(r.await);
    }
    acks
}
