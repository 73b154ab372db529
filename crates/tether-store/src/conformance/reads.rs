//! Reads: history pages, the log after a position (exact or refused,
//! never with a gap), and the start-up scan for open responses.

use std::sync::Arc;

use serde_json::{Map, Value, json};
use tether_core::{ContinuityLost, NewMessage, ORIGIN, Operation, Serial, UpdateOp};

use super::{Opened, append, channel, create, open_recorded, run};
use crate::{CommitSink, Direction, HistoryQuery, LogStore, StoreError};

/// History pages backwards and forwards with cursors, serial bounds and
/// time bounds.
pub async fn history_pages_both_ways_and_filters<S, F>(open: &F)
where
    S: LogStore,
    F: Fn(Arc<dyn CommitSink>) -> Opened<S>,
{
    let (opened, _sink) = open_recorded(open);
    let store = &opened.store;
    let c = channel("hist");
    let mut serials = Vec::new();
    for i in 0..7 {
        let ack = run(store, &c, create(&i.to_string()))
            .await
            .expect("create");
        serials.push(ack.serial);
    }
    let page_of = |direction, cursor| HistoryQuery {
        direction,
        limit: 3,
        cursor,
        ..HistoryQuery::default()
    };
    let serials_of = |page: &crate::HistoryPage| -> Vec<Serial> {
        page.messages.iter().map(|m| m.serial).collect()
    };
    let page = store
        .history(&c, page_of(Direction::Backwards, None))
        .await
        .expect("history");
    assert_eq!(serials_of(&page), [serials[6], serials[5], serials[4]]);
    assert_eq!(page.next, Some(serials[4]));
    let page = store
        .history(&c, page_of(Direction::Backwards, page.next))
        .await
        .expect("history");
    assert_eq!(page.messages.len(), 3);
    let page = store
        .history(&c, page_of(Direction::Backwards, page.next))
        .await
        .expect("history");
    assert_eq!(serials_of(&page), [serials[0]]);
    assert_eq!(page.next, None, "the last page says so");
    let page = store
        .history(&c, page_of(Direction::Forwards, Some(serials[1])))
        .await
        .expect("history");
    assert_eq!(serials_of(&page), serials[2..5]);
    let bounded = HistoryQuery {
        direction: Direction::Forwards,
        limit: 10,
        start: Some(serials[2]),
        end: Some(serials[3]),
        ..HistoryQuery::default()
    };
    let page = store.history(&c, bounded).await.expect("history");
    assert_eq!(serials_of(&page), serials[2..4]);
    let first = store
        .message(&c, serials[0])
        .await
        .expect("message")
        .expect("exists");
    let later = HistoryQuery {
        limit: 10,
        from_time: Some(first.timestamp + 60_000),
        ..HistoryQuery::default()
    };
    assert!(
        store
            .history(&c, later)
            .await
            .expect("history")
            .messages
            .is_empty()
    );
    let around = HistoryQuery {
        limit: 10,
        from_time: Some(first.timestamp),
        to_time: Some(first.timestamp + 60_000),
        ..HistoryQuery::default()
    };
    assert_eq!(
        store
            .history(&c, around)
            .await
            .expect("history")
            .messages
            .len(),
        7
    );
    let none = store
        .history(&channel("none"), page_of(Direction::Forwards, None))
        .await
        .expect("history");
    assert!(none.messages.is_empty() && none.next.is_none());
}

/// `read_log` pages exactly after a position, returns nothing at the head,
/// and refuses positions it cannot serve exactly instead of guessing.
pub async fn read_log_serves_exactly_after_a_position<S, F>(open: &F)
where
    S: LogStore,
    F: Fn(Arc<dyn CommitSink>) -> Opened<S>,
{
    let (opened, _sink) = open_recorded(open);
    let store = &opened.store;
    let c = channel("positions");
    let never = channel("never");
    let m = run(store, &c, create("")).await.expect("create");
    for i in 0..199 {
        run(store, &c, append(m.serial, &i.to_string()))
            .await
            .expect("append");
    }
    let events = store.read_log(&c, ORIGIN, 1_000).await.expect("read_log");
    assert_eq!(events.len(), 200);
    let tail = store
        .read_log(&c, events[99].version.serial, 50)
        .await
        .expect("read_log");
    assert_eq!(tail, events[100..150].to_vec(), "exactly the next 50");
    let head = events[199].version.serial;
    assert!(
        store
            .read_log(&c, head, 10)
            .await
            .expect("read_log")
            .is_empty()
    );
    let beyond = Serial::new(head.epoch(), head.seq() + 5).expect("serial");
    let other_epoch = Serial::new(head.epoch() + 1, 3).expect("serial");
    for (position, on) in [(beyond, &c), (other_epoch, &c), (head, &never)] {
        let refused = store.read_log(on, position, 10).await;
        assert!(
            matches!(refused, Err(StoreError::ContinuityLost(_))),
            "{position} on {on}: {refused:?}"
        );
    }
    let refused = store.read_log(&c, other_epoch, 10).await;
    assert!(
        matches!(
            refused,
            Err(StoreError::ContinuityLost(
                ContinuityLost::OtherEpoch { .. }
            ))
        ),
        "{refused:?}"
    );
    assert!(
        store
            .read_log(&never, ORIGIN, 10)
            .await
            .expect("read_log")
            .is_empty()
    );
}

/// Responses whose `extras.stream` is `streaming` are listed, on every
/// channel; ended ones and plain messages are not.
pub async fn streaming_messages_lists_open_responses<S, F>(open: &F)
where
    S: LogStore,
    F: Fn(Arc<dyn CommitSink>) -> Opened<S>,
{
    let (opened, _sink) = open_recorded(open);
    let store = &opened.store;
    let streaming = || {
        let mut extras = Map::new();
        extras.insert("stream".into(), json!("streaming"));
        Operation::Create(NewMessage {
            data: Value::String(String::new()),
            extras: Some(extras),
            ..NewMessage::default()
        })
    };
    let (a, b) = (channel("open:a"), channel("open:b"));
    let open_a = run(store, &a, streaming()).await.expect("create");
    let ended = run(store, &a, streaming()).await.expect("create");
    let open_b = run(store, &b, streaming()).await.expect("create");
    run(store, &b, create("plain")).await.expect("create");
    run(store, &a, append(open_a.serial, "tok"))
        .await
        .expect("append");
    let mut done = Map::new();
    done.insert("stream".into(), json!("complete"));
    let finish = Operation::Update {
        target: ended.serial,
        update: UpdateOp {
            extras: Some(done),
            ..UpdateOp::default()
        },
    };
    run(store, &a, finish).await.expect("finish");
    let mut found: Vec<(String, Serial)> = store
        .streaming_messages()
        .await
        .expect("scan")
        .into_iter()
        .map(|(c, m)| (c.to_string(), m.serial))
        .collect();
    found.sort();
    assert_eq!(
        found,
        [
            ("open:a".to_owned(), open_a.serial),
            ("open:b".to_owned(), open_b.serial)
        ]
    );
}
