//! Writing and reading back: streaming appends, pipelining, versions,
//! refusals and the order the sink sees.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashMap;

use common::*;
use serde_json::Value;
use tether_core::{Action, FoldError, ORIGIN, Serial, View};
use tether_store::{Direction, HistoryQuery, LogStore, StoreError};

#[tokio::test]
async fn stream_of_appends_folds_to_the_stored_message() {
    let dir = tempfile::tempdir().unwrap();
    let (store, sink) = open(dir.path());
    let c = ch("chat:1");
    let created = run(&store, &c, create_op("")).await.unwrap();
    let mut expected = String::new();
    for i in 0..500 {
        let fragment = format!("{i},");
        expected.push_str(&fragment);
        let ack = run(&store, &c, append_op(created.serial, &fragment))
            .await
            .unwrap();
        assert_eq!(ack.serial, created.serial);
        assert_eq!(ack.version_serial.seq(), i + 2);
    }
    let events = store.read_log(&c, ORIGIN, 10_000).await.unwrap();
    assert_eq!(events.len(), 501);
    let mut view = View::new();
    for e in &events {
        assert!(view.apply(e));
    }
    let stored = store.message(&c, created.serial).await.unwrap().unwrap();
    assert_eq!(view.get(created.serial), Some(&stored));
    assert_eq!(stored.data, Value::String(expected.clone()));
    assert_eq!(stored.version.serial.seq(), 501);

    let messages = history_all(&store, &c).await;
    assert_eq!(messages, vec![stored]);

    let bounds = store.bounds(&c).await.unwrap().unwrap();
    assert_eq!((bounds.first_seq, bounds.last_seq), (1, 501));
    assert_eq!(bounds.epoch, created.serial.epoch());
    // The sink saw the same events as the log.
    let delivered: Vec<_> = sink.events().iter().map(|c| c.event.clone()).collect();
    assert_eq!(delivered, events);
    // Paging the log by position.
    let tail = store
        .read_log(&c, events[99].version.serial, 50)
        .await
        .unwrap();
    assert_eq!(tail, events[100..150].to_vec());
    assert!(
        store
            .read_log(&c, bounds.head(), 10)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn pipelined_appends_apply_in_submission_order() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _sink) = open(dir.path());
    let c = ch("pipe");
    let created = run(&store, &c, create_op("")).await.unwrap();
    let ops = (0..1000).map(|i| append_op(created.serial, &format!("{i};")));
    let mut last = created.version_serial;
    for ack in pipeline(&store, &c, ops).await {
        let ack = ack.unwrap();
        assert!(ack.version_serial > last);
        last = ack.version_serial;
    }
    let expected: String = (0..1000).map(|i| format!("{i};")).collect();
    let stored = store.message(&c, created.serial).await.unwrap().unwrap();
    assert_eq!(stored.data, Value::String(expected));
    assert_eq!(last.seq(), 1001);
}

#[tokio::test]
async fn refusals_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (store, sink) = open(dir.path());
    let c = ch("refuse");
    let unknown = Serial::new(1, 5).unwrap();
    // Nothing at all on a fresh channel.
    let err = run(&store, &c, append_op(unknown, "x")).await.unwrap_err();
    assert!(matches!(err, StoreError::Rejected(FoldError::NotFound(s)) if s == unknown));
    assert_eq!(store.bounds(&c).await.unwrap(), None);

    let m = run(&store, &c, create_op("a")).await.unwrap();
    let missing = Serial::new(m.serial.epoch(), 99).unwrap();
    let err = run(&store, &c, append_op(missing, "x")).await.unwrap_err();
    assert!(matches!(err, StoreError::Rejected(FoldError::NotFound(_))));
    run(&store, &c, delete_op(m.serial)).await.unwrap();
    let before = store.bounds(&c).await.unwrap();
    let err = run(&store, &c, append_op(m.serial, "x")).await.unwrap_err();
    assert!(matches!(err, StoreError::Rejected(FoldError::Deleted(_))));
    let err = run(&store, &c, update_op(m.serial, "x")).await.unwrap_err();
    assert!(matches!(err, StoreError::Rejected(FoldError::Deleted(_))));
    assert_eq!(store.bounds(&c).await.unwrap(), before);
    assert_eq!(sink.events().len(), 2);
    // The serial of a refused op is not burnt.
    let next = run(&store, &c, create_op("b")).await.unwrap();
    assert_eq!(next.serial.seq(), 3);
}

#[tokio::test]
async fn versions_list_each_version_then_the_current_one() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _sink) = open(dir.path());
    let c = ch("versions");
    let m = run(&store, &c, create_op("v1")).await.unwrap();
    run(&store, &c, update_op(m.serial, "v2")).await.unwrap();
    run(&store, &c, append_op(m.serial, "+")).await.unwrap();
    let versions = store.versions(&c, m.serial).await.unwrap();
    let data: Vec<_> = versions.iter().map(|v| v.data.clone()).collect();
    assert_eq!(data, ["v1", "v2", "v2+"].map(|s| Value::String(s.into())));
    assert_eq!(versions[1].version.description.as_deref(), Some("edit"));

    run(&store, &c, delete_op(m.serial)).await.unwrap();
    let versions = store.versions(&c, m.serial).await.unwrap();
    assert_eq!(versions.len(), 3);
    let last = versions.last().unwrap();
    assert_eq!((last.action, &last.data), (Action::Delete, &Value::Null));
    assert_eq!(
        store.message(&c, m.serial).await.unwrap().as_ref(),
        Some(last)
    );
    let other = Serial::new(m.serial.epoch() + 1, m.serial.seq()).unwrap();
    assert!(store.versions(&c, other).await.unwrap().is_empty());
    assert!(
        store
            .versions(&ch("nope"), m.serial)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn history_pages_both_ways() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _sink) = open(dir.path());
    let c = ch("hist");
    let mut serials = Vec::new();
    for i in 0..7 {
        serials.push(
            run(&store, &c, create_op(&i.to_string()))
                .await
                .unwrap()
                .serial,
        );
    }
    let q = |direction, cursor| HistoryQuery {
        direction,
        limit: 3,
        cursor,
        ..HistoryQuery::default()
    };
    let page = store
        .history(&c, q(Direction::Backwards, None))
        .await
        .unwrap();
    let got: Vec<_> = page.messages.iter().map(|m| m.serial).collect();
    assert_eq!(got, [serials[6], serials[5], serials[4]]);
    assert_eq!(page.next, Some(serials[4]));
    let page = store
        .history(&c, q(Direction::Backwards, page.next))
        .await
        .unwrap();
    assert_eq!(page.messages.len(), 3);
    let page = store
        .history(&c, q(Direction::Backwards, page.next))
        .await
        .unwrap();
    assert_eq!(
        page.messages.iter().map(|m| m.serial).collect::<Vec<_>>(),
        [serials[0]]
    );
    assert_eq!(page.next, None);

    let page = store
        .history(&c, q(Direction::Forwards, Some(serials[1])))
        .await
        .unwrap();
    let got: Vec<_> = page.messages.iter().map(|m| m.serial).collect();
    assert_eq!(got, serials[2..5]);
    let bounded = HistoryQuery {
        direction: Direction::Forwards,
        limit: 10,
        start: Some(serials[2]),
        end: Some(serials[3]),
        ..HistoryQuery::default()
    };
    assert_eq!(store.history(&c, bounded).await.unwrap().messages.len(), 2);
    let ts = store
        .message(&c, serials[0])
        .await
        .unwrap()
        .unwrap()
        .timestamp;
    let future = HistoryQuery {
        limit: 10,
        from_time: Some(ts + 60_000),
        ..HistoryQuery::default()
    };
    assert!(store.history(&c, future).await.unwrap().messages.is_empty());
    let all = HistoryQuery {
        limit: 10,
        from_time: Some(ts),
        to_time: Some(ts + 60_000),
        ..HistoryQuery::default()
    };
    assert_eq!(store.history(&c, all).await.unwrap().messages.len(), 7);
    assert_eq!(
        store
            .history(&ch("none"), q(Direction::Forwards, None))
            .await
            .unwrap()
            .messages
            .len(),
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sink_sees_serial_order_across_concurrent_submitters() {
    let dir = tempfile::tempdir().unwrap();
    let (store, sink) = open(dir.path());
    let store = std::sync::Arc::new(store);
    let channels: Vec<_> = (0..3).map(|i| ch(&format!("many:{i}"))).collect();
    let mut tasks = Vec::new();
    for t in 0..8 {
        let store = store.clone();
        let c = channels[t % channels.len()].clone();
        tasks.push(tokio::spawn(async move {
            let m = run(&store, &c, create_op("")).await.unwrap();
            let ops = (0..100).map(|i| append_op(m.serial, &format!("{t}.{i} ")));
            for ack in pipeline(&store, &c, ops).await {
                ack.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let mut last: HashMap<String, Serial> = HashMap::new();
    let events = sink.events();
    assert_eq!(events.len(), 8 * 101);
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
        let log = store.read_log(c, ORIGIN, 10_000).await.unwrap();
        let delivered: Vec<_> = events
            .iter()
            .filter(|e| &e.channel == c)
            .map(|e| e.event.clone())
            .collect();
        assert_eq!(log, delivered);
    }
}
