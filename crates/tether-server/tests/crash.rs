//! Durability: `kill -9` the real binary mid-stream; after a restart on the
//! same data directory every acknowledged operation is there and serials
//! keep increasing. A wiped data directory gets a new epoch.

mod support;

use std::path::Path;

use serde_json::json;
use support::process::{Process, Tether};

/// The real `tether` binary, serving `dir` on a free port with `--fsync`.
fn start(dir: &Path, fsync: &str) -> Process {
    Tether::new(dir).args(["--fsync", fsync]).start()
}

async fn kill_mid_stream(fsync: &str) {
    let dir = tempfile::tempdir().expect("temp dir");
    let channel = "conversation:crash";
    let process = start(dir.path(), fsync);
    let mut agent = process.ws().await;
    let created = agent
        .publish(channel, json!({"data": "", "id": "resp-1"}))
        .await;
    let serial = created["serial"].as_str().expect("serial").to_owned();
    let edited = agent.publish(channel, json!({"data": "v1"})).await;
    let edited_serial = edited["serial"].as_str().expect("serial").to_owned();
    let req = agent
        .request(
            json!({"type": "update", "channel": channel, "serial": edited_serial, "data": "v2"}),
        )
        .await;
    assert_eq!(agent.reply(req).await["type"], "ack");

    // Pipeline 2000 appends and kill the server once 300 are acknowledged.
    for i in 0..2000 {
        agent
            .request(json!({"type": "append", "channel": channel, "serial": serial, "data": format!("<{i}>")}))
            .await;
    }
    let mut acked = String::new();
    let mut last_version = String::new();
    for i in 0..300 {
        let ack = agent.recv_type("ack").await;
        acked.push_str(&format!("<{i}>"));
        last_version = ack["version_serial"].as_str().expect("version").to_owned();
    }
    process.kill9();

    let process = start(dir.path(), fsync);
    let http = process.http();
    let history = http.history(channel).await;
    assert_eq!(history.len(), 2);
    let data = history[0]["data"].as_str().expect("string data");
    assert!(
        data.starts_with(&acked),
        "acknowledged appends lost: have {} bytes, acked {}",
        data.len(),
        acked.len()
    );
    assert!(history[0]["version"]["serial"].as_str() >= Some(last_version.as_str()));
    assert_eq!(history[1]["data"], "v2", "acknowledged update survived");
    let (_, versions) = http
        .get(&format!(
            "/channels/{channel}/messages/{edited_serial}/versions"
        ))
        .await;
    assert_eq!(versions["versions"].as_array().map(Vec::len), Some(2));

    // Serials continue after what was there, and idempotency survived.
    let mut agent = process.ws().await;
    // The kill most likely fell between a fragment and the next checkpoint
    // of the response: the writer continues from what the disk holds.
    let req = agent
        .request(json!({"type": "append", "channel": channel, "serial": serial, "data": "<after>"}))
        .await;
    assert_eq!(agent.reply(req).await["type"], "ack");
    let (_, message) = http
        .get(&format!("/channels/{channel}/messages/{serial}"))
        .await;
    assert_eq!(
        message["data"].as_str().map(str::len),
        Some(data.len() + "<after>".len())
    );
    assert!(
        message["data"]
            .as_str()
            .is_some_and(|d| d.starts_with(data) && d.ends_with("<after>"))
    );
    let next = agent
        .publish(channel, json!({"data": "after restart"}))
        .await;
    assert!(next["serial"].as_str() > history[0]["version"]["serial"].as_str());
    let again = agent
        .publish(channel, json!({"data": "", "id": "resp-1"}))
        .await;
    assert_eq!(again["duplicate"], true);
    assert_eq!(again["serial"], json!(serial));
    // A subscriber resuming from the last acked position gets the rest.
    let mut late = process.ws().await;
    let attached = late.attach(channel, json!({"from": last_version})).await;
    assert_eq!(attached["continuity"], "resumed");
    process.kill9();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_loses_nothing_acknowledged_fsync_batch() {
    kill_mid_stream("batch").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_loses_nothing_acknowledged_fsync_never() {
    // `never` leaves flushing to the OS, which survives a process kill.
    kill_mid_stream("never").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wiped_data_dir_means_new_epoch_and_lost_continuity() {
    let dir = tempfile::tempdir().expect("temp dir");
    let process = start(dir.path(), "batch");
    let mut ws = process.ws().await;
    let old = ws.publish("lobby", json!({"data": "before"})).await;
    process.kill9();
    std::fs::remove_dir_all(dir.path()).expect("wipe");

    let process = start(dir.path(), "batch");
    let mut ws = process.ws().await;
    let new = ws.publish("lobby", json!({"data": "after"})).await;
    assert_ne!(
        old["serial"].as_str().map(|s| &s[..13]),
        new["serial"].as_str().map(|s| &s[..13]),
        "a new log gets a new epoch"
    );
    let mut late = process.ws().await;
    let attached = late.attach("lobby", json!({"from": old["serial"]})).await;
    assert_eq!(attached["continuity"], "lost");
    assert_eq!(late.recv_type("message").await["message"]["data"], "after");
}
