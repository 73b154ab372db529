//! The LLM bridge end to end: a real server and the fake OpenAI-compatible
//! LLM, both on 127.0.0.1:0 in this process, talked to over real sockets.

mod support;

use std::collections::HashMap;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{Http, TestServer, WAIT, Ws, fold};
use tether_core::{Capabilities, Serial, View};
use tether_fake_llm::{self as fake, FakeLlm, FakeOptions};
use tether_server::Config;
use tether_server::auth::KeyConfig;
use tokio::io::{AsyncBufReadExt, BufReader};

/// A fake LLM and a server whose bridge points at it.
struct Setup {
    server: TestServer,
    _fake: FakeLlm,
}

impl Setup {
    async fn start(tokens_per_second: f64, adjust: impl FnOnce(&mut Config)) -> Setup {
        let options = FakeOptions {
            tokens_per_second,
            ..FakeOptions::default()
        };
        Setup::with_fake(options, adjust).await
    }

    async fn with_fake(options: FakeOptions, adjust: impl FnOnce(&mut Config)) -> Setup {
        let (server, fake) = TestServer::with_fake_llm(options, adjust).await;
        Setup {
            server,
            _fake: fake,
        }
    }

    fn http(&self) -> Http {
        self.server.http()
    }
}

fn ask(prompt: &str) -> Value {
    json!({"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": prompt}]})
}

/// Starts a job; returns (job id, response serial).
async fn start(http: &Http, channel: &str, prompt: &str) -> (String, String) {
    let (status, body) = http
        .post(&format!("/channels/{channel}/llm"), ask(prompt))
        .await;
    assert_eq!(status, 202, "{body}");
    let job = body["job"].as_str().expect("job id").to_owned();
    let serial = body["serial"].as_str().expect("serial").to_owned();
    (job, serial)
}

/// Waits until `job` is no longer running (its final status is stored by
/// then) and returns its message.
async fn finished(http: &Http, channel: &str, job: &str, serial: &str) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let (status, body) = http.get("/llm/jobs").await;
        assert_eq!(status, 200, "{body}");
        let running = body["jobs"]
            .as_array()
            .expect("jobs")
            .iter()
            .any(|j| j["job"] == job);
        if !running {
            break;
        }
        assert!(Instant::now() < deadline, "job {job} still running");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    message(http, channel, serial).await
}

async fn message(http: &Http, channel: &str, serial: &str) -> Value {
    let (status, body) = http
        .get(&format!("/channels/{channel}/messages/{serial}"))
        .await;
    assert_eq!(status, 200, "{body}");
    body
}

/// Folds the channel's events (however deliveries are batched) until the
/// response's text contains `marker`; fails if it ended first.
async fn wait_for_text(ws: &mut Ws, serial: &str, marker: &str) {
    let serial: Serial = serial.parse().expect("serial");
    let mut view = View::new();
    loop {
        let frame = ws.recv_type("message").await;
        fold(&mut view, &frame);
        let Some(response) = view.get(serial) else {
            continue;
        };
        assert!(
            tether_core::fold::ended(response).is_none(),
            "the response ended before the client left"
        );
        if response.data.as_str().is_some_and(|d| d.contains(marker)) {
            return;
        }
    }
}

/// A client attaches, starts a job and watches until `marker` streamed in.
async fn watched(setup: &Setup, channel: &str, prompt: &str, marker: &str) -> (Ws, String, String) {
    let mut ws = setup.server.ws().await;
    ws.attach(channel, json!({})).await;
    let (job, serial) = start(&setup.http(), channel, prompt).await;
    wait_for_text(&mut ws, &serial, marker).await;
    (ws, job, serial)
}

#[tokio::test]
async fn two_thousand_tokens_complete_after_every_client_left() {
    let setup = Setup::start(5000.0, |_| {}).await;
    let http = setup.http();
    let channel = "chat:long";
    let prompt = "Tell me everything [[tokens:2000]]";
    let (ws, job, serial) = watched(&setup, channel, prompt, " t1000 ").await;
    drop(ws); // the only client leaves half-way

    let done = finished(&http, channel, &job, &serial).await;
    let expected = fake::answer(prompt, 2000);
    assert_eq!(done["extras"]["stream"], "complete", "{}", done["extras"]);
    assert_eq!(done["data"], expected.as_str());

    // A new client sees the whole answer as one message.
    let mut late = setup.server.ws().await;
    late.attach(channel, json!({"rewind": 10})).await;
    let mut messages = Vec::new();
    loop {
        let frame = late.recv().await;
        match frame["type"].as_str() {
            Some("message") => messages.push(frame["message"].clone()),
            Some("synced") => break,
            _ => {}
        }
    }
    assert_eq!(messages.len(), 1, "{messages:?}");
    let response = &messages[0];
    assert_eq!(response["serial"], serial.as_str());
    assert_eq!(response["name"], "response");
    assert_eq!(response["data"], expected.as_str());
    assert_eq!(response["client_id"], "llm-bridge");
    let extras = &response["extras"];
    assert_eq!(extras["stream"], "complete");
    assert_eq!(extras["role"], "assistant");
    assert_eq!(extras["job"], job.as_str());
    assert_eq!(extras["usage"]["completion_tokens"], 2001);
    assert!(extras["usage"]["prompt_tokens"].as_u64() > Some(0));
}

#[tokio::test]
async fn a_cancel_message_ends_the_response_within_100_ms() {
    let setup = Setup::start(200.0, |_| {}).await;
    let http = setup.http();
    let channel = "chat:cancel";
    let prompt = "Talk slowly [[tokens:2000]]";
    let (mut ws, job, serial) = watched(&setup, channel, prompt, " t20 ").await;

    let ack = ws
        .publish(
            channel,
            json!({"name": "cancel", "extras": {"target": serial}}),
        )
        .await;
    assert_eq!(ack["type"], "ack", "{ack}");
    let acked = Instant::now();
    let done = finished(&http, channel, &job, &serial).await;
    let stopped_after = acked.elapsed();
    assert_eq!(done["extras"]["stream"], "cancelled", "{}", done["extras"]);
    assert!(done["extras"]["usage"]["completion_tokens"].as_u64() >= Some(20));
    let text = done["data"].as_str().expect("text");
    let full = fake::answer(prompt, 2000);
    assert!(full.starts_with(text) && text.len() < full.len());

    // Server time: the cancel's commit vs the response's last version.
    let cancel_serial = ack["serial"].as_str().expect("cancel serial");
    let cancel = message(&http, channel, cancel_serial).await;
    let (_, versions) = http
        .get(&format!("/channels/{channel}/messages/{serial}/versions"))
        .await;
    let last = versions["versions"]
        .as_array()
        .and_then(|v| v.last())
        .expect("versions");
    let cancelled_at = cancel["timestamp"].as_u64().expect("ts");
    let final_at = last["version"]["timestamp"].as_u64().expect("ts");
    eprintln!(
        "cancel: final version {} ms after the cancel; job gone {stopped_after:?} after the ack",
        final_at.saturating_sub(cancelled_at)
    );
    assert!(
        final_at.saturating_sub(cancelled_at) <= 100,
        "final version {final_at} is {} ms after the cancel {cancelled_at}",
        final_at.saturating_sub(cancelled_at)
    );
    // Wall clock, loosely (CI machines are slow): the job let go promptly.
    assert!(stopped_after < Duration::from_secs(2), "{stopped_after:?}");

    // Nothing is appended afterwards.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(message(&http, channel, &serial).await["data"], text);
}

#[tokio::test]
async fn jobs_are_listed_and_cancelled_over_rest() {
    let setup = Setup::start(100.0, |_| {}).await;
    let http = setup.http();
    let (job, serial) = start(&http, "chat:rest", "[[tokens:1000]]").await;
    let (status, body) = http.get("/llm/jobs").await;
    assert_eq!(status, 200);
    let listed = &body["jobs"][0];
    assert_eq!(listed["job"], job.as_str());
    assert_eq!(listed["channel"], "chat:rest");
    assert_eq!(listed["serial"], serial.as_str());
    assert_eq!(listed["model"], "fake-1");
    assert!(listed["started_at"].as_u64() > Some(1_600_000_000_000));
    assert!(listed["tokens"].is_u64());

    let (status, body) = http
        .send(
            reqwest::Method::DELETE,
            &format!("/llm/jobs/{job}"),
            json!(null),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let done = finished(&http, "chat:rest", &job, &serial).await;
    assert_eq!(done["extras"]["stream"], "cancelled");

    let (status, body) = http
        .send(
            reqwest::Method::DELETE,
            &format!("/llm/jobs/{job}"),
            json!(null),
        )
        .await;
    assert_eq!((status, body["error"]["code"].as_u64()), (404, Some(40401)));
}

/// Runs `prompt` to its end and returns the final extras.
async fn outcome(setup: &Setup, channel: &str, prompt: &str) -> Value {
    let http = setup.http();
    let (job, serial) = start(&http, channel, prompt).await;
    finished(&http, channel, &job, &serial).await["extras"].clone()
}

#[tokio::test]
async fn upstream_failures_end_the_message_with_the_reason() {
    let setup = Setup::start(0.0, |c| c.llm.idle_timeout_secs = 1).await;
    let failed = outcome(&setup, "chat:e1", "[[fail:500]]").await;
    assert_eq!(failed["stream"], "error");
    let reason = failed["error"]["message"].as_str().expect("reason");
    assert!(
        reason.contains("HTTP 500") && reason.contains("fake failure 500"),
        "{reason}"
    );

    let malformed = outcome(&setup, "chat:e2", "[[malformed]] [[tokens:20]]").await;
    assert_eq!(malformed["stream"], "error");
    let reason = malformed["error"]["message"].as_str().expect("reason");
    assert!(reason.contains("malformed chunk"), "{reason}");
    assert!(malformed["usage"]["completion_tokens"].as_u64() > Some(0));

    let started = Instant::now();
    let stalled = outcome(&setup, "chat:e3", "[[stall]] [[tokens:20]]").await;
    assert_eq!(stalled["stream"], "error");
    let reason = stalled["error"]["message"].as_str().expect("reason");
    assert!(reason.contains("sent nothing for 1 s"), "{reason}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn an_unreachable_upstream_is_an_error_not_a_hang() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr").port()
    };
    let server = TestServer::start_with(|c| {
        c.llm.base_url = Some(format!("http://127.0.0.1:{port}/v1"));
        c.llm.model = Some("m".into());
    })
    .await;
    let http = server.http();
    let (job, serial) = start(&http, "chat:down", "hello").await;
    let done = finished(&http, "chat:down", &job, &serial).await;
    assert_eq!(done["extras"]["stream"], "error");
    let reason = done["extras"]["error"]["message"].as_str().expect("reason");
    assert!(
        reason.starts_with("cannot reach the model server"),
        "{reason}"
    );
    assert!(
        !reason.contains("127.0.0.1"),
        "the URL stays private: {reason}"
    );
}

#[tokio::test]
async fn concurrency_and_duration_are_bounded() {
    let setup = Setup::start(50.0, |c| {
        c.llm.max_concurrent_jobs = 1;
        c.llm.max_duration_secs = 1;
    })
    .await;
    let http = setup.http();
    let (job, serial) = start(&http, "chat:b", "[[tokens:1000]]").await;
    let (status, body) = http.post("/channels/chat:b/llm", ask("again")).await;
    assert_eq!((status, body["error"]["code"].as_u64()), (429, Some(42901)));

    let done = finished(&http, "chat:b", &job, &serial).await;
    assert_eq!(done["extras"]["stream"], "error");
    let reason = done["extras"]["error"]["message"].as_str().expect("reason");
    assert!(reason.contains("max duration of 1 s"), "{reason}");

    // The slot is free again.
    let (job, serial) = start(&http, "chat:b", "[[tokens:2]]").await;
    let done = finished(&http, "chat:b", &job, &serial).await;
    assert_eq!(done["extras"]["stream"], "complete");
}

#[tokio::test]
async fn usage_comes_from_upstream_or_is_counted() {
    let setup = Setup::start(0.0, |_| {}).await;
    let reported = outcome(&setup, "chat:u", "[[tokens:5]]").await;
    assert_eq!(reported["usage"]["completion_tokens"], 6);
    assert_eq!(reported["usage"]["prompt_tokens"], 3);
    assert_eq!(reported["usage"]["total_tokens"], 9);
    // A server that ignores `stream: true` still gets its answer stored.
    let whole = outcome(&setup, "chat:u", "[[no-stream]] [[tokens:5]]").await;
    assert_eq!(whole["stream"], "complete");
    assert_eq!(whole["usage"]["completion_tokens"], 6);
    let counted = outcome(&setup, "chat:u", "[[no-usage]] [[tokens:5]]").await;
    assert_eq!(
        counted["usage"],
        json!({"completion_tokens": 6, "estimated": true})
    );
}

#[tokio::test]
async fn requests_choose_model_name_and_extras_but_not_the_status() {
    // Naming a model other than llm.model needs the operator's consent.
    let setup = Setup::start(0.0, |c| c.llm.allowed_models = vec!["other-model".into()]).await;
    let http = setup.http();
    let mut body = ask("[[tokens:1]]");
    body["model"] = json!("other-model");
    body["max_tokens"] = json!(1);
    body["name"] = json!("answer");
    body["extras"] = json!({"run": "r1", "stream": "complete", "job": "mine"});
    let (status, reply) = http.post("/channels/chat:x/llm", body).await;
    assert_eq!(status, 202, "{reply}");
    let (job, serial) = (
        reply["job"].as_str().unwrap(),
        reply["serial"].as_str().unwrap(),
    );
    let done = finished(&http, "chat:x", job, serial).await;
    assert_eq!(done["name"], "answer");
    assert_eq!(done["extras"]["run"], "r1");
    assert_eq!(done["extras"]["job"], job);
    assert_eq!(done["extras"]["stream"], "complete");
    // max_tokens reached the upstream: only the echo token came back.
    assert_eq!(done["data"], fake::answer("[[tokens:1]]", 0).as_str());

    for (bad, code) in [
        (json!({"messages": []}), 40008),
        (json!({"messages": [{"role": "user", "content": 3}]}), 40008),
        (
            json!({"messages": [{"role": "user", "content": "x"}], "temperature": 9}),
            40008,
        ),
        (
            json!({"messages": [{"role": "user", "content": "x"}], "base_url": "http://evil"}),
            40000,
        ),
    ] {
        let (status, reply) = http.post("/channels/chat:x/llm", bad.clone()).await;
        assert_eq!(reply["error"]["code"], code, "{bad}: {status} {reply}");
    }

    let off = TestServer::start().await;
    let (status, reply) = off.http().post("/channels/chat:x/llm", ask("hi")).await;
    assert_eq!(
        (status, reply["error"]["code"].as_u64()),
        (404, Some(40401))
    );
}

#[tokio::test]
async fn the_api_key_is_sent_upstream_and_capabilities_apply() {
    let options = FakeOptions {
        tokens_per_second: 0.0,
        api_key: Some("sk-test-key".into()),
        ..FakeOptions::default()
    };
    let setup = Setup::with_fake(options, |c| {
        c.dev = false;
        c.cors_origins.clear();
        c.llm.api_key = Some("sk-test-key".into());
        let user: Capabilities =
            serde_json::from_value(json!({"chat:*": ["subscribe", "publish", "history"]}))
                .expect("caps");
        c.keys = HashMap::from([
            (
                "admin".to_owned(),
                KeyConfig {
                    secret: "admin-secret-0123456789".into(),
                    capabilities: Capabilities::all(),
                },
            ),
            (
                "user".to_owned(),
                KeyConfig {
                    secret: "user-secret-0123456789".into(),
                    capabilities: user,
                },
            ),
        ]);
    })
    .await;
    let client = reqwest::Client::new();
    let base = &setup.server.base;
    let as_user = |req: reqwest::RequestBuilder| {
        req.basic_auth("user", Some("user-secret-0123456789"))
            .header("x-tether-client-id", "alice")
    };
    let denied = as_user(client.post(format!("{base}/channels/other/llm")))
        .json(&ask("hi"))
        .send()
        .await
        .expect("post");
    assert_eq!(denied.status().as_u16(), 403);
    let jobs = as_user(client.get(format!("{base}/llm/jobs")))
        .send()
        .await
        .expect("get");
    assert_eq!(jobs.status().as_u16(), 403);

    let started: Value = as_user(client.post(format!("{base}/channels/chat:k/llm")))
        .json(&ask("[[tokens:3]]"))
        .send()
        .await
        .expect("post")
        .json()
        .await
        .expect("json");
    let serial = started["serial"].as_str().expect("serial");
    let deadline = Instant::now() + WAIT;
    let done = loop {
        let done: Value = as_user(client.get(format!("{base}/channels/chat:k/messages/{serial}")))
            .send()
            .await
            .expect("get")
            .json()
            .await
            .expect("json");
        if done["extras"]["stream"] != "streaming" {
            break done;
        }
        assert!(Instant::now() < deadline, "still streaming");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(done["extras"]["stream"], "complete", "{done}");
    assert_eq!(done["client_id"], "alice");
    let admin_jobs = client
        .get(format!("{base}/llm/jobs"))
        .basic_auth("admin", Some("admin-secret-0123456789"))
        .send()
        .await
        .expect("get");
    assert_eq!(admin_jobs.status().as_u16(), 200);
}

#[tokio::test]
async fn tether_fake_llm_runs_as_a_subcommand() {
    let mut child = tokio::process::Command::new(support::bin::tether_bin())
        .args(["fake-llm", "--listen", "127.0.0.1:0", "--tokens", "3"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("starts");
    let stdout = child.stdout.take().expect("stdout");
    let line = tokio::time::timeout(WAIT, BufReader::new(stdout).lines().next_line())
        .await
        .expect("prints its address")
        .expect("reads")
        .expect("a line");
    let base = line.strip_prefix("listening on ").expect("address line");
    let reply: Value = reqwest::Client::new()
        .post(format!("{base}/v1/chat/completions"))
        .json(&json!({"model": "x", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .expect("post")
        .json()
        .await
        .expect("json");
    assert_eq!(reply["object"], "chat.completion");
    assert_eq!(
        reply["choices"][0]["message"]["content"],
        "You said: hi. t1 t2 t3"
    );
    assert_eq!(reply["usage"]["completion_tokens"], 4);
    child.kill().await.expect("kill");
}
