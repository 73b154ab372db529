//! Rules the writer enforces atomically with the write: idempotency ids
//! scoped by publisher, own-messages-only, and shutdown.

use std::sync::Arc;

use tether_core::FoldError;

use super::{
    Opened, append, apply, channel, create, create_with_id, open_recorded, run, submission,
};
use crate::{CommitSink, LogStore, StoreError, Submission};

/// A client-supplied message id suppresses a repeat from the same
/// publisher only, within one group commit and across groups.
pub async fn idempotency_ids_are_scoped_by_publisher<S, F>(open: &F)
where
    S: LogStore,
    F: Fn(Arc<dyn CommitSink>) -> Opened<S>,
{
    let (opened, _sink) = open_recorded(open);
    let store = &opened.store;
    let c = channel("room");
    let by = |publisher: &str, data: &str| -> Submission {
        let mut s = submission(&c, create_with_id("m-1", data));
        s.publisher = publisher.into();
        s
    };
    // Queued together, so one group may hold all three.
    let a = store.submit(by("c:alice", "a")).await.expect("queued");
    let b = store.submit(by("c:bob", "b")).await.expect("queued");
    let again = store.submit(by("c:alice", "a2")).await.expect("queued");
    let (a, b, again) = (
        a.await.expect("a"),
        b.await.expect("b"),
        again.await.expect("again"),
    );
    assert!(!a.duplicate && !b.duplicate, "two publishers, two messages");
    assert_ne!(a.serial, b.serial);
    assert!(again.duplicate, "a repeat by the same publisher");
    assert_eq!(again.serial, a.serial);
    let later = apply(store, by("c:bob", "b2")).await.expect("later");
    assert_eq!((later.serial, later.duplicate), (b.serial, true));
    let stored = store
        .message(&c, a.serial)
        .await
        .expect("message")
        .expect("exists");
    assert_eq!(
        stored.data,
        serde_json::json!("a"),
        "the repeat changed nothing"
    );
}

/// With `own_only`, a client may change its own messages and is refused on
/// another client's, with nothing written.
pub async fn own_only_protects_other_clients_messages<S, F>(open: &F)
where
    S: LogStore,
    F: Fn(Arc<dyn CommitSink>) -> Opened<S>,
{
    let (opened, sink) = open_recorded(open);
    let store = &opened.store;
    let c = channel("own");
    let theirs = run(store, &c, create("theirs")).await.expect("create");
    let as_mallory = |op| {
        let mut s = submission(&c, op);
        s.client_id = Some("mallory".into());
        s.publisher = "c:mallory".into();
        s.own_only = true;
        s
    };
    let mine = apply(store, as_mallory(create("mine")))
        .await
        .expect("create");
    apply(store, as_mallory(append(mine.serial, "+")))
        .await
        .expect("own append");
    let refused = apply(store, as_mallory(append(theirs.serial, "x"))).await;
    assert!(
        matches!(refused, Err(StoreError::Rejected(FoldError::NotOwner(s))) if s == theirs.serial),
        "{refused:?}"
    );
    let stored = store
        .message(&c, theirs.serial)
        .await
        .expect("message")
        .expect("exists");
    assert_eq!(stored.data, serde_json::json!("theirs"));
    assert_eq!(sink.events().len(), 3, "the refusal is not delivered");
}

/// `shutdown` commits everything submitted before it, then refuses writes
/// with `Closed` while reads keep working; a second call is harmless.
pub async fn shutdown_commits_what_was_queued_then_refuses<S, F>(open: &F)
where
    S: LogStore,
    F: Fn(Arc<dyn CommitSink>) -> Opened<S>,
{
    let (opened, sink) = open_recorded(open);
    let store = &opened.store;
    let c = channel("closing");
    let m = run(store, &c, create("")).await.expect("create");
    let mut receipts = Vec::new();
    for i in 0..50 {
        let op = append(m.serial, &format!("{i} "));
        receipts.push(store.submit(submission(&c, op)).await.expect("queued"));
    }
    store.shutdown().await.expect("shutdown");
    for receipt in receipts {
        receipt.await.expect("queued before shutdown, so applied");
    }
    assert_eq!(sink.events().len(), 51);
    let refused = run(store, &c, append(m.serial, "late")).await;
    assert!(matches!(refused, Err(StoreError::Closed)), "{refused:?}");
    let stored = store
        .message(&c, m.serial)
        .await
        .expect("reads work")
        .expect("exists");
    let expected: String = (0..50).map(|i| format!("{i} ")).collect();
    assert_eq!(stored.data, serde_json::Value::String(expected));
    store.shutdown().await.expect("second shutdown");
}
