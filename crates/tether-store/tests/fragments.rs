//! Appends are stored as fragments after a lazy checkpoint of the state
//! (`fjall_store/fragments.rs`): whatever point between two checkpoints a
//! store is closed at, the message reads back whole, through every read
//! path, and streaming continues from it.

mod common;

use common::*;
use serde_json::{Map, Value};
use tether_core::{AppendOp, Operation, Serial, UpdateOp};
use tether_store::{HistoryQuery, LogStore};

/// Appends `n` fragments of ten bytes, numbered from `from`, and returns
/// their text.
async fn stream(
    store: &tether_store::FjallStore,
    channel: &tether_core::ChannelName,
    target: Serial,
    from: usize,
    n: usize,
) -> String {
    let fragments: Vec<String> = (from..from + n).map(|i| format!("<{i:08}>")).collect();
    let ops = fragments.iter().map(|f| append_op(target, f));
    for ack in pipeline(store, channel, ops).await {
        ack.expect("append acknowledged");
    }
    fragments.concat()
}

#[tokio::test]
async fn a_message_reads_back_whole_at_every_point_between_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let c = ch("fragments");
    let mut expected = String::new();
    let target = {
        let (store, _sink) = open(dir.path());
        run(&store, &c, create_op("")).await.unwrap().serial
    };
    // Reopen after uneven amounts, so the close falls at different points
    // relative to the checkpoints (every ~4 KiB, then geometric).
    for (round, n) in [1usize, 7, 150, 33, 1_000, 2].into_iter().enumerate() {
        let (store, _sink) = open(dir.path());
        // The state after a reopen is what the disk says: checkpoint plus
        // fragments.
        let cold = store.message(&c, target).await.unwrap().unwrap();
        assert_eq!(
            cold.data,
            Value::String(expected.clone()),
            "round {round} cold"
        );
        expected.push_str(&stream(&store, &c, target, expected.len(), n).await);
        let hot = store.message(&c, target).await.unwrap().unwrap();
        assert_eq!(
            hot.data,
            Value::String(expected.clone()),
            "round {round} hot"
        );
        let history = history_all(&store, &c).await;
        assert_eq!(history.len(), 1);
        assert_eq!(history[0].data, Value::String(expected.clone()));
        assert_eq!(history[0].version.serial, hot.version.serial);
        store.shutdown().await.unwrap();
    }
    // Versions: the create, then the current state as the newest.
    let (store, _sink) = open(dir.path());
    let versions = store.versions(&c, target).await.unwrap();
    assert_eq!(versions.len(), 2);
    assert_eq!(versions[1].data, Value::String(expected.clone()));
}

#[tokio::test]
async fn an_update_after_fragments_is_a_checkpoint_and_survives_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let c = ch("fragments-update");
    let (target, text) = {
        let (store, _sink) = open(dir.path());
        let target = run(&store, &c, create_op("")).await.unwrap().serial;
        let text = stream(&store, &c, target, 0, 120).await;
        let mut extras = Map::new();
        extras.insert("stream".into(), Value::from("complete"));
        let end = Operation::Update {
            target,
            update: UpdateOp {
                extras: Some(extras),
                ..UpdateOp::default()
            },
        };
        run(&store, &c, end).await.unwrap();
        (target, text)
    };
    let (store, _sink) = open(dir.path());
    let message = store.message(&c, target).await.unwrap().unwrap();
    assert_eq!(message.data, Value::String(text));
    assert_eq!(message.extras.unwrap()["stream"], "complete");
    // The ended response takes no more appends, from the disk's state too.
    let refused = run(&store, &c, append_op(target, "late")).await;
    assert!(refused.is_err(), "an ended response took an append");
}

#[tokio::test]
async fn a_status_set_by_an_append_is_seen_by_the_abandoned_response_sweep() {
    let dir = tempfile::tempdir().unwrap();
    let c = ch("fragments-status");
    let target = {
        let (store, _sink) = open(dir.path());
        let mut extras = Map::new();
        extras.insert("stream".into(), Value::from("streaming"));
        let create = Operation::Create(tether_core::NewMessage {
            data: Value::String(String::new()),
            extras: Some(extras),
            ..tether_core::NewMessage::default()
        });
        let target = run(&store, &c, create).await.unwrap().serial;
        stream(&store, &c, target, 0, 3).await;
        assert_eq!(store.streaming_messages().await.unwrap().len(), 1);
        // The last append ends the stream through its extras: a fragment,
        // not a checkpoint.
        let mut done = Map::new();
        done.insert("stream".into(), Value::from("complete"));
        let last = Operation::Append {
            target,
            append: AppendOp {
                data: "!".into(),
                name: None,
                extras: Some(done),
            },
        };
        run(&store, &c, last).await.unwrap();
        target
    };
    let (store, _sink) = open(dir.path());
    assert!(
        store.streaming_messages().await.unwrap().is_empty(),
        "a completed response was reported as still streaming"
    );
    let message = store.message(&c, target).await.unwrap().unwrap();
    assert!(message.data.as_str().unwrap().ends_with('!'));
    let page = store
        .history(
            &c,
            HistoryQuery {
                limit: 1,
                ..HistoryQuery::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        page.messages[0].extras.as_ref().unwrap()["stream"],
        "complete"
    );
}
