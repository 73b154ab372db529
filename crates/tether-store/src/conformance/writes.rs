//! Writes: folding appends, submission order, refusals, versions, and the
//! one serial order fan-out sees.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::Value;
use tether_core::{Action, FoldError, ORIGIN, Serial, View};

use super::{Opened, append, channel, create, delete, open_recorded, run, submission, update};
use crate::{CommitSink, LogStore, StoreError};

/// A stream of appends folds into one message; the log, the sink, history,
/// bounds and the message itself all agree.
pub async fn appends_fold_into_one_message<S, F>(open: &F)
where
    S: LogStore,
    F: Fn(Arc<dyn CommitSink>) -> Opened<S>,
{
    let (opened, sink) = open_recorded(open);
    let store = &opened.store;
    let c = channel("chat:1");
    let created = run(store, &c, create("")).await.expect("create");
    let mut expected = String::new();
    for i in 0..300 {
        let fragment = format!("{i},");
        expected.push_str(&fragment);
        let ack = run(store, &c, append(created.serial, &fragment))
            .await
            .expect("append");
        assert_eq!(ack.serial, created.serial, "an append acks its message");
        assert_eq!(ack.version_serial.seq(), i + 2, "one serial per operation");
    }
    let events = store.read_log(&c, ORIGIN, 10_000).await.expect("read_log");
    assert_eq!(events.len(), 301);
    let mut view = View::new();
    for e in &events {
        assert!(view.apply(e), "every logged event folds");
    }
    let stored = store
        .message(&c, created.serial)
        .await
        .expect("message")
        .expect("exists");
    assert_eq!(
        view.get(created.serial),
        Some(&stored),
        "log folds to state"
    );
    assert_eq!(stored.data, Value::String(expected));
    assert_eq!(stored.version.serial.seq(), 301);
    let bounds = store.bounds(&c).await.expect("bounds").expect("written");
    assert_eq!((bounds.first_seq, bounds.last_seq), (1, 301));
    assert_eq!(bounds.epoch, created.serial.epoch());
    let delivered: Vec<_> = sink.events().iter().map(|c| c.event.clone()).collect();
    assert_eq!(delivered, events, "the sink saw exactly the log");
}

/// Operations submitted without waiting apply in submission order.
pub async fn pipelined_operations_apply_in_submission_order<S, F>(open: &F)
where
    S: LogStore,
    F: Fn(Arc<dyn CommitSink>) -> Opened<S>,
{
    let (opened, _sink) = open_recorded(open);
    let store = &opened.store;
    let c = channel("pipe");
    let created = run(store, &c, create("")).await.expect("create");
    let mut receipts = Vec::new();
    for i in 0..1000 {
        let op = append(created.serial, &format!("{i};"));
        receipts.push(store.submit(submission(&c, op)).await.expect("queued"));
    }
    let mut last = created.version_serial;
    for receipt in receipts {
        let ack = receipt.await.expect("applied");
        assert!(ack.version_serial > last, "acks in submission order");
        last = ack.version_serial;
    }
    let expected: String = (0..1000).map(|i| format!("{i};")).collect();
    let stored = store
        .message(&c, created.serial)
        .await
        .expect("message")
        .expect("exists");
    assert_eq!(stored.data, Value::String(expected));
    assert_eq!(last.seq(), 1001);
}

/// A refused operation changes nothing, is not delivered, and does not use
/// up a serial.
pub async fn refusals_write_nothing_and_burn_no_serial<S, F>(open: &F)
where
    S: LogStore,
    F: Fn(Arc<dyn CommitSink>) -> Opened<S>,
{
    let (opened, sink) = open_recorded(open);
    let store = &opened.store;
    let c = channel("refuse");
    let unknown = Serial::new(1, 5).expect("serial");
    let err = run(store, &c, append(unknown, "x"))
        .await
        .expect_err("refused");
    assert!(
        matches!(err, StoreError::Rejected(FoldError::NotFound(s)) if s == unknown),
        "{err:?}"
    );
    assert_eq!(
        store.bounds(&c).await.expect("bounds"),
        None,
        "nothing written"
    );
    let m = run(store, &c, create("a")).await.expect("create");
    let missing = Serial::new(m.serial.epoch(), 99).expect("serial");
    let err = run(store, &c, append(missing, "x"))
        .await
        .expect_err("refused");
    assert!(
        matches!(err, StoreError::Rejected(FoldError::NotFound(_))),
        "{err:?}"
    );
    run(store, &c, delete(m.serial)).await.expect("delete");
    let before = store.bounds(&c).await.expect("bounds");
    for op in [append(m.serial, "x"), update(m.serial, "x")] {
        let err = run(store, &c, op).await.expect_err("refused");
        assert!(
            matches!(err, StoreError::Rejected(FoldError::Deleted(_))),
            "{err:?}"
        );
    }
    assert_eq!(store.bounds(&c).await.expect("bounds"), before);
    assert_eq!(sink.events().len(), 2, "refusals are not delivered");
    let next = run(store, &c, create("b")).await.expect("create");
    assert_eq!(next.serial.seq(), 3, "a refusal burns no serial");
}

/// `versions` lists create, updates and delete, then the current state when
/// appends followed the last of them.
pub async fn versions_list_each_version_then_the_current_one<S, F>(open: &F)
where
    S: LogStore,
    F: Fn(Arc<dyn CommitSink>) -> Opened<S>,
{
    let (opened, _sink) = open_recorded(open);
    let store = &opened.store;
    let c = channel("versions");
    let m = run(store, &c, create("v1")).await.expect("create");
    run(store, &c, update(m.serial, "v2"))
        .await
        .expect("update");
    run(store, &c, append(m.serial, "+")).await.expect("append");
    let versions = store.versions(&c, m.serial).await.expect("versions");
    let data: Vec<_> = versions.iter().map(|v| v.data.clone()).collect();
    assert_eq!(data, ["v1", "v2", "v2+"].map(|s| Value::String(s.into())));
    assert_eq!(versions[1].version.description.as_deref(), Some("edit"));
    run(store, &c, delete(m.serial)).await.expect("delete");
    let versions = store.versions(&c, m.serial).await.expect("versions");
    assert_eq!(versions.len(), 3);
    let last = versions.last().expect("a version");
    assert_eq!((last.action, &last.data), (Action::Delete, &Value::Null));
    assert_eq!(
        store.message(&c, m.serial).await.expect("message").as_ref(),
        Some(last),
        "the last version is the current state"
    );
    let other = Serial::new(m.serial.epoch() + 1, m.serial.seq()).expect("serial");
    assert!(
        store
            .versions(&c, other)
            .await
            .expect("versions")
            .is_empty()
    );
    let elsewhere = store.versions(&channel("nope"), m.serial).await;
    assert!(elsewhere.expect("versions").is_empty());
}

/// Many tasks submitting to a few channels at once: per channel, the sink
/// sees serials without gap or reorder, and exactly what the log holds.
pub async fn concurrent_submitters_see_one_serial_order_per_channel<S, F>(open: &F)
where
    S: LogStore,
    F: Fn(Arc<dyn CommitSink>) -> Opened<S>,
{
    let (opened, sink) = open_recorded(open);
    let store = Arc::new(opened.store);
    let channels: Vec<_> = (0..3).map(|i| channel(&format!("many:{i}"))).collect();
    let mut tasks = Vec::new();
    for t in 0..8 {
        let store = store.clone();
        let c = channels[t % channels.len()].clone();
        tasks.push(tokio::spawn(async move {
            let m = run(&*store, &c, create("")).await.expect("create");
            let mut receipts = Vec::new();
            for i in 0..100 {
                let op = append(m.serial, &format!("{t}.{i} "));
                receipts.push(store.submit(submission(&c, op)).await.expect("queued"));
            }
            for receipt in receipts {
                receipt.await.expect("applied");
            }
        }));
    }
    for task in tasks {
        task.await.expect("submitter task");
    }
    let events = sink.events();
    assert_eq!(events.len(), 8 * 101);
    let mut last: HashMap<String, Serial> = HashMap::new();
    for e in &events {
        let serial = e.event.version.serial;
        if let Some(prev) = last.insert(e.channel.to_string(), serial) {
            assert_eq!(
                serial.seq(),
                prev.seq() + 1,
                "gap or reorder on {}",
                e.channel
            );
        }
    }
    for c in &channels {
        let log = store.read_log(c, ORIGIN, 10_000).await.expect("read_log");
        let delivered: Vec<_> = events
            .iter()
            .filter(|e| &e.channel == c)
            .map(|e| e.event.clone())
            .collect();
        assert_eq!(log, delivered);
    }
}
