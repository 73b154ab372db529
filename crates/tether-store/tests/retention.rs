//! Retention by count and by age.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;
use tether_core::{ContinuityLost, NamespaceSettings, ORIGIN, View};
use tether_store::{LogStore, StoreConfig, StoreError};

fn config(dir: &std::path::Path, settings: NamespaceSettings) -> StoreConfig {
    let mut config = StoreConfig::new(dir);
    config.namespaces.namespaces.insert("tmp".into(), settings);
    config
}

fn expired(e: StoreError) -> bool {
    matches!(e, StoreError::ContinuityLost(ContinuityLost::Expired))
}

#[tokio::test]
async fn by_count_drops_whole_oldest_messages() {
    let dir = tempfile::tempdir().unwrap();
    let settings = NamespaceSettings {
        max_messages: 3,
        ..Default::default()
    };
    let (store, _sink) = open_with(config(dir.path(), settings));
    let c = ch("tmp:count");
    let mut acks = Vec::new();
    for i in 0..5 {
        let m = run(&store, &c, create_op(&format!("m{i}"))).await.unwrap();
        run(&store, &c, append_op(m.serial, "!")).await.unwrap();
        acks.push(m);
    }
    // Appends to the oldest kept message after newer messages exist.
    run(&store, &c, append_op(acks[2].serial, "?"))
        .await
        .unwrap();
    let bounds = store.bounds(&c).await.unwrap().unwrap();
    assert_eq!(bounds.first_seq, acks[2].serial.seq());
    assert_eq!(bounds.last_seq, 11);

    let messages = history_all(&store, &c).await;
    let kept: Vec<_> = messages.iter().map(|m| m.serial).collect();
    assert_eq!(kept, [acks[4].serial, acks[3].serial, acks[2].serial]);
    assert!(store.message(&c, acks[1].serial).await.unwrap().is_none());
    assert!(store.versions(&c, acks[0].serial).await.unwrap().is_empty());
    assert!(expired(store.read_log(&c, ORIGIN, 100).await.unwrap_err()));
    assert!(expired(
        store.read_log(&c, acks[1].serial, 100).await.unwrap_err()
    ));

    // From just before the oldest kept message, the log folds to history.
    let before = tether_core::Serial::new(bounds.epoch, bounds.first_seq - 1).unwrap();
    let events = store.read_log(&c, before, 100).await.unwrap();
    assert_eq!(events.first().unwrap().version.serial, acks[2].serial);
    let mut view = View::new();
    events.iter().for_each(|e| {
        view.apply(e);
    });
    let mut folded: Vec<_> = view.messages().cloned().collect();
    folded.reverse();
    assert_eq!(folded, messages);
    // Appending to a dropped message is refused like any unknown one.
    assert!(
        run(&store, &c, append_op(acks[0].serial, "x"))
            .await
            .is_err()
    );
    // Serials go on after trimming.
    let next = run(&store, &c, create_op("next")).await.unwrap();
    assert_eq!(next.serial.seq(), 12);
}

#[tokio::test]
async fn by_age_on_sweep_and_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let settings = NamespaceSettings {
        retention_secs: 0,
        ..Default::default()
    };
    let c = ch("tmp:age");
    let other = ch("keep:age");
    let head = {
        let (store, _sink) = open_with(config(dir.path(), settings.clone()));
        for _ in 0..3 {
            let m = run(&store, &c, create_op("old")).await.unwrap();
            run(&store, &c, update_op(m.serial, "older")).await.unwrap();
        }
        run(&store, &other, create_op("stays")).await.unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
        store.sweep().await.unwrap();
        let bounds = store.bounds(&c).await.unwrap().unwrap();
        assert_eq!((bounds.first_seq, bounds.last_seq), (7, 6));
        assert!(expired(store.read_log(&c, ORIGIN, 10).await.unwrap_err()));
        assert!(
            store
                .read_log(&c, bounds.head(), 10)
                .await
                .unwrap()
                .is_empty()
        );
        let messages = history_all(&store, &c).await;
        assert!(messages.is_empty());
        // The default namespace keeps a day.
        assert_eq!(store.read_log(&other, ORIGIN, 10).await.unwrap().len(), 1);
        bounds.head()
    };
    let (store, _sink) = open_with(config(dir.path(), settings));
    let bounds = store.bounds(&c).await.unwrap().unwrap();
    assert_eq!((bounds.first_seq, bounds.last_seq), (7, 6));
    let m = run(&store, &c, create_op("new")).await.unwrap();
    assert_eq!(m.serial.seq(), 7);
    assert_eq!(store.read_log(&c, head, 10).await.unwrap().len(), 1);
}

#[tokio::test]
async fn the_timer_sweeps() {
    let dir = tempfile::tempdir().unwrap();
    let settings = NamespaceSettings {
        retention_secs: 0,
        ..Default::default()
    };
    let mut config = config(dir.path(), settings);
    config.retention_sweep = Duration::from_millis(20);
    let (store, _sink) = open_with(config);
    let c = ch("tmp:timer");
    run(&store, &c, create_op("x")).await.unwrap();
    for _ in 0..200 {
        if store.bounds(&c).await.unwrap().unwrap().first_seq == 2 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the sweep timer never trimmed the channel");
}

#[tokio::test]
async fn long_purges_run_in_chunks_and_serials_go_on() {
    let dir = tempfile::tempdir().unwrap();
    let settings = NamespaceSettings {
        max_messages: 1,
        ..Default::default()
    };
    let (store, _sink) = open_with(config(dir.path(), settings.clone()));
    let c = ch("tmp:long");
    let m = run(&store, &c, create_op("")).await.unwrap();
    let ops = (0..6000).map(|_| append_op(m.serial, "x"));
    assert!(pipeline(&store, &c, ops).await.iter().all(Result::is_ok));
    let n = run(&store, &c, create_op("next")).await.unwrap();
    let bounds = store.bounds(&c).await.unwrap().unwrap();
    assert_eq!((bounds.first_seq, bounds.last_seq), (6002, 6002));
    assert!(store.message(&c, m.serial).await.unwrap().is_none());
    let before = tether_core::Serial::new(bounds.epoch, 6001).unwrap();
    assert_eq!(store.read_log(&c, before, 10).await.unwrap().len(), 1);
    assert!(expired(store.read_log(&c, m.serial, 10).await.unwrap_err()));
    drop(store);
    let (store, _sink) = open_with(config(dir.path(), settings));
    store.sweep().await.unwrap();
    let again = run(&store, &c, create_op("again")).await.unwrap();
    assert_eq!(again.serial.seq(), n.serial.seq() + 1);
    assert_eq!(store.bounds(&c).await.unwrap().unwrap().first_seq, 6003);
}
