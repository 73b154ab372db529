//! Abandoned responses (issue 12): a response left `streaming` by a writer
//! that stopped is ended by the server with `extras.stream = "error"` and
//! `extras.reason = "abandoned"`, seen live and in history; LLM bridge
//! responses cut off by a restart are ended at start-up. Against the real
//! binary, killed with `kill -9` where a process must die.

mod support;

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use support::process::{Process, Tether};
use support::{Http, Ws};

/// The real `tether` binary in dev mode, serving `dir/data` on a free port
/// with `config` as its TOML file (written to `dir/tether.toml`); its
/// WebSockets have roll-up off.
fn start(dir: &Path, config: &str) -> Process {
    Tether::new(dir.join("data"))
        .config(dir.join("tether.toml"), config)
        .ws_query("rollup_ms=0")
        .start()
}

/// The current message `serial` of `channel`, from REST.
async fn current(http: &Http, channel: &str, serial: &str) -> Value {
    let (status, body) = http
        .get(&format!("/channels/{channel}/messages/{serial}"))
        .await;
    assert_eq!(status, 200, "{body}");
    body
}

/// Waits (up to `wait`) for an event on `ws` updating `serial`'s stream
/// status to something other than `streaming`; returns the message.
async fn ended_event(ws: &mut Ws, serial: &str, wait: Duration) -> Option<Value> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let frame = ws.try_recv(left).await?;
        if frame["type"] != "message" {
            continue;
        }
        let message = &frame["message"];
        if message["serial"] == serial
            && message["action"] == "update"
            && message["extras"]["stream"] != "streaming"
        {
            return Some(message.clone());
        }
    }
}

fn assert_abandoned(message: &Value) {
    assert_eq!(message["extras"]["stream"], "error", "{message}");
    assert_eq!(message["extras"]["reason"], "abandoned", "{message}");
    assert!(
        message["extras"]["error"]["message"].is_string(),
        "{message}"
    );
}

const CONFIG: &str = "
[namespaces.quick]
abandon_after_secs = 1

[namespaces.never]
abandon_after_secs = 0
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_whose_writer_stops_is_ended_as_abandoned() {
    let dir = tempfile::tempdir().expect("temp dir");
    let process = start(dir.path(), CONFIG);
    let channel = "quick:conversation";
    let mut subscriber = process.ws().await;
    subscriber.attach(channel, json!({})).await;

    let mut agent = process.ws().await;
    let created = agent
        .publish(
            channel,
            json!({"name": "response", "data": "", "extras": {"stream": "streaming"}}),
        )
        .await;
    let serial = created["serial"].as_str().expect("serial").to_owned();
    // A response in a namespace that never abandons, for contrast.
    let kept = agent
        .publish(
            "never:conversation",
            json!({"name": "response", "data": "", "extras": {"stream": "streaming"}}),
        )
        .await;
    let kept = kept["serial"].as_str().expect("serial").to_owned();

    // Appends keep it alive well past abandon_after_secs in total.
    for i in 0..6 {
        agent.append(channel, &serial, &format!("t{i} ")).await;
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    let live = current(&process.http(), channel, &serial).await;
    assert_eq!(
        live["extras"]["stream"], "streaming",
        "ended while appending: {live}"
    );

    // The writer goes away without ending its response.
    drop(agent);
    let event = ended_event(&mut subscriber, &serial, Duration::from_secs(5))
        .await
        .expect("the subscriber sees the response end");
    assert_abandoned(&event);
    assert_eq!(event["data"], "t0 t1 t2 t3 t4 t5 ", "{event}");

    // History has it, and the response takes no more appends.
    let history = process.http().history(channel).await;
    let stored = history
        .iter()
        .find(|m| m["serial"] == serial.as_str())
        .expect("in history");
    assert_abandoned(stored);
    let mut late = process.ws().await;
    let req = late
        .request(json!({"type": "append", "channel": channel, "serial": serial, "data": "late"}))
        .await;
    let reply = late.reply(req).await;
    assert_eq!(reply["code"], 40901, "{reply}");

    // abandon_after_secs = 0: never ended.
    let kept = current(&process.http(), "never:conversation", &kept).await;
    assert_eq!(kept["extras"]["stream"], "streaming", "{kept}");
    process.kill9();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_that_completes_is_left_alone() {
    let dir = tempfile::tempdir().expect("temp dir");
    let process = start(dir.path(), CONFIG);
    let channel = "quick:done";
    let mut agent = process.ws().await;
    let created = agent
        .publish(
            channel,
            json!({"data": "", "extras": {"stream": "streaming"}}),
        )
        .await;
    let serial = created["serial"].as_str().expect("serial").to_owned();
    agent.append(channel, &serial, "all of it").await;
    let req = agent
        .request(
            json!({"type": "update", "channel": channel, "serial": serial,
            "extras": {"stream": "complete"}}),
        )
        .await;
    let reply = agent.reply(req).await;
    assert!(reply["type"] == "ack", "{reply}");
    tokio::time::sleep(Duration::from_millis(2_000)).await;
    let message = current(&process.http(), channel, &serial).await;
    assert_eq!(message["extras"]["stream"], "complete", "{message}");
    assert!(message["extras"].get("reason").is_none(), "{message}");
    process.kill9();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_left_streaming_by_a_killed_server_end_after_restart() {
    use tether_fake_llm::{self as fake, FakeOptions};
    // A slow model: the bridge job is mid-answer when the server dies.
    let fake = fake::serve(
        "127.0.0.1:0".parse().expect("addr"),
        FakeOptions {
            tokens_per_second: 10.0,
            tokens: 1_000,
            ..FakeOptions::default()
        },
    )
    .await
    .expect("fake LLM starts");
    let config = format!(
        "{CONFIG}\n[llm]\nbase_url = \"{}\"\nmodel = \"fake-1\"\n",
        fake.base_url()
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let process = start(dir.path(), &config);
    let http = process.http();

    // The bridge streams into a channel whose namespace would wait 300 s.
    let bridge_channel = "conversation:bridge";
    let (status, body) = http
        .post(
            &format!("/channels/{bridge_channel}/llm"),
            json!({"messages": [{"role": "user", "content": "Count."}]}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let bridge = body["serial"].as_str().expect("serial").to_owned();
    // A writer of our own, also mid-stream, in the 1 s namespace.
    let mut agent = process.ws().await;
    let created = agent
        .publish(
            "quick:agent",
            json!({"data": "half", "extras": {"stream": "streaming"}}),
        )
        .await;
    let agent_serial = created["serial"].as_str().expect("serial").to_owned();
    // An agent response in the 300 s namespace: its writer may come back,
    // so a restart alone does not end it.
    let created = agent
        .publish(
            "conversation:agent",
            json!({"data": "half", "extras": {"stream": "streaming"}}),
        )
        .await;
    let patient = created["serial"].as_str().expect("serial").to_owned();

    // Wait until the bridge has appended something, then kill -9.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let message = current(&http, bridge_channel, &bridge).await;
        if message["data"].as_str().is_some_and(|d| !d.is_empty()) {
            assert_eq!(message["extras"]["stream"], "streaming", "{message}");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the bridge never appended"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(agent);
    process.kill9();

    let process = start(dir.path(), &config);
    let http = process.http();
    // The bridge's response is ended at start-up, before anything else.
    let message = current(&http, bridge_channel, &bridge).await;
    assert_abandoned(&message);
    // Ours ends by the timer (its last append was over 1 s ago by now or
    // shortly); a subscriber arriving late sees it in history.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let message = current(&http, "quick:agent", &agent_serial).await;
        if message["extras"]["stream"] != "streaming" {
            assert_abandoned(&message);
            assert_eq!(message["data"], "half");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never ended: {message}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let message = current(&http, "conversation:agent", &patient).await;
    assert_eq!(message["extras"]["stream"], "streaming", "{message}");
    // And the bridge's end is in its log for subscribers resuming.
    let mut ws = process.ws().await;
    let attached = ws.attach(bridge_channel, json!({"rewind": 10})).await;
    assert_eq!(attached["type"], "attached", "{attached}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let mut seen = None;
    while seen.is_none() && tokio::time::Instant::now() < deadline {
        let Some(frame) = ws.try_recv(Duration::from_secs(1)).await else {
            break;
        };
        if frame["type"] == "message" && frame["message"]["serial"] == bridge.as_str() {
            seen = Some(frame["message"].clone());
        }
    }
    assert_abandoned(&seen.expect("the rewound response"));
    process.kill9();
}
