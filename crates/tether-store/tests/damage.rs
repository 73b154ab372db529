//! A journal that lost its tail: the store notices at open, never hands out
//! a serial that may have been acknowledged, and refuses resumes from
//! positions that may name lost entries; what survived stays usable.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::Read;
use std::path::{Path, PathBuf};

use common::*;
use tether_core::{ContinuityLost, ORIGIN, Serial};
use tether_store::{LogStore, StoreError};

/// The newest journal file and where its data ends (it is preallocated
/// with zeros).
fn active_journal(dir: &Path) -> (PathBuf, u64) {
    let mut journals: Vec<(u64, PathBuf)> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            Some((name.strip_suffix(".jnl")?.parse().ok()?, e.path()))
        })
        .collect();
    journals.sort();
    let (_, path) = journals.pop().unwrap();
    let mut bytes = Vec::new();
    std::fs::File::open(&path)
        .unwrap()
        .read_to_end(&mut bytes)
        .unwrap();
    let end = bytes.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    (path, end as u64)
}

fn is_damaged(e: &StoreError) -> bool {
    matches!(e, StoreError::ContinuityLost(ContinuityLost::Damaged))
}

#[tokio::test]
async fn truncated_journal_moves_serials_past_everything_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let c = ch("conv:damaged");
    let (streaming, acked) = {
        let (store, _) = open(dir.path());
        let streaming = run(&store, &c, create_op("")).await.unwrap().serial;
        run(&store, &c, append_op(streaming, "kept,"))
            .await
            .unwrap();
        let mut acked = Vec::new();
        for i in 0..100 {
            let op = create_op(&format!("{i}:{}", "x".repeat(300)));
            acked.push(run(&store, &c, op).await.unwrap().serial);
        }
        store.shutdown().await.unwrap();
        (streaming, acked)
    };
    let (journal, end) = active_journal(dir.path());
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&journal)
        .unwrap();
    file.set_len(end / 2).unwrap();
    drop(file);

    let (store, _) = open(dir.path());
    let bounds = store.bounds(&c).await.unwrap().unwrap();
    let top = *acked.iter().max().unwrap();
    assert!(bounds.last_seq > top.seq(), "the head moved past every ack");
    assert_eq!(bounds.epoch, top.epoch(), "the epoch stays");
    // Old positions, lost or not, and the origin: continuity lost.
    for from in [top, acked[0], streaming, ORIGIN] {
        let err = store.read_log(&c, from, 10).await.unwrap_err();
        assert!(is_damaged(&err), "{from}: {err}");
    }
    // The new head resumes exactly; new serials are past every ack.
    assert!(
        store
            .read_log(&c, bounds.head(), 10)
            .await
            .unwrap()
            .is_empty()
    );
    let fresh = run(&store, &c, create_op("after")).await.unwrap().serial;
    assert!(fresh > top);
    assert_eq!(
        store.read_log(&c, bounds.head(), 10).await.unwrap()[0].serial,
        fresh
    );
    // What survived is still there and still takes appends.
    let kept = history_all(&store, &c).await;
    assert!(kept.len() < 102, "the damage should have cost messages");
    assert!(kept.iter().any(|m| m.serial == streaming));
    run(&store, &c, append_op(streaming, "more")).await.unwrap();
    let current = store.message(&c, streaming).await.unwrap().unwrap();
    assert_eq!(current.data, "kept,more");
    // A message that was lost cannot be appended to.
    assert!(run(&store, &c, append_op(top, "x")).await.is_err());
    store.shutdown().await.unwrap();
    drop(store);

    // Reopening again finds nothing more to repair.
    let (store, _) = open(dir.path());
    assert_eq!(
        store.bounds(&c).await.unwrap().unwrap().last_seq,
        fresh.seq() + 1
    );
    let next = run(&store, &c, create_op("again")).await.unwrap().serial;
    assert_eq!(next.seq(), fresh.seq() + 2);
}

#[tokio::test]
async fn an_intact_journal_is_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let c = ch("conv:intact");
    let last: Serial = {
        let (store, _) = open(dir.path());
        let mut last = ORIGIN;
        for i in 0..20 {
            last = run(&store, &c, create_op(&i.to_string()))
                .await
                .unwrap()
                .serial;
        }
        last
        // Dropped without `shutdown`: only the drop's persist.
    };
    let (store, _) = open(dir.path());
    assert_eq!(store.read_log(&c, ORIGIN, 100).await.unwrap().len(), 20);
    assert!(store.read_log(&c, last, 10).await.unwrap().is_empty());
    let next = run(&store, &c, create_op("next")).await.unwrap().serial;
    assert_eq!(next.seq(), last.seq() + 1);
}

#[tokio::test]
async fn a_journal_damaged_in_the_middle_is_named_and_recoverable() {
    let dir = tempfile::tempdir().unwrap();
    let c = ch("conv:garbled");
    let top = {
        let (store, _) = open(dir.path());
        let mut top = ORIGIN;
        for i in 0..20 {
            let op = create_op(&format!("{i}:{}", "x".repeat(2000)));
            top = run(&store, &c, op).await.unwrap().serial;
        }
        store.shutdown().await.unwrap();
        top
    };
    // Flip one byte inside a message in the middle of the journal: its
    // batch's checksum no longer matches.
    let (journal, end) = active_journal(dir.path());
    let mut bytes = std::fs::read(&journal).unwrap();
    let middle = (end / 2) as usize;
    let at = middle + bytes[middle..].iter().position(|&b| b == b'x').unwrap() + 10;
    bytes[at] = b'y';
    std::fs::write(&journal, &bytes).unwrap();

    let sink = std::sync::Arc::new(Collect::default());
    let err = tether_store::FjallStore::open(tether_store::StoreConfig::new(dir.path()), sink)
        .err()
        .expect("a garbled journal must not open silently");
    let text = err.to_string();
    assert!(text.contains(&dir.path().display().to_string()), "{text}");
    assert!(text.contains(".jnl"), "{text}");

    // What the message suggests: move the newest journal away.
    std::fs::rename(&journal, dir.path().join("damaged.jnl.bak")).unwrap();
    let (store, _) = open(dir.path());
    let fresh = run(&store, &c, create_op("after")).await.unwrap().serial;
    assert!(
        fresh > top,
        "serial {fresh} reused (acknowledged up to {top})"
    );
    // The whole channel was in that journal: it starts over in a new epoch,
    // and the old position is refused either way.
    let err = store.read_log(&c, top, 1).await.unwrap_err();
    assert!(matches!(err, StoreError::ContinuityLost(_)), "{err}");
}

/// With small write buffers part of the data is already in tables when the
/// journal is damaged (keyspaces flush at different times, so they can
/// recover to different points): serials still stay past everything
/// acknowledged and the new head resumes exactly.
#[tokio::test]
async fn keyspaces_recovered_to_different_points_still_reuse_no_serial() {
    let dir = tempfile::tempdir().unwrap();
    let c = ch("conv:flushed");
    let config = || {
        let mut config = tether_store::StoreConfig::new(dir.path());
        config.write_buffer_bytes = 1 << 20;
        config
    };
    let top = {
        let (store, _) = open_with(config());
        let mut top = ORIGIN;
        for i in 0..600 {
            let op = create_op(&format!("{i}:{}", "x".repeat(2000)));
            top = run(&store, &c, op).await.unwrap().serial;
        }
        store.shutdown().await.unwrap();
        top
    };
    let (journal, end) = active_journal(dir.path());
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&journal)
        .unwrap();
    file.set_len(end / 3).unwrap();
    drop(file);

    let (store, _) = open_with(config());
    let fresh = run(&store, &c, create_op("after")).await.unwrap().serial;
    assert!(
        fresh > top,
        "serial {fresh} reused (acknowledged up to {top})"
    );
    let err = store.read_log(&c, top, 1).await.unwrap_err();
    assert!(matches!(err, StoreError::ContinuityLost(_)), "{err}");
    let head = Serial::new(fresh.epoch(), fresh.seq() - 1).unwrap();
    let tail = store.read_log(&c, head, 10).await.unwrap();
    assert_eq!(tail.len(), 1);
    assert_eq!(tail[0].serial, fresh);
}
