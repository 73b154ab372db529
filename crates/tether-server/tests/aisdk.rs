//! The AI SDK resume endpoint (`GET /channels/{channel}/aisdk/stream`):
//! checked here with a plain SSE reader, and with the real `ai` npm
//! package's parser by running `tests/aisdk/resume.test.mjs` under Node
//! against a server started in this process.

mod support;

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{Http, TestServer, WAIT};
use tether_fake_llm::{self as fake, FakeLlm, FakeOptions};

async fn setup() -> (TestServer, FakeLlm) {
    let options = FakeOptions {
        tokens_per_second: 200.0,
        ..FakeOptions::default()
    };
    TestServer::with_fake_llm(options, |_| {}).await
}

async fn ask(http: &Http, channel: &str, prompt: &str) -> String {
    let body = json!({"messages": [{"role": "user", "content": prompt}]});
    let (status, reply) = http.post(&format!("/channels/{channel}/llm"), body).await;
    assert_eq!(status, 202, "{reply}");
    reply["serial"].as_str().expect("serial").to_owned()
}

/// Polls the stored response until `done` holds.
async fn until(http: &Http, channel: &str, serial: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let (_, message) = http
            .get(&format!("/channels/{channel}/messages/{serial}"))
            .await;
        if done(&message) {
            return message;
        }
        assert!(Instant::now() < deadline, "timed out: {message}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Reads a whole UI message stream: its headers and chunks. Checks that
/// it ends with `[DONE]`.
async fn read_ui_stream(base: &str, channel: &str) -> (reqwest::header::HeaderMap, Vec<Value>) {
    let response = reqwest::get(format!("{base}/channels/{channel}/aisdk/stream"))
        .await
        .expect("GET");
    assert_eq!(response.status().as_u16(), 200);
    let headers = response.headers().clone();
    let body = tokio::time::timeout(WAIT, response.text())
        .await
        .expect("stream ends")
        .expect("body");
    let mut chunks = Vec::new();
    let mut done = false;
    for event in body.split("\n\n").filter(|e| !e.trim().is_empty()) {
        let data = event
            .lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .collect::<String>();
        if data.is_empty() {
            continue; // keep-alive comment
        }
        assert!(!done, "nothing may follow [DONE]");
        if data == "[DONE]" {
            done = true;
        } else {
            chunks.push(serde_json::from_str(&data).expect("chunk is JSON"));
        }
    }
    assert!(done, "the stream ends with [DONE]");
    (headers, chunks)
}

fn text_of(chunks: &[Value]) -> String {
    chunks
        .iter()
        .filter(|c| c["type"] == "text-delta")
        .filter_map(|c| c["delta"].as_str())
        .collect()
}

#[tokio::test]
async fn nothing_streaming_is_204() {
    let (server, _fake) = setup().await;
    let http = server.http();
    let url = format!("{}/channels/chat:none/aisdk/stream", server.base);
    assert_eq!(
        reqwest::get(&url).await.expect("GET").status().as_u16(),
        204
    );
    let serial = ask(&http, "chat:none", "[[tokens:2]] [[tps:0]]").await;
    until(&http, "chat:none", &serial, |m| {
        m["extras"]["stream"] == "complete"
    })
    .await;
    assert_eq!(
        reqwest::get(&url).await.expect("GET").status().as_u16(),
        204
    );
}

#[tokio::test]
async fn a_live_response_streams_from_its_beginning() {
    let (server, _fake) = setup().await;
    let http = server.http();
    let prompt = "Hi [[tokens:100]] [[tps:200]]";
    let serial = ask(&http, "chat:live", prompt).await;
    // Attach after some text exists: it must come first, in one delta.
    until(&http, "chat:live", &serial, |m| {
        m["data"].as_str().is_some_and(|d| d.len() > 40)
    })
    .await;
    let (headers, chunks) = read_ui_stream(&server.base, "chat:live").await;
    assert_eq!(headers["x-vercel-ai-ui-message-stream"], "v1");
    assert_eq!(headers["content-type"], "text/event-stream");
    let types: Vec<&str> = chunks.iter().filter_map(|c| c["type"].as_str()).collect();
    assert_eq!(types[..3], ["start", "text-start", "text-delta"]);
    assert_eq!(types[types.len() - 2..], ["text-end", "finish"]);
    assert!(chunks[2]["delta"].as_str().is_some_and(|d| d.len() > 40));
    assert_eq!(chunks[0]["messageId"], serial.as_str());
    let stored = until(&http, "chat:live", &serial, |m| {
        m["extras"]["stream"] != "streaming"
    })
    .await;
    assert_eq!(text_of(&chunks), fake::answer(prompt, 100));
    assert_eq!(stored["data"], text_of(&chunks).as_str());
}

#[tokio::test]
async fn an_upstream_error_ends_the_stream_with_an_error_chunk() {
    let (server, _fake) = setup().await;
    let http = server.http();
    let serial = ask(
        &http,
        "chat:err",
        "[[malformed]] [[tokens:200]] [[tps:100]]",
    )
    .await;
    until(&http, "chat:err", &serial, |m| {
        m["data"].as_str().is_some_and(|d| !d.is_empty())
    })
    .await;
    let (_, chunks) = read_ui_stream(&server.base, "chat:err").await;
    let last = chunks.last().expect("chunks");
    assert_eq!(last["type"], "error", "{chunks:?}");
    assert!(
        last["errorText"]
            .as_str()
            .is_some_and(|t| t.contains("malformed"))
    );
}

/// The directory of the Node test, with its own package.json and lock.
fn node_dir() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/aisdk"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_ai_package_parses_and_resumes_our_stream() {
    let node = tokio::process::Command::new("node")
        .arg("--version")
        .output()
        .await;
    if !node.is_ok_and(|o| o.status.success()) {
        eprintln!("SKIPPED: `node` is not installed; the AI SDK check needs Node 20+");
        return;
    }
    if !node_dir().join("node_modules/ai").exists() {
        // scripts/test runs `npm ci` first; do the same for a bare `cargo test`.
        let installed = tokio::process::Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(node_dir())
            .status()
            .await;
        assert!(
            installed.is_ok_and(|s| s.success()),
            "`npm ci` failed in {}",
            node_dir().display()
        );
    }
    let (server, _fake) = setup().await;
    let run = tokio::process::Command::new("node")
        .args(["--test", "resume.test.mjs"])
        .current_dir(node_dir())
        .env("TETHER_URL", &server.base)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("node --test finishes")
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    eprintln!("{stdout}{stderr}");
    assert!(output.status.success(), "the Node AI SDK test failed");
    assert!(stdout.contains("# fail 0"), "no failures expected");
}
