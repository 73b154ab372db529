//! The `tether` client subcommands, run as the real binary against a
//! server started in this process.

mod sdk_support;

use std::collections::HashSet;
use std::process::Stdio;
use std::time::Duration;

use sdk_support::{Harness, WAIT};
use serde_json::{Value, json};
use tether_client::{Message, NewMessage, Serial, View};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

fn tether(args: &[&str]) -> Command {
    let mut command = Command::new(sdk_support::tether_bin());
    command
        .args(args)
        .env_remove("TETHER_URL")
        .env_remove("TETHER_TOKEN")
        .env_remove("TETHER_KEY")
        .env_remove("TETHER_CLIENT_ID")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

/// Runs to completion; returns (exit code, stdout lines, stderr).
async fn run(args: &[&str]) -> (i32, Vec<String>, String) {
    let output = tokio::time::timeout(WAIT, tether(args).output())
        .await
        .expect("finishes in time")
        .expect("runs");
    let stdout = String::from_utf8(output.stdout).expect("utf-8");
    let stderr = String::from_utf8(output.stderr).expect("utf-8");
    (
        output.status.code().unwrap_or(-1),
        stdout.lines().map(str::to_owned).collect(),
        stderr,
    )
}

fn parse<T: serde::de::DeserializeOwned>(line: &str) -> T {
    serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"))
}

/// A running `tether subscribe`, read line by line.
struct Subscriber {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
}

impl Subscriber {
    fn spawn(args: &[&str]) -> Subscriber {
        let mut child = tether(args).spawn().expect("starts");
        let stdout = child.stdout.take().expect("stdout");
        Subscriber {
            child,
            lines: BufReader::new(stdout).lines(),
        }
    }

    async fn next_message(&mut self) -> Message {
        parse(&self.next_line().await)
    }

    async fn next_line(&mut self) -> String {
        tokio::time::timeout(WAIT, self.lines.next_line())
            .await
            .expect("a line in time")
            .expect("readable")
            .expect("still running")
    }
}

async fn publish(harness: &Harness, channel: &str, data: &str) -> Serial {
    harness
        .rest()
        .publish(
            channel,
            &NewMessage {
                data: Value::String(data.to_owned()),
                ..NewMessage::default()
            },
        )
        .await
        .expect("published")
        .serial
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_and_subscribe_round_trip() {
    let harness = Harness::start().await;
    let url = harness.url();
    let channel = "conversation:cli";
    // Subscribing from a known position makes the test independent of when
    // the subscriber is ready: everything after it is delivered.
    let marker = publish(&harness, channel, "marker").await.to_string();
    let mut subscriber =
        Subscriber::spawn(&["subscribe", channel, "--from", &marker, "--url", &url]);

    let mut streamer = tether(&["stream", channel, "--name", "answer", "--url", &url])
        .stdin(Stdio::piped())
        .spawn()
        .expect("starts");
    let mut stdin = streamer.stdin.take().expect("stdin");
    let input = ["alpha\n", "beta\n", "gamma é\n"];
    for part in input {
        stdin.write_all(part.as_bytes()).await.expect("write");
        stdin.flush().await.expect("flush");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(stdin);
    let output = tokio::time::timeout(WAIT, streamer.wait_with_output())
        .await
        .expect("stream ends")
        .expect("runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let ack: Value = parse(String::from_utf8_lossy(&output.stdout).trim());
    let serial: Serial = ack["serial"]
        .as_str()
        .expect("serial")
        .parse()
        .expect("valid");

    let mut view = View::new();
    let mut versions = HashSet::new();
    loop {
        let event = subscriber.next_message().await;
        assert_eq!(event.serial, serial, "only the streamed message follows");
        assert!(versions.insert(event.version.serial), "no repeat");
        assert!(view.apply(&event));
        let status = event.extras.as_ref().and_then(|e| e.get("stream"));
        if status == Some(&json!("complete")) {
            break;
        }
    }
    let stored = harness
        .rest()
        .message(channel, serial)
        .await
        .expect("stored");
    assert_eq!(
        stored.data,
        json!(input.concat()),
        "one message, whole input"
    );
    assert_eq!(stored.name.as_deref(), Some("answer"));
    assert_eq!(
        view.get(serial),
        Some(&stored),
        "subscriber folds to history"
    );
    subscriber.child.kill().await.expect("stopped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribe_resumes_after_a_server_restart() {
    let mut harness = Harness::start().await;
    let url = harness.url();
    let channel = "chat:resume";
    let marker = publish(&harness, channel, "marker").await.to_string();
    let mut subscriber =
        Subscriber::spawn(&["subscribe", channel, "--from", &marker, "--url", &url]);
    let before = publish(&harness, channel, "before").await;
    assert_eq!(subscriber.next_message().await.serial, before);

    harness.restart().await;
    let mut after = Vec::new();
    for i in 0..3 {
        after.push(publish(&harness, channel, &format!("after {i}")).await);
    }
    for serial in after {
        let event = subscriber.next_message().await;
        assert_eq!(event.serial, serial, "in order, no gap, no repeat");
    }
    subscriber.child.kill().await.expect("stopped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_and_publish_print_json_lines() {
    let harness = Harness::start().await;
    let url = harness.url();
    let channel = "chat:history";
    let (code, lines, stderr) = run(&[
        "publish", channel, "hello", "--name", "prompt", "--url", &url,
    ])
    .await;
    assert_eq!(code, 0, "{stderr}");
    let ack: Value = parse(&lines[0]);
    assert_eq!(ack["duplicate"], json!(false));
    let (code, _, stderr) = run(&[
        "publish",
        channel,
        r#"{"n":1}"#,
        "--json",
        "--extras",
        r#"{"k":"v"}"#,
        "--url",
        &url,
    ])
    .await;
    assert_eq!(code, 0, "{stderr}");
    publish(&harness, channel, "third").await;

    let (code, lines, stderr) = run(&[
        "history",
        channel,
        "--forwards",
        "--limit",
        "2",
        "--url",
        &url,
    ])
    .await;
    assert_eq!(code, 0, "{stderr}");
    let messages: Vec<Message> = lines.iter().map(|l| parse(l)).collect();
    assert_eq!(messages.len(), 2);
    assert_eq!(messages[0].data, json!("hello"));
    assert_eq!(messages[0].name.as_deref(), Some("prompt"));
    assert_eq!(
        messages[0].serial.to_string(),
        ack["serial"].as_str().expect("serial")
    );
    assert_eq!(messages[1].data, json!({"n": 1}));
    assert_eq!(
        messages[1].extras.as_ref().and_then(|e| e.get("k")),
        Some(&json!("v"))
    );

    let (code, lines, _) = run(&["history", channel, "--url", &url]).await;
    assert_eq!(code, 0);
    let data: Vec<Value> = lines.iter().map(|l| parse::<Message>(l).data).collect();
    assert_eq!(
        data,
        vec![json!("third"), json!({"n": 1}), json!("hello")],
        "newest first"
    );
}

/// Asserts a failure printed as one line, `tether: ...`, exit code 1.
fn assert_one_line_failure(code: i32, stderr: &str, needle: &str) {
    assert_eq!(code, 1, "{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line: {stderr}");
    assert!(lines[0].starts_with("tether: "), "{stderr}");
    assert!(lines[0].contains(needle), "{needle:?} not in {stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_are_one_line_with_exit_code_1() {
    let harness = Harness::start().await;
    let url = harness.url();
    let refused = "http://127.0.0.1:1";
    for args in [
        vec!["history", "chat:x", "--url", refused],
        vec!["publish", "chat:x", "hi", "--url", refused],
        vec!["subscribe", "chat:x", "--url", refused],
        vec!["stream", "chat:x", "--url", refused],
    ] {
        let (code, _, stderr) = run(&args).await;
        assert_one_line_failure(code, &stderr, "cannot connect");
    }
    let (code, _, stderr) = run(&["history", "chat:x", "--url", "not a url"]).await;
    assert_one_line_failure(code, &stderr, "invalid URL");
    let (code, _, stderr) = run(&["subscribe", "chat:x", "--url", "ftp://host"]).await;
    assert_one_line_failure(code, &stderr, "invalid URL");
    // A server refusal shows its code and message.
    let (code, _, stderr) = run(&[
        "publish",
        "chat:x",
        "hi",
        "--id",
        "has spaces",
        "--url",
        &url,
    ])
    .await;
    assert_one_line_failure(code, &stderr, "error 40007");
    let (code, _, stderr) = run(&["history", "chat:x", "--limit", "5000", "--url", &url]).await;
    assert_eq!(code, 0, "pages are capped by the CLI: {stderr}");
    let (code, _, stderr) = run(&["history", "bad name", "--url", &url]).await;
    assert_one_line_failure(code, &stderr, "invalid channel name");
}

/// `tether token` mints offline a token the server accepts, with exactly the
/// capabilities asked for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_mints_a_usable_narrow_token() {
    let secret = "cli-secret-0123456789";
    let output = std::process::Command::new(sdk_support::tether_bin())
        .args([
            "token",
            "--key",
            &format!("cli:{secret}"),
            "--client-id",
            "u1",
            "--capability",
            "conversation:u1=history",
            "--ttl",
            "60",
        ])
        .output()
        .expect("run tether token");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let token = String::from_utf8(output.stdout)
        .expect("utf8")
        .trim()
        .to_owned();
    assert_eq!(token.split('.').count(), 3, "a JWT");

    let dir = tempfile::tempdir().expect("dir");
    let mut config = tether_server::Config {
        listen: "127.0.0.1:0".parse().expect("addr"),
        data_dir: dir.path().join("data"),
        ..tether_server::Config::default()
    };
    config.keys.insert(
        "cli".into(),
        tether_server::auth::KeyConfig {
            secret: secret.into(),
            capabilities: tether_core::Capabilities::all(),
        },
    );
    let server = tether_server::Server::start(config).await.expect("server");
    let client = reqwest::Client::new();
    let get = |channel: &str| {
        client
            .get(format!("{}/channels/{channel}/messages", server.url()))
            .bearer_auth(&token)
            .send()
    };
    assert_eq!(
        get("conversation:u1").await.expect("get").status().as_u16(),
        200
    );
    assert_eq!(
        get("conversation:u2").await.expect("get").status().as_u16(),
        403
    );
    let bad = std::process::Command::new(sdk_support::tether_bin())
        .args(["token", "--key", "nocolon"])
        .output()
        .expect("run");
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).starts_with("tether: "));
    server.shutdown().await;
}

const KEY: &str = "cli-key:cli-key-secret-0123456789";

/// A server that requires credentials and knows [`KEY`].
fn with_key(config: &mut tether_server::Config) {
    config.dev = false;
    config.keys.insert(
        "cli-key".into(),
        tether_server::auth::KeyConfig {
            secret: "cli-key-secret-0123456789".into(),
            capabilities: tether_core::Capabilities::all(),
        },
    );
}

/// Every client subcommand takes an API key (and the client to act as).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_subcommands_accept_an_api_key() {
    let harness = Harness::start_with(with_key).await;
    let url = harness.url();
    let channel = "agents:cli";
    let (code, _, stderr) = run(&["publish", channel, "hi", "--url", &url]).await;
    assert_one_line_failure(code, &stderr, "error 40100");
    let key = ["--url", &url, "--key", KEY, "--client-id", "cli-bot"];
    let (code, lines, stderr) = run(&[&["publish", channel, "first"], &key[..]].concat()).await;
    assert_eq!(code, 0, "{stderr}");
    let ack: Value = parse(&lines[0]);
    let marker = ack["serial"].as_str().expect("serial").to_owned();
    let mut subscriber =
        Subscriber::spawn(&[&["subscribe", channel, "--from", &marker], &key[..]].concat());
    let mut streamer = tether(&[&["stream", channel], &key[..]].concat())
        .stdin(Stdio::piped())
        .spawn()
        .expect("starts");
    let mut stdin = streamer.stdin.take().expect("stdin");
    stdin
        .write_all(b"streamed with a key")
        .await
        .expect("write");
    drop(stdin);
    let output = tokio::time::timeout(WAIT, streamer.wait_with_output())
        .await
        .expect("stream ends")
        .expect("runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let streamed = subscriber.next_message().await;
    assert_eq!(streamed.client_id.as_deref(), Some("cli-bot"));
    let (code, lines, stderr) =
        run(&[&["history", channel, "--forwards"], &key[..]].concat()).await;
    assert_eq!(code, 0, "{stderr}");
    let messages: Vec<Message> = lines.iter().map(|l| parse(l)).collect();
    assert_eq!(messages.len(), 2);
    assert_eq!(messages[0].data, json!("first"));
    assert_eq!(messages[0].client_id.as_deref(), Some("cli-bot"));
    assert_eq!(messages[1].data, json!("streamed with a key"));
    subscriber.child.kill().await.expect("stopped");
}

/// `tether presence enter|members|subscribe`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_enter_members_and_subscribe() {
    let harness = Harness::start_with(with_key).await;
    let url = harness.url();
    let channel = "room:cli";
    let key = ["--url", &url, "--key", KEY];
    let mut present = Subscriber::spawn(
        &[
            &[
                "presence",
                "enter",
                channel,
                "--data",
                r#"{"role":"agent"}"#,
                "--client-id",
                "agent-1",
            ],
            &key[..],
        ]
        .concat(),
    );
    let entered: Value = parse(&present.next_line().await);
    assert_eq!(entered, json!({"entered": channel}));

    let (code, lines, stderr) = run(&[&["presence", "members", channel], &key[..]].concat()).await;
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(lines.len(), 1, "{lines:?}");
    let member: Value = parse(&lines[0]);
    assert_eq!(member["client_id"], "agent-1");
    assert_eq!(member["data"], json!({"role": "agent"}));

    let mut watcher = Subscriber::spawn(&[&["presence", "subscribe", channel], &key[..]].concat());
    let first: Value = parse(&watcher.next_line().await);
    assert_eq!(first["action"], "enter");
    assert_eq!(first["from_sync"], true);
    assert_eq!(first["member"]["client_id"], "agent-1");

    // Ctrl-C leaves at once (a clean close), and the watcher sees it.
    let pid = present.child.id().expect("running").to_string();
    let status = std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .expect("kill");
    assert!(status.success());
    let left: Value = parse(&watcher.next_line().await);
    assert_eq!(left["action"], "leave");
    assert_eq!(left["member"]["client_id"], "agent-1");
    assert_eq!(left["from_sync"], false);
    let exit = tokio::time::timeout(WAIT, present.child.wait())
        .await
        .expect("exits")
        .expect("status");
    assert!(exit.success(), "{exit:?}");
    let (code, lines, _) = run(&[&["presence", "members", channel], &key[..]].concat()).await;
    assert_eq!(code, 0);
    assert!(lines.is_empty(), "{lines:?}");
    watcher.child.kill().await.expect("stopped");
}
