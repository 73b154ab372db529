//! Idempotency ids are scoped by publisher; directories written before
//! that (unscoped `channel 0x00 id` keys) still open, match nothing and
//! expire.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use tether_core::{NamespaceSettings, Operation};
use tether_store::{LogStore, StoreConfig, Submission};

fn by(publisher: &str, op: Operation) -> Submission {
    let mut submission = sub(&ch("room"), op);
    submission.publisher = publisher.into();
    submission
}

async fn apply(store: &tether_store::FjallStore, submission: Submission) -> tether_store::Ack {
    store.submit(submission).await.unwrap().await.unwrap()
}

#[tokio::test]
async fn ids_are_scoped_by_publisher_within_a_group_and_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (alice, bob) = {
        let (store, _sink) = open(dir.path());
        // Queued together: one group holds all three.
        let a = store
            .submit(by("c:alice", create_with_id("m-1", "a")))
            .await
            .unwrap();
        let b = store
            .submit(by("c:bob", create_with_id("m-1", "b")))
            .await
            .unwrap();
        let again = store
            .submit(by("c:alice", create_with_id("m-1", "a2")))
            .await
            .unwrap();
        let (a, b, again) = (a.await.unwrap(), b.await.unwrap(), again.await.unwrap());
        assert!(!a.duplicate && !b.duplicate);
        assert_ne!(a.serial, b.serial);
        assert!(again.duplicate);
        assert_eq!(again.serial, a.serial);
        (a.serial, b.serial)
    };
    let (store, _sink) = open(dir.path());
    let a = apply(&store, by("c:alice", create_with_id("m-1", "x"))).await;
    let b = apply(&store, by("c:bob", create_with_id("m-1", "x"))).await;
    assert_eq!((a.serial, a.duplicate), (alice, true));
    assert_eq!((b.serial, b.duplicate), (bob, true));
    assert!(
        !apply(&store, by("k:app", create_with_id("m-1", "x")))
            .await
            .duplicate
    );
}

#[tokio::test]
async fn unscoped_records_of_an_older_directory_open_match_nothing_and_expire() {
    let dir = tempfile::tempdir().unwrap();
    {
        // A directory as the unscoped layout left it: one message and its
        // id record under `room 0x00 m-1`, indexed by time.
        let (store, _sink) = open(dir.path());
        apply(&store, by("c:alice", create_op("seed"))).await;
        store.shutdown().await.unwrap();
        drop(store);
        let db = fjall::Database::builder(dir.path()).open().unwrap();
        let ks = |name: &str| {
            db.keyspace(name, fjall::KeyspaceCreateOptions::default)
                .unwrap()
        };
        let (ids, id_times) = (ks("ids"), ks("id_times"));
        let serial = "0000000000001-0000000000000001";
        let mut record = vec![1u8];
        record.extend_from_slice(format!(r#"{{"serial":"{serial}","timestamp":1}}"#).as_bytes());
        ids.insert(b"room\0m-1", record).unwrap();
        let mut time_key = 1u64.to_be_bytes().to_vec();
        time_key.extend_from_slice(b"room\0m-1");
        id_times.insert(time_key, b"").unwrap();
        db.persist(fjall::PersistMode::SyncAll).unwrap();
    }
    let mut config = StoreConfig::new(dir.path());
    config.namespaces.default = NamespaceSettings {
        idempotency_window_secs: 1,
        ..Default::default()
    };
    let (store, _sink) = open_with(config);
    // The old record does not suppress a new publish with its id.
    let fresh = apply(&store, by("c:alice", create_with_id("m-1", "new"))).await;
    assert!(!fresh.duplicate);
    // The sweep forgets the old record (its time is long past) and keeps
    // the new one, which still deduplicates.
    store.sweep().await.unwrap();
    let again = apply(&store, by("c:alice", create_with_id("m-1", "again"))).await;
    assert_eq!((again.serial, again.duplicate), (fresh.serial, true));
    store.shutdown().await.unwrap();
    drop(store);
    let db = fjall::Database::builder(dir.path()).open().unwrap();
    let ids = db
        .keyspace("ids", fjall::KeyspaceCreateOptions::default)
        .unwrap();
    assert!(ids.get(b"room\0m-1").unwrap().is_none(), "old record swept");
    assert_eq!(ids.len().unwrap(), 1, "only the scoped record is left");
}
