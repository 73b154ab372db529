//! A full disk: writes are refused with `InsufficientStorage` (50700) and
//! nothing of them is applied, reads keep working, the store reports not
//! ready, and writing resumes by itself once space is back, with serials
//! continuing and nothing lost or doubled.
//!
//! The data directory is a small tmpfs, so these tests need root (they run
//! as root here and in CI); otherwise they print why and pass.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use tether_core::{ErrorCode, ORIGIN, Serial};
use tether_store::{LogStore, StoreConfig, StoreError, StoreHealth};

/// A tmpfs mounted on a temporary directory for the test's lifetime.
pub struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (e.g. `"24m"`), or says why it cannot.
    pub fn mount(size: &str) -> Option<Tmpfs> {
        let uid = Command::new("id").arg("-u").output().ok()?;
        if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
            eprintln!("skipped: mounting a tmpfs needs root");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status();
        match status {
            Ok(s) if s.success() => Some(Tmpfs { dir }),
            other => {
                eprintln!("skipped: cannot mount a tmpfs ({other:?})");
                None
            }
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// Fills the file system until fewer than `leave` bytes are free (0: until
/// writes fail). Returns the filler's path.
fn fill(dir: &Path, leave: u64) -> PathBuf {
    let path = dir.join("filler");
    let mut file = std::fs::File::create(&path).unwrap();
    let chunk = vec![0x5a_u8; 64 << 10];
    loop {
        let free = free_bytes(dir);
        if leave > 0 && free < leave {
            break;
        }
        let n = if leave > 0 {
            chunk.len().min((free - leave + 1) as usize)
        } else {
            chunk.len()
        };
        match file.write_all(&chunk[..n.max(1)]) {
            Ok(()) => {}
            Err(_) => break,
        }
        if file.sync_data().is_err() {
            break;
        }
    }
    path
}

fn free_bytes(dir: &Path) -> u64 {
    let out = Command::new("df")
        .args(["-B1", "--output=avail"])
        .arg(dir)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .nth(1)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

fn config(dir: &Path, reserve: u64) -> StoreConfig {
    let mut config = StoreConfig::new(dir.join("data"));
    config.min_free_bytes = reserve;
    config.health_probe = Duration::from_millis(50);
    config
}

fn is_full(e: &StoreError) -> bool {
    e.code() == ErrorCode::InsufficientStorage
}

async fn wait_ready(store: &impl LogStore) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while store.health() != StoreHealth::Ready {
        assert!(Instant::now() < deadline, "store never became ready again");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The whole log of `c` must be contiguous and hold each acknowledged
/// create exactly once.
async fn assert_log(store: &impl LogStore, c: &tether_core::ChannelName, acked: &[Serial]) {
    let log = store.read_log(c, ORIGIN, 100_000).await.unwrap();
    let serials: Vec<Serial> = log.iter().map(|m| m.version.serial).collect();
    for (i, s) in serials.iter().enumerate() {
        assert_eq!(s.seq(), i as u64 + 1, "log has a gap or a reused serial");
    }
    for a in acked {
        assert_eq!(
            serials.iter().filter(|s| *s == a).count(),
            1,
            "acknowledged {a} lost or doubled"
        );
    }
}

/// The normal path: the reserve check refuses writes before fjall sees
/// them, so the database is never poisoned and nothing refused is applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_disk_refuses_writes_serves_reads_and_recovers() {
    let Some(fs) = Tmpfs::mount("48m") else {
        return;
    };
    let (store, sink) = open_with(config(fs.path(), 8 << 20));
    let c = ch("disk:full");
    let mut acked = Vec::new();
    for i in 0..20 {
        acked.push(
            run(&store, &c, create_op(&format!("m{i}")))
                .await
                .unwrap()
                .serial,
        );
    }
    assert_eq!(store.health(), StoreHealth::Ready);

    let filler = fill(fs.path(), 4 << 20);
    for i in 0..5 {
        let err = run(&store, &c, create_op(&format!("refused{i}")))
            .await
            .unwrap_err();
        assert!(is_full(&err), "expected insufficient storage, got {err}");
    }
    let StoreHealth::NotReady { code, reason } = store.health() else {
        panic!("a full disk must make the store not ready");
    };
    assert_eq!(code, ErrorCode::InsufficientStorage);
    assert!(reason.contains("free"), "{reason}");
    // Reads keep working.
    assert_eq!(history_all(&store, &c).await.len(), 20);
    assert_log(&store, &c, &acked).await;
    assert_eq!(sink.events().len(), 20, "nothing refused reached fan-out");

    std::fs::remove_file(filler).unwrap();
    wait_ready(&store).await;
    for i in 0..5 {
        acked.push(
            run(&store, &c, create_op(&format!("after{i}")))
                .await
                .unwrap()
                .serial,
        );
    }
    assert_eq!(acked[20].seq(), acked[19].seq() + 1, "serials continue");
    assert_log(&store, &c, &acked).await;
    let history = history_all(&store, &c).await;
    assert_eq!(history.len(), 25);
    assert!(
        history
            .iter()
            .all(|m| !m.data.to_string().contains("refused"))
    );
}

/// The fallback: no reserve, so the write itself fails and fjall poisons
/// the database. The writer reopens it at once (reads go on), refuses
/// writes until the file system takes them again, and then resumes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_write_reopens_the_database_once_space_is_back() {
    let Some(fs) = Tmpfs::mount("48m") else {
        return;
    };
    let (store, sink) = open_with(config(fs.path(), 0));
    let c = ch("disk:poisoned");
    let mut acked = Vec::new();
    for i in 0..20 {
        acked.push(
            run(&store, &c, create_op(&format!("m{i}")))
                .await
                .unwrap()
                .serial,
        );
    }
    let filler = fill(fs.path(), 0);
    let mut refused = 0;
    let mut unknown = 0;
    for i in 0..200 {
        // A few may still fit in what was left; the disk fills up for sure.
        match run(&store, &c, create_op(&format!("{i}:{}", "x".repeat(4096)))).await {
            Ok(ack) => acked.push(ack.serial),
            // The write that failed mid-way: its outcome is unknown, and the
            // client is told so (retry with the same id), not that nothing
            // was applied.
            Err(e) if e.code() == ErrorCode::StorageUnavailable => unknown += 1,
            Err(e) => {
                assert!(is_full(&e), "expected insufficient storage, got {e}");
                refused += 1;
            }
        }
    }
    assert!(
        unknown <= 1,
        "{unknown} writes failed mid-way, expected one group"
    );
    assert!(refused > 150, "only {refused} writes were refused");
    assert!(matches!(store.health(), StoreHealth::NotReady { .. }));
    // Reads are served meanwhile (by the database reopened after the
    // failure). The one group whose write failed may be there: the journal
    // can end up with all of it although the write reported a failure.
    let during = history_all(&store, &c).await.len();
    assert!(
        during >= acked.len() && during <= acked.len() + unknown,
        "{during} messages readable, {} acknowledged",
        acked.len()
    );
    let delivered = sink.events().len();
    assert_eq!(
        delivered,
        acked.len(),
        "fan-out saw exactly the acknowledged"
    );

    std::fs::remove_file(filler).unwrap();
    wait_ready(&store).await;
    let next = run(&store, &c, create_op("after")).await.unwrap().serial;
    assert!(next > *acked.iter().max().unwrap(), "serials continue");
    acked.push(next);
    assert_log(&store, &c, &acked).await;
    let history = history_all(&store, &c).await;
    let reappeared = history.len() - acked.len();
    eprintln!(
        "writes with an unknown outcome that reappeared after the reopen: {reappeared} of \
         {unknown}; refused with 50700 (never applied): {refused}"
    );
    // Only a write answered 'outcome unknown' may be there; nothing
    // answered 50700 ever is.
    assert!(
        reappeared <= unknown,
        "{reappeared} unacknowledged writes reappeared but only {unknown} had an unknown outcome"
    );
}
