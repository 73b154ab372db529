//! Bad input gets a stable error code, never a panic or a write; limits are
//! enforced; idempotent publish stores one message.

mod support;

use serde_json::{Value, json};
use support::TestServer;
use tether_core::NamespaceSettings;

const CHANNEL: &str = "conversation:errors";

async fn expect_error(ws: &mut support::Ws, frame: Value, code: u32) -> Value {
    let req = ws.request(frame).await;
    let reply = ws.reply(req).await;
    assert_eq!(reply["type"], "error", "expected error {code}, got {reply}");
    assert_eq!(reply["code"], code, "{reply}");
    assert!(reply["message"].as_str().is_some_and(|m| !m.is_empty()));
    reply
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_errors_have_stable_codes_and_keep_the_connection() {
    let server = TestServer::start_with(|c| {
        c.max_channels_per_connection = 2;
        c.namespaces.insert(
            "frozen".into(),
            NamespaceSettings {
                mutable: false,
                ..NamespaceSettings::default()
            },
        );
    })
    .await;
    let mut ws = server.ws().await;
    assert_eq!(ws.connected["protocol"], 1);
    assert!(ws.connected["connection_id"].as_str().is_some());

    ws.send_raw("{not json").await;
    assert_eq!(ws.recv_type("error").await["code"], 40000);
    ws.send_raw(r#"{"type":"explode","req":99}"#).await;
    let reply = ws.reply(99).await;
    assert_eq!(reply["code"], 40001, "{reply}");

    expect_error(
        &mut ws,
        json!({"type": "attach", "channel": "bad channel"}),
        40002,
    )
    .await;
    expect_error(
        &mut ws,
        json!({"type": "attach", "channel": CHANNEL, "from": "yesterday"}),
        40003,
    )
    .await;
    expect_error(
        &mut ws,
        json!({"type": "attach", "channel": CHANNEL, "rewind": 5000}),
        40008,
    )
    .await;

    let object = ws.publish(CHANNEL, json!({"data": {"k": 1}})).await;
    let object_serial = object["serial"].as_str().expect("serial").to_owned();
    expect_error(
        &mut ws,
        json!({"type": "append", "channel": CHANNEL, "serial": object_serial, "data": "x"}),
        40004,
    )
    .await;
    let text = ws.publish(CHANNEL, json!({"data": "abc"})).await;
    let text_serial = text["serial"].as_str().expect("serial").to_owned();
    expect_error(
        &mut ws,
        json!({"type": "append", "channel": CHANNEL, "serial": text_serial, "data": 5}),
        40000,
    )
    .await;
    expect_error(
        &mut ws,
        json!({"type": "append", "channel": CHANNEL, "serial": "1764151200000-0000000000009999", "data": "x"}),
        40400,
    )
    .await;
    let frozen = ws.publish("frozen:1", json!({"data": "fixed"})).await;
    expect_error(
        &mut ws,
        json!({"type": "update", "channel": "frozen:1", "serial": frozen["serial"], "data": "changed"}),
        40005,
    )
    .await;
    expect_error(
        &mut ws,
        json!({"type": "publish", "channel": CHANNEL, "message": {"id": "bad id with spaces", "data": 1}}),
        40007,
    )
    .await;
    // A message over the 64 KiB limit, and a frame over the 128 KiB limit.
    let big = "x".repeat(70 * 1024);
    expect_error(
        &mut ws,
        json!({"type": "publish", "channel": CHANNEL, "message": {"data": big}}),
        41300,
    )
    .await;
    let huge = "x".repeat(200 * 1024);
    expect_error(
        &mut ws,
        json!({"type": "publish", "channel": CHANNEL, "message": {"data": huge}}),
        41301,
    )
    .await;
    // Appends that would grow a message past the limit are refused too.
    let chunk = "y".repeat(40 * 1024);
    let req = ws
        .request(
            json!({"type": "append", "channel": CHANNEL, "serial": text_serial, "data": chunk}),
        )
        .await;
    assert_eq!(ws.reply(req).await["type"], "ack");
    expect_error(
        &mut ws,
        json!({"type": "append", "channel": CHANNEL, "serial": text_serial, "data": chunk}),
        41300,
    )
    .await;

    ws.attach("a", json!({})).await;
    ws.attach("b", json!({})).await;
    expect_error(&mut ws, json!({"type": "attach", "channel": "c"}), 42900).await;
    // Re-attaching an attached channel is not a new channel.
    ws.attach("a", json!({})).await;

    // Still alive, and nothing bad was written.
    let req = ws.request(json!({"type": "ping"})).await;
    assert_eq!(ws.reply(req).await["type"], "pong");
    let history = server.http().history(CHANNEL).await;
    assert_eq!(history.len(), 2);
    assert_eq!(
        history[1]["data"].as_str().map(str::len),
        Some(3 + 40 * 1024)
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotent_publish_stores_one_message() {
    let server = TestServer::start().await;
    let mut ws = server.ws().await;
    let first = ws
        .publish(CHANNEL, json!({"id": "prompt-1", "data": "hi"}))
        .await;
    let again = ws
        .publish(CHANNEL, json!({"id": "prompt-1", "data": "hi"}))
        .await;
    assert_eq!(first["duplicate"], false);
    assert_eq!(again["duplicate"], true);
    assert_eq!(first["serial"], again["serial"]);
    let (status, rest) = server
        .http()
        .post(
            &format!("/channels/{CHANNEL}/messages"),
            json!({"id": "prompt-1", "data": "hi"}),
        )
        .await;
    assert_eq!(status, 201);
    assert_eq!(rest["duplicate"], true);
    assert_eq!(rest["serial"], first["serial"]);
    assert_eq!(server.http().history(CHANNEL).await.len(), 1);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_errors_have_stable_codes() {
    let server = TestServer::start().await;
    let http = server.http();
    type Case<'a> = (&'a str, reqwest::Method, String, Option<&'a str>, u16, u32);
    let cases: Vec<Case> = vec![
        (
            "unknown route",
            reqwest::Method::GET,
            "/nope".into(),
            None,
            404,
            40401,
        ),
        (
            "bad channel",
            reqwest::Method::GET,
            "/channels/a%20b/messages".into(),
            None,
            400,
            40002,
        ),
        (
            "bad serial",
            reqwest::Method::GET,
            format!("/channels/{CHANNEL}/messages/xyz"),
            None,
            400,
            40003,
        ),
        (
            "unknown message",
            reqwest::Method::GET,
            format!("/channels/{CHANNEL}/messages/1764151200000-0000000000000001"),
            None,
            404,
            40400,
        ),
        (
            "limit too big",
            reqwest::Method::GET,
            format!("/channels/{CHANNEL}/messages?limit=5000"),
            None,
            400,
            40008,
        ),
        (
            "unknown param",
            reqwest::Method::GET,
            format!("/channels/{CHANNEL}/messages?colour=red"),
            None,
            400,
            40008,
        ),
        (
            "bad json",
            reqwest::Method::POST,
            format!("/channels/{CHANNEL}/messages"),
            Some("{oops"),
            400,
            40000,
        ),
        (
            "append to unknown",
            reqwest::Method::POST,
            format!("/channels/{CHANNEL}/messages/1764151200000-0000000000000001/append"),
            Some(r#"{"data":"x"}"#),
            404,
            40400,
        ),
        (
            "spoofed client id",
            reqwest::Method::POST,
            format!("/channels/{CHANNEL}/messages"),
            Some(r#"{"data":"x","client_id":"admin"}"#),
            400,
            40000,
        ),
    ];
    for (what, method, path, body, status, code) in cases {
        let mut request = http
            .client
            .request(method, format!("{}{}", http.base, path));
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_owned());
        }
        let response = request.send().await.expect("request");
        assert_eq!(response.status().as_u16(), status, "{what}");
        let body: Value = response.json().await.expect("JSON error body");
        assert_eq!(body["error"]["code"], code, "{what}: {body}");
    }
    let (status, _) = http.get("/healthz").await;
    assert_eq!(status, 200);
    let metrics = reqwest::get(format!("{}/metrics", server.base))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(metrics.contains("tether_"), "{metrics}");
    assert_eq!(
        server.http().history(CHANNEL).await.len(),
        0,
        "nothing was written"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_from_before_retention_loses_continuity_then_sends_current_state() {
    let server = TestServer::start_with(|c| {
        c.namespaces.insert(
            "short".into(),
            NamespaceSettings {
                max_messages: 3,
                ..NamespaceSettings::default()
            },
        );
    })
    .await;
    let mut ws = server.ws().await;
    let mut serials = Vec::new();
    for i in 0..10 {
        let ack = ws
            .publish("short:1", json!({"data": format!("m{i}")}))
            .await;
        serials.push(ack["serial"].as_str().expect("serial").to_owned());
    }
    let history = server.http().history("short:1").await;
    assert_eq!(history.len(), 3, "retention keeps the newest three");

    let mut late = server.ws().await;
    let attached = late.attach("short:1", json!({"from": serials[1]})).await;
    assert_eq!(attached["continuity"], "lost");
    assert_eq!(attached["error"]["code"], 41000);
    let mut got = Vec::new();
    for _ in 0..3 {
        got.push(late.recv_type("message").await["message"]["data"].clone());
    }
    assert_eq!(got, vec![json!("m7"), json!("m8"), json!("m9")]);

    // A position that is still retained resumes exactly.
    let mut ok = server.ws().await;
    let attached = ok.attach("short:1", json!({"from": serials[8]})).await;
    assert_eq!(attached["continuity"], "resumed");
    assert_eq!(ok.recv_type("message").await["message"]["data"], "m9");
    server.stop().await;
}
