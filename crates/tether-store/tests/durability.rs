//! Idempotent publish, reopening, epochs and shutdown.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;
use tether_core::{ContinuityLost, NamespaceSettings, ORIGIN, Serial};
use tether_store::{FsyncMode, LogStore, StoreConfig, StoreError};

#[tokio::test]
async fn idempotent_publish_in_one_batch_and_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let c = ch("idem");
    let first = {
        let (store, sink) = open(dir.path());
        // Both queued before the writer runs: one group holds them.
        let a = store
            .submit(sub(&c, create_with_id("m-1", "hello")))
            .await
            .unwrap();
        let b = store
            .submit(sub(&c, create_with_id("m-1", "hello again")))
            .await
            .unwrap();
        let (a, b) = (a.await.unwrap(), b.await.unwrap());
        assert!(!a.duplicate);
        assert!(b.duplicate);
        assert_eq!((b.serial, b.version_serial), (a.serial, a.serial));
        assert_eq!(sink.events().len(), 1);
        // Another channel has its own ids.
        assert!(
            !run(&store, &ch("idem2"), create_with_id("m-1", "x"))
                .await
                .unwrap()
                .duplicate
        );
        a
    };
    let (store, sink) = open(dir.path());
    let again = run(&store, &c, create_with_id("m-1", "retry"))
        .await
        .unwrap();
    assert!(again.duplicate);
    assert_eq!(again.serial, first.serial);
    assert!(sink.events().is_empty());
    assert_eq!(store.bounds(&c).await.unwrap().unwrap().last_seq, 1);
    let stored = store.message(&c, first.serial).await.unwrap().unwrap();
    assert_eq!(stored.id, "m-1");
}

#[tokio::test]
async fn idempotency_window_expires() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = StoreConfig::new(dir.path());
    config.namespaces.default = NamespaceSettings {
        idempotency_window_secs: 0,
        ..Default::default()
    };
    let (store, _sink) = open_with(config);
    let c = ch("window");
    let a = run(&store, &c, create_with_id("k", "1")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    store.sweep().await.unwrap();
    let b = run(&store, &c, create_with_id("k", "2")).await.unwrap();
    assert!(!b.duplicate);
    assert_ne!(a.serial, b.serial);
}

#[tokio::test]
async fn reopen_continues_serials_in_the_same_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let c = ch("reopen");
    let (m, bounds) = {
        let (store, _sink) = open(dir.path());
        let m = run(&store, &c, create_op("a")).await.unwrap();
        run(&store, &c, append_op(m.serial, "b")).await.unwrap();
        (m, store.bounds(&c).await.unwrap().unwrap())
    };
    let (store, _sink) = open(dir.path());
    assert_eq!(store.bounds(&c).await.unwrap(), Some(bounds));
    let ack = run(&store, &c, append_op(m.serial, "c")).await.unwrap();
    assert_eq!(ack.version_serial, Serial::new(bounds.epoch, 3).unwrap());
    let stored = store.message(&c, m.serial).await.unwrap().unwrap();
    assert_eq!(stored.data, "abc");
    assert_eq!(store.read_log(&c, m.serial, 10).await.unwrap().len(), 2);
    drop(store);

    // A wiped data directory is a new log: new epoch, old positions refused.
    let fresh = tempfile::tempdir().unwrap();
    tokio::time::sleep(Duration::from_millis(2)).await;
    let (store, _sink) = open(fresh.path());
    let n = run(&store, &c, create_op("new")).await.unwrap();
    assert_ne!(n.serial.epoch(), m.serial.epoch());
    assert_eq!(n.serial.seq(), 1);
    let err = store.read_log(&c, m.serial, 10).await.unwrap_err();
    assert!(matches!(
        err,
        StoreError::ContinuityLost(ContinuityLost::OtherEpoch { position, current })
            if position == m.serial.epoch() && current == n.serial.epoch()
    ));
    let beyond = Serial::new(n.serial.epoch(), 9).unwrap();
    assert!(matches!(
        store.read_log(&c, beyond, 10).await.unwrap_err(),
        StoreError::ContinuityLost(ContinuityLost::Unknown)
    ));
    assert_eq!(
        store.read_log(&ch("empty"), ORIGIN, 10).await.unwrap(),
        vec![]
    );
}

#[tokio::test]
async fn shutdown_finishes_queued_work_then_refuses() {
    for fsync in [FsyncMode::Batch, FsyncMode::Always, FsyncMode::Never] {
        let dir = tempfile::tempdir().unwrap();
        let c = ch("stop");
        let mut config = StoreConfig::new(dir.path());
        config.fsync = fsync;
        let (store, sink) = open_with(config);
        let m = run(&store, &c, create_op("")).await.unwrap();
        let mut receipts = Vec::new();
        for _ in 0..50 {
            receipts.push(
                store
                    .submit(sub(&c, append_op(m.serial, "x")))
                    .await
                    .unwrap(),
            );
        }
        store.shutdown().await.unwrap();
        for r in receipts {
            r.await.unwrap();
        }
        assert_eq!(sink.events().len(), 51);
        let err = store
            .submit(sub(&c, create_op("late")))
            .await
            .err()
            .unwrap();
        assert!(matches!(err, StoreError::Closed));
        // Reads still work after shutdown, and shutting down twice is fine.
        assert_eq!(store.bounds(&c).await.unwrap().unwrap().last_seq, 51);
        store.shutdown().await.unwrap();
        drop(store);
        let (store, _sink) = open(dir.path());
        assert_eq!(
            store.message(&c, m.serial).await.unwrap().unwrap().data,
            "x".repeat(50)
        );
    }
}

#[test]
fn fsync_mode_parses_and_prints() {
    for name in FsyncMode::NAMES {
        assert_eq!(name.parse::<FsyncMode>().unwrap().to_string(), name);
    }
    assert!("sometimes".parse::<FsyncMode>().is_err());
    assert_eq!(FsyncMode::default(), FsyncMode::Batch);
    let parsed: FsyncMode = serde_json::from_str("\"never\"").unwrap();
    assert_eq!(parsed, FsyncMode::Never);
}
