//! Graceful shutdown and connection sessions across restarts, with the real
//! binary: SIGTERM answers every operation the server read before closing
//! with 4001; a connection resumes on the next process (after SIGTERM or
//! `kill -9`) with exactly-once re-sends.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{Value, json};
use support::Ws;
use support::process::{Process, Tether};
use tokio_tungstenite::tungstenite::Message as WsMessage;

/// The real `tether` binary, serving `dir` on `listen` (`127.0.0.1:0` for a
/// free port), with rate limits out of the way of pipelined bursts and its
/// WebSockets' roll-up off.
fn start(dir: &Path, listen: &str, env: &[(&str, &str)]) -> Process {
    Tether::new(dir)
        .listen(listen)
        .env("TETHER_PUBLISH_RATE_PER_SEC", "1000000")
        .env("TETHER_PUBLISH_BURST", "1000000")
        .envs(env)
        .ws_query("rollup_ms=0")
        .start()
}

/// Every frame until the server closes, and the close code.
async fn until_close(ws: &mut Ws) -> (Vec<Value>, Option<u16>) {
    let mut frames = Vec::new();
    loop {
        let next = tokio::time::timeout(Duration::from_secs(20), ws.socket.next())
            .await
            .expect("the server closes in time");
        match next {
            Some(Ok(WsMessage::Text(text))) => {
                let frame: Value = serde_json::from_str(&text).expect("JSON");
                if frame["type"] != "heartbeat" {
                    frames.push(frame);
                }
            }
            Some(Ok(WsMessage::Close(close))) => {
                // Keep polling so the client answers the close, like a
                // browser does; the server then ends the connection.
                let _ = tokio::time::timeout(Duration::from_secs(1), ws.socket.next()).await;
                return (frames, close.map(|c| u16::from(c.code)));
            }
            Some(Ok(_)) => {}
            Some(Err(_)) | None => return (frames, None),
        }
    }
}

fn append(channel: &str, serial: &str, seq: u64) -> Value {
    json!({"type": "append", "req": seq, "seq": seq, "channel": channel, "serial": serial, "data": format!("<{seq}>")})
}

/// The data of `count` appends `<from>..`.
fn fragments(seqs: impl Iterator<Item = u64>) -> String {
    seqs.map(|i| format!("<{i}>")).collect()
}

/// Pipelines many appends, SIGTERMs mid-burst: each frame the server read is
/// answered in order before the 4001 close, and what was applied is exactly
/// what was acknowledged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_answers_every_operation_it_read() {
    let dir = tempfile::tempdir().expect("temp dir");
    let channel = "conversation:term";
    let mut process = start(dir.path(), "127.0.0.1:0", &[]);
    let mut ws = process.ws_client("agent").await;
    let created = ws.publish(channel, json!({"data": ""})).await;
    let serial = created["serial"].as_str().expect("serial").to_owned();

    const BURST: u64 = 4000;
    let (mut sink, mut stream) = ws.socket.split();
    let sender = tokio::spawn(async move {
        use futures::SinkExt;
        for seq in 1..=BURST {
            let frame = append(channel, &serial, seq).to_string();
            if sink.send(WsMessage::Text(frame.into())).await.is_err() {
                break;
            }
        }
        sink
    });
    // Terminate once some acks are in: the rest of the burst is in flight.
    let mut replies = Vec::new();
    let mut terminated = false;
    let mut close_code = None;
    loop {
        let next = tokio::time::timeout(Duration::from_secs(20), stream.next())
            .await
            .expect("the server closes in time");
        match next {
            Some(Ok(WsMessage::Text(text))) => {
                let frame: Value = serde_json::from_str(&text).expect("JSON");
                if frame["type"] == "heartbeat" {
                    continue;
                }
                replies.push(frame);
                if !terminated && replies.len() == 200 {
                    process.sigterm();
                    terminated = true;
                }
            }
            Some(Ok(WsMessage::Close(close))) => {
                close_code = close.map(|c| u16::from(c.code));
                break;
            }
            Some(Ok(_)) => {}
            Some(Err(_)) | None => break,
        }
    }
    // Closing our side ends the server's wait for the closing handshake.
    drop(stream);
    drop(sender.await);
    assert!(process.wait_exit(Duration::from_secs(15)).success());
    assert_eq!(close_code, Some(4001), "closed with the shutdown code");
    let (last, answers) = replies.split_last().expect("replies");
    assert_eq!(last["type"], "error");
    assert_eq!(last["code"], 50301);
    // Replies come in order: acks for 1..=n, then possibly refusals from a
    // store that closed (none expected: the store closes after the drain).
    let mut acked = 0;
    for (i, reply) in answers.iter().enumerate() {
        assert_eq!(
            reply["req"],
            json!(i as u64 + 1),
            "replies in order: {reply}"
        );
        assert_eq!(
            reply["type"], "ack",
            "every operation read was applied: {reply}"
        );
        acked += 1;
    }
    assert!(acked >= 200, "acked {acked}");

    let process = start(dir.path(), "127.0.0.1:0", &[]);
    let history = process.http().history(channel).await;
    let data = history[0]["data"].as_str().expect("string data").to_owned();
    assert!(
        data == fragments(1..=acked),
        "applied exactly what was acknowledged: {acked} acks, {} bytes applied",
        data.len()
    );
    process.kill9();
}

/// Sends `resume` for `old`'s connection and returns the `resumed` frame.
async fn resume(ws: &mut Ws, old: &Value, positions: Value) -> Value {
    let req = ws
        .request(json!({
            "type": "resume",
            "connection_id": old["connection_id"],
            "resume_key": old["resume_key"],
            "positions": positions,
        }))
        .await;
    ws.reply(req).await
}

/// SIGTERM, restart on the same data directory and port: the connection
/// resumes with its id, attachments and presence, and re-sent operations get
/// their original acks without being applied again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_resumes_after_a_graceful_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let channel = "conversation:graceful";
    let mut process = start(dir.path(), "127.0.0.1:0", &[]);
    let listen = process.listen();
    let mut ws = process.ws_client("alice").await;
    let old = ws.connected.clone();
    let attached = ws.attach(channel, json!({"presence": true})).await;
    assert_eq!(attached["continuity"], "new");
    let req = ws
        .request(json!({"type": "presence", "channel": channel, "action": "enter", "data": {"status": "typing"}}))
        .await;
    assert_eq!(ws.reply(req).await["type"], "ok");
    let frame = json!({"type": "publish", "req": 1, "seq": 1, "channel": channel, "message": {"data": "a"}});
    ws.send(frame.clone()).await;
    let created = ws.reply(1).await;
    assert_eq!(created["type"], "ack");
    let serial = created["serial"].as_str().expect("serial").to_owned();
    let mut acks = vec![created];
    for seq in 2..=3 {
        ws.send(append(channel, &serial, seq)).await;
        let ack = ws.reply(seq).await;
        assert_eq!(ack["type"], "ack");
        acks.push(ack);
    }

    process.sigterm();
    let (_, code) = until_close(&mut ws).await;
    assert_eq!(code, Some(4001));
    assert!(process.wait_exit(Duration::from_secs(15)).success());

    let process = start(dir.path(), &listen, &[]);
    let mut ws = process.ws_client("alice").await;
    let resumed = resume(&mut ws, &old, json!({})).await;
    assert_eq!(resumed["type"], "resumed", "{resumed}");
    assert_eq!(resumed["connection_id"], old["connection_id"]);
    assert_eq!(resumed["attachments"][0]["channel"], channel);
    // The attachment restarts from the last position the old process sent.
    let reattached = ws.recv_type("attached").await;
    assert_eq!(reattached["continuity"], "resumed", "{reattached}");
    // Re-sends (publish included) are answered with the original acks.
    ws.send(frame).await;
    for seq in 2..=3 {
        ws.send(append(channel, &serial, seq)).await;
    }
    for (seq, original) in (1..=3).zip(&acks) {
        let again = ws.reply(seq).await;
        assert_eq!(again["type"], "ack");
        assert_eq!(again["version_serial"], original["version_serial"]);
        assert_eq!(again["serial"], original["serial"]);
    }
    // The next operation is new and applies.
    ws.send(append(channel, &serial, 4)).await;
    let fourth = ws.reply(4).await;
    assert_eq!(fourth["type"], "ack");
    assert!(fourth["version_serial"].as_str() > acks[2]["version_serial"].as_str());
    let http = process.http();
    let history = http.history(channel).await;
    assert_eq!(history.len(), 1, "the publish applied once");
    assert_eq!(history[0]["data"], "a<2><3><4>", "each append applied once");
    // Presence was re-entered for the resumed connection.
    let (_, presence) = http.get(&format!("/channels/{channel}/presence")).await;
    let members = presence["members"].as_array().expect("members");
    assert_eq!(members.len(), 1, "{presence}");
    assert_eq!(members[0]["connection_id"], old["connection_id"]);
    assert_eq!(members[0]["data"]["status"], "typing");
    process.kill9();
}

/// `kill -9` in the middle of a burst of sequenced appends, restart, resume,
/// re-send everything unacknowledged: each append is applied exactly once,
/// in order, and those applied before the kill get their original acks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_after_kill_9_applies_each_operation_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    let channel = "conversation:kill";
    let process = start(dir.path(), "127.0.0.1:0", &[]);
    let listen = process.listen();
    let mut ws = process.ws_client("agent").await;
    let old = ws.connected.clone();
    let created = ws.publish(channel, json!({"data": ""})).await;
    let serial = created["serial"].as_str().expect("serial").to_owned();

    const BURST: u64 = 3000;
    for seq in 1..=BURST {
        ws.send(append(channel, &serial, seq)).await;
    }
    let mut versions = std::collections::BTreeMap::new();
    while versions.len() < 100 {
        let ack = ws.recv_type("ack").await;
        let seq = ack["req"].as_u64().expect("req");
        versions.insert(
            seq,
            ack["version_serial"].as_str().expect("version").to_owned(),
        );
    }
    process.kill9();
    let acked = versions.len() as u64;
    assert_eq!(
        versions.keys().copied().collect::<Vec<_>>(),
        (1..=acked).collect::<Vec<_>>()
    );

    let process = start(dir.path(), &listen, &[]);
    // What the killed process applied (typically more than it acked).
    let before = process.http().history(channel).await;
    let head_before = before[0]["version"]["serial"]
        .as_str()
        .expect("head")
        .to_owned();
    let applied_before = before[0]["data"]
        .as_str()
        .expect("data")
        .matches('<')
        .count() as u64;
    assert!(applied_before >= acked, "nothing acknowledged was lost");
    let mut ws = process.ws_client("agent").await;
    let resumed = resume(&mut ws, &old, json!({})).await;
    assert_eq!(resumed["type"], "resumed", "{resumed}");
    assert_eq!(resumed["connection_id"], old["connection_id"]);
    for seq in acked + 1..=BURST {
        ws.send(append(channel, &serial, seq)).await;
    }
    for seq in acked + 1..=BURST {
        let ack = ws.reply(seq).await;
        assert_eq!(ack["type"], "ack", "{ack}");
        versions.insert(
            seq,
            ack["version_serial"].as_str().expect("version").to_owned(),
        );
    }
    // Re-sends of appends applied before the kill got their original acks;
    // the rest applied after the restart.
    for (seq, version) in &versions {
        let applied_before_kill = *seq <= applied_before;
        assert_eq!(
            version.as_str() <= head_before.as_str(),
            applied_before_kill,
            "seq {seq}: {version} vs head {head_before} ({applied_before} applied before the kill)"
        );
    }
    let serials: Vec<&String> = versions.values().collect();
    assert!(serials.windows(2).all(|w| w[0] < w[1]), "acks in order");
    let history = process.http().history(channel).await;
    let data = history[0]["data"].as_str().expect("string data");
    assert!(
        data == fragments(1..=BURST),
        "each append exactly once, in order ({} bytes)",
        data.len()
    );
    assert_eq!(
        history[0]["version"]["serial"].as_str(),
        serials.last().map(|s| s.as_str())
    );
    process.kill9();
}

/// A session is resumable across a restart only within its TTL, counted
/// from when the killed server was last alive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_expires_across_a_restart_after_its_ttl() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ttl = [("TETHER_RESUME_TTL_MS", "800")];
    let process = start(dir.path(), "127.0.0.1:0", &ttl);
    let listen = process.listen();
    let mut ws = process.ws_client("bob").await;
    let old = ws.connected.clone();
    assert_eq!(
        ws.publish("lobby", json!({"data": "x"})).await["type"],
        "ack"
    );
    process.kill9();
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let process = start(dir.path(), &listen, &ttl);
    let mut ws = process.ws_client("bob").await;
    let refused = resume(&mut ws, &old, json!({})).await;
    assert_eq!(refused["type"], "error");
    assert_eq!(refused["code"], 41001);
    process.kill9();
}

/// The resume key and identity are checked for a session read from disk as
/// for one in memory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_on_disk_needs_its_key_and_identity() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut process = start(dir.path(), "127.0.0.1:0", &[]);
    let listen = process.listen();
    let mut ws = process.ws_client("carol").await;
    let old = ws.connected.clone();
    process.sigterm();
    assert_eq!(until_close(&mut ws).await.1, Some(4001));
    assert!(process.wait_exit(Duration::from_secs(15)).success());

    let process = start(dir.path(), &listen, &[]);
    let mut wrong_key = old.clone();
    wrong_key["resume_key"] = json!("0".repeat(64));
    let mut ws = process.ws_client("carol").await;
    let refused = resume(&mut ws, &wrong_key, json!({})).await;
    assert_eq!(refused["code"], 41001, "{refused}");
    let mut ws = process.ws_client("mallory").await;
    let refused = resume(&mut ws, &old, json!({})).await;
    assert_eq!(refused["code"], 41001, "{refused}");
    let mut ws = process.ws_client("carol").await;
    let resumed = resume(&mut ws, &old, json!({})).await;
    assert_eq!(resumed["type"], "resumed", "{resumed}");
    process.kill9();
}

/// After `kill -9`, a resume without positions restarts each channel from
/// the last position written to disk (refreshed every heartbeat), not
/// afresh.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn positions_on_disk_follow_deliveries() {
    let dir = tempfile::tempdir().expect("temp dir");
    let channel = "conversation:positions";
    let fast = [("TETHER_HEARTBEAT_MS", "100")];
    let process = start(dir.path(), "127.0.0.1:0", &fast);
    let listen = process.listen();
    let mut ws = process.ws_client("dave").await;
    let old = ws.connected.clone();
    assert_eq!(ws.attach(channel, json!({})).await["continuity"], "new");
    let mut writer = process.ws_client("erin").await;
    let mut last = Value::Null;
    for i in 0..3 {
        writer.publish(channel, json!({"data": i})).await;
        last = ws.recv_type("message").await;
    }
    let position = last["position"].clone();
    assert!(position.is_string(), "{last}");
    // Several heartbeats, so a refresh ran after the last delivery.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    process.kill9();

    let process = start(dir.path(), &listen, &fast);
    let mut ws = process.ws_client("dave").await;
    let resumed = resume(&mut ws, &old, json!({})).await;
    assert_eq!(resumed["type"], "resumed", "{resumed}");
    assert_eq!(resumed["attachments"][0]["position"], position);
    let attached = ws.recv_type("attached").await;
    assert_eq!(attached["continuity"], "resumed");
    process.kill9();
}

/// In-process: a shutdown ends SSE streams with 50301 and closes WebSocket
/// connections with 4001, and finishes well within the grace period.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_streams_and_connections_promptly() {
    let mut server = support::TestServer::start().await;
    let channel = "conversation:inproc";
    let mut ws = server.ws().await;
    ws.attach(channel, json!({})).await;
    let mut sse =
        support::Sse::connect(&server.base, &format!("/channels/{channel}/stream"), None).await;
    assert_eq!(sse.next().await.event, "attached");
    let started = Instant::now();
    let running = server.server.take().expect("server");
    let stopping = tokio::spawn(running.shutdown());
    let ended = sse.next_of("error").await;
    assert_eq!(ended.data["code"], 50301);
    let (_, code) = until_close(&mut ws).await;
    assert_eq!(code, Some(4001));
    tokio::time::timeout(Duration::from_secs(5), stopping)
        .await
        .expect("shutdown within the grace period")
        .expect("shutdown task");
    assert!(started.elapsed() < Duration::from_secs(5));
}
