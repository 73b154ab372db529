//! The store under a failing disk, end to end through the real binary:
//! - a full disk refuses writes with 50700, keeps serving reads, makes
//!   `/readyz` answer 503, and writing resumes by itself once space is back;
//! - a journal that lost its tail (truncated, or a zeroed block) is noticed
//!   at start (a loud log line), no serial is handed out twice, and resuming
//!   from a position that may have been lost gets continuity lost.

mod support;

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::Http;
use support::process::{Process, Tether};

/// The real `tether` binary on a data directory; its stderr is collected.
fn start(dir: &Path, env: &[(&str, &str)]) -> Process {
    Tether::new(dir).envs(env).capture_stderr().start()
}

// ---------------------------------------------------------------------------
// A full disk

/// A tmpfs mounted for the test's lifetime (needs root; tests run as root
/// here and in CI).
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Option<Tmpfs> {
        let uid = Command::new("id").arg("-u").output().ok()?;
        if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
            eprintln!("skipped: mounting a tmpfs needs root");
            return None;
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            eprintln!("skipped: cannot mount a tmpfs");
            return None;
        }
        Some(Tmpfs { dir })
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

fn free_bytes(dir: &Path) -> u64 {
    let out = Command::new("df")
        .args(["-B1", "--output=avail"])
        .arg(dir)
        .output()
        .expect("df");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .nth(1)
        .and_then(|l| l.trim().parse().ok())
        .expect("df output")
}

/// Fills `dir`'s file system until fewer than `leave` bytes are free.
fn fill(dir: &Path, leave: u64) -> PathBuf {
    let path = dir.join("filler");
    let mut file = std::fs::File::create(&path).expect("filler");
    let chunk = vec![0x5a_u8; 64 << 10];
    loop {
        let free = free_bytes(dir);
        if free < leave {
            break;
        }
        let n = chunk.len().min((free - leave + 1) as usize).max(1);
        if file.write_all(&chunk[..n]).is_err() || file.sync_data().is_err() {
            break;
        }
    }
    path
}

async fn wait_ready(http: &Http, ready: bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = http.get("/readyz").await;
        if (status == 200) == ready {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "readyz stayed {status} ({body}), wanted ready={ready}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_disk_refuses_writes_with_50700_and_recovers_by_itself() {
    let Some(fs) = Tmpfs::mount("96m") else {
        return;
    };
    let data = fs.dir.path().join("data");
    let reserve = (8_u64 << 20).to_string();
    let process = start(&data, &[("TETHER_MIN_FREE_BYTES", &reserve)]);
    let http = process.http();
    let channel = "conversation:disk";
    let mut ws = process.ws().await;
    let mut acked = Vec::new();
    for i in 0..10 {
        let ack = ws.publish(channel, json!({"data": format!("m{i}")})).await;
        acked.push(ack["serial"].as_str().expect("serial").to_owned());
    }
    assert_eq!(http.get("/readyz").await.0, 200);

    let filler = fill(fs.dir.path(), 4 << 20);
    // WebSocket and REST both refuse with 50700 (HTTP 507).
    let reply = ws.publish(channel, json!({"data": "refused"})).await;
    assert_eq!(reply["code"], 50700, "{reply}");
    let (status, body) = http
        .post(
            &format!("/channels/{channel}/messages"),
            json!({"data": "refused too"}),
        )
        .await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (507, &json!(50700)),
        "{body}"
    );
    // Not ready, with a reason; the server is not stopping.
    let (status, body) = http.get("/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], 50700, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("free")),
        "{body}"
    );
    // Reads keep working.
    assert_eq!(http.history(channel).await.len(), 10);
    let mut reader = process.ws().await;
    let attached = reader.attach(channel, json!({"from": acked[4]})).await;
    assert_eq!(attached["continuity"], "resumed");

    std::fs::remove_file(filler).expect("remove filler");
    wait_ready(&http, true).await;
    let ack = ws.publish(channel, json!({"data": "after"})).await;
    let next = ack["serial"].as_str().expect("serial after recovery");
    assert_eq!(&next[..13], &acked[9][..13], "same epoch");
    let seq = |s: &str| s[14..].parse::<u64>().expect("seq");
    assert_eq!(seq(next), seq(&acked[9]) + 1, "serials continue");
    let history = http.history(channel).await;
    let data: Vec<&str> = history.iter().filter_map(|m| m["data"].as_str()).collect();
    let mut expected: Vec<String> = (0..10).map(|i| format!("m{i}")).collect();
    expected.push("after".into());
    assert_eq!(data, expected, "nothing lost, doubled or half-applied");
    process.kill9();
}

// ---------------------------------------------------------------------------
// A damaged journal

/// The newest fjall journal file in `dir` and where its data ends (the
/// file is preallocated with zeros).
fn active_journal(dir: &Path) -> (PathBuf, u64) {
    let mut journals: Vec<(u64, PathBuf)> = std::fs::read_dir(dir)
        .expect("data dir")
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let id = name.strip_suffix(".jnl")?.parse().ok()?;
            Some((id, e.path()))
        })
        .collect();
    journals.sort();
    let (_, path) = journals.pop().expect("a journal file");
    let mut bytes = Vec::new();
    std::fs::File::open(&path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .expect("read journal");
    let end = bytes.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    (path, end as u64)
}

enum Damage {
    /// Cut the file at this fraction of its data.
    Truncate(f64),
    /// Zero one 4 KiB block that ends where the data ends.
    ZeroLastBlock,
}

fn damage(dir: &Path, how: Damage) {
    let (path, end) = active_journal(dir);
    assert!(end > 16 << 10, "journal holds only {end} bytes");
    match how {
        Damage::Truncate(fraction) => {
            let file = std::fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .expect("open journal");
            file.set_len((end as f64 * fraction) as u64)
                .expect("truncate");
        }
        Damage::ZeroLastBlock => {
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .expect("open journal");
            file.seek(SeekFrom::Start(end - 4096)).expect("seek");
            file.write_all(&[0_u8; 4096]).expect("zero");
        }
    }
}

fn seq(serial: &str) -> u64 {
    serial[14..].parse().expect("seq")
}

async fn lost_tail_is_detected(how: Damage) {
    let dir = tempfile::tempdir().expect("temp dir");
    let channel = "conversation:damaged";
    let process = start(dir.path(), &[]);
    let mut ws = process.ws().await;
    let mut acked = Vec::new();
    for i in 0..200 {
        let ack = ws
            .publish(channel, json!({"data": format!("{i}:{}", "x".repeat(200))}))
            .await;
        acked.push(ack["serial"].as_str().expect("serial").to_owned());
    }
    let other = ws.publish("lobby", json!({"data": "hi"})).await;
    let other = other["serial"].as_str().expect("serial").to_owned();
    process.kill9();

    damage(dir.path(), how);

    let process = start(dir.path(), &[]);
    let http = process.http();
    let survived = http.history(channel).await.len();
    assert!(survived < 200, "the damage should have cost messages");
    // Loudly, naming what was lost.
    let log = process.stderr();
    assert!(log.contains("DATA LOSS"), "no loud log line:\n{log}");
    assert!(log.contains("ERROR"), "not at error level:\n{log}");
    assert!(log.contains(channel), "the channel is not named:\n{log}");

    // No serial is handed out twice: new ones are past every acknowledged.
    let mut ws = process.ws().await;
    let fresh = ws.publish(channel, json!({"data": "after"})).await;
    let fresh = fresh["serial"].as_str().expect("serial").to_owned();
    let top = acked.iter().max().expect("acked");
    assert!(
        fresh > *top,
        "serial {fresh} reused (acknowledged up to {top})"
    );
    assert!(!acked.contains(&fresh));

    // A resume from an acknowledged position that was lost, or from any
    // position before the damage, is told continuity was lost.
    for (on, from) in [(channel, top), (channel, &acked[0]), ("lobby", &other)] {
        let mut late = process.ws().await;
        let attached = late.attach(on, json!({"from": from})).await;
        assert_eq!(
            attached["continuity"], "lost",
            "resume from {from}: {attached}"
        );
    }
    // A resume from the head after the repair is exact.
    let mut late = process.ws().await;
    let attached = late
        .attach(
            channel,
            json!({"from": format!("{}-{:016}", &fresh[..13], seq(&fresh) - 1)}),
        )
        .await;
    assert_eq!(attached["continuity"], "resumed", "{attached}");
    // What survived is still readable, and the new message follows it.
    let history = http.history(channel).await;
    assert_eq!(history.len(), survived + 1);
    assert_eq!(history[survived]["data"], "after");

    // A clean restart after that reports nothing more.
    process.kill9();
    let process = start(dir.path(), &[]);
    let mut ws = process.ws().await;
    let again = ws.publish(channel, json!({"data": "again"})).await;
    assert_eq!(
        seq(again["serial"].as_str().expect("serial")),
        seq(&fresh) + 1
    );
    assert!(
        !process.stderr().contains("DATA LOSS"),
        "{}",
        process.stderr()
    );
    process.kill9();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_journal_is_detected_and_serials_are_not_reused() {
    lost_tail_is_detected(Damage::Truncate(0.5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zeroed_journal_block_is_detected_and_serials_are_not_reused() {
    lost_tail_is_detected(Damage::ZeroLastBlock).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unopenable_data_dir_is_named() {
    let dir = tempfile::tempdir().expect("temp dir");
    let process = start(dir.path(), &[]);
    let mut ws = process.ws().await;
    ws.publish("lobby", json!({"data": "hi"})).await;
    process.kill9();
    std::fs::remove_file(dir.path().join("lock")).expect("remove the lock file");

    let out = Command::new(support::bin::tether_bin())
        .args(["serve", "--dev", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .env("TETHER_LOG", "warn")
        .output()
        .expect("run tether");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lock = dir.path().join("lock");
    assert!(
        stderr.contains(&lock.display().to_string()),
        "the message should name {}: {stderr}",
        lock.display()
    );
}
