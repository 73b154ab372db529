//! Graceful shutdown and connection sessions across restarts, with the real
//! binary: SIGTERM answers every operation the server read before closing
//! with 4001; a connection resumes on the next process (after SIGTERM or
//! `kill -9`) with exactly-once re-sends.

mod support;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{Value, json};
use support::Ws;
use tokio_tungstenite::tungstenite::Message as WsMessage;

/// The real `tether` binary, serving `dir`.
struct Process {
    child: Child,
    base: String,
}

impl Process {
    /// Starts on `listen` (`127.0.0.1:0` for a free port), with rate limits
    /// out of the way of pipelined bursts.
    fn start(dir: &Path, listen: &str, env: &[(&str, &str)]) -> Process {
        let mut command = Command::new(env!("CARGO_BIN_EXE_tether"));
        command
            .args(["serve", "--dev", "--listen", listen, "--data-dir"])
            .arg(dir)
            .env("TETHER_LOG", "warn")
            .env("TETHER_PUBLISH_RATE_PER_SEC", "1000000")
            .env("TETHER_PUBLISH_BURST", "1000000")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (key, value) in env {
            command.env(key, value);
        }
        let mut child = command.spawn().expect("spawn tether");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read address");
        let base = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_owned();
        Process { child, base }
    }

    /// `host:port` it listens on.
    fn listen(&self) -> String {
        self.base.trim_start_matches("http://").to_owned()
    }

    /// Sends SIGTERM (without a libc dependency); returns at once.
    fn sigterm(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM failed");
    }

    /// Waits for the process to exit by itself.
    fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(Instant::now() < deadline, "tether did not exit after SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn kill9(mut self) {
        self.child.kill().expect("kill -9");
        let _ = self.child.wait();
    }

    async fn ws(&self, client_id: &str) -> Ws {
        let url = format!(
            "{}/ws?rollup_ms=0&client_id={client_id}",
            self.base.replace("http://", "ws://")
        );
        Ws::connect(&url).await
    }

    fn http(&self) -> support::Http {
        support::Http {
            base: self.base.clone(),
            client: reqwest::Client::new(),
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
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
    let mut process = Process::start(dir.path(), "127.0.0.1:0", &[]);
    let mut ws = process.ws("agent").await;
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
    let _ = sender.await;
    assert!(process.wait_exit(Duration::from_secs(15)).success());
    assert_eq!(close_code, Some(4001), "closed with the shutdown code");
    let (last, answers) = replies.split_last().expect("replies");
    assert_eq!(last["type"], "error");
    assert_eq!(last["code"], 50301);
    // Replies come in order: acks for 1..=n, then possibly refusals from a
    // store that closed (none expected: the store closes after the drain).
    let mut acked = 0;
    for (i, reply) in answers.iter().enumerate() {
        assert_eq!(reply["req"], json!(i as u64 + 1), "replies in order: {reply}");
        assert_eq!(reply["type"], "ack", "every operation read was applied: {reply}");
        acked += 1;
    }
    assert!(acked >= 200, "acked {acked}");

    let process = Process::start(dir.path(), "127.0.0.1:0", &[]);
    let history = process.http().history(channel).await;
    let data = history[0]["data"].as_str().expect("string data").to_owned();
    assert_eq!(
        data,
        fragments(1..=acked),
        "applied exactly what was acknowledged ({acked} acks)"
    );
    process.kill9();
}
