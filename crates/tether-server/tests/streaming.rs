//! Streamed responses over WebSocket: one message, late joiners, resume.

mod support;

use serde_json::{Value, json};
use support::{TestServer, fold, view_json};
use tether_core::View;

const CHANNEL: &str = "conversation:stream";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_joiner_sees_one_message_then_the_rest() {
    let server = TestServer::start().await;
    let mut agent = server.ws().await;
    let ack = agent
        .publish(
            CHANNEL,
            json!({"name": "response", "data": "", "extras": {"role": "assistant"}}),
        )
        .await;
    assert_eq!(ack["type"], "ack", "{ack}");
    let serial = ack["serial"].as_str().expect("serial").to_owned();

    let mut expected = String::new();
    for i in 0..250 {
        let token = format!("t{i} ");
        expected.push_str(&token);
        // Pipelined: send without waiting for each ack.
        agent
            .request(json!({"type": "append", "channel": CHANNEL, "serial": serial, "data": token}))
            .await;
    }
    for _ in 0..250 {
        assert_eq!(agent.recv_type("ack").await["type"], "ack");
    }

    let mut joiner = server.ws().await;
    let attached = joiner.attach(CHANNEL, json!({"rewind": 10})).await;
    assert_eq!(attached["continuity"], "new");
    let first = joiner.recv_type("message").await;
    assert_eq!(first["message"]["serial"], json!(serial));
    assert_eq!(
        first["message"]["data"],
        json!(expected),
        "the whole message so far, as one"
    );
    assert_ne!(first["message"]["action"], "append");

    for i in 250..500 {
        let token = format!("t{i} ");
        expected.push_str(&token);
        agent
            .request(json!({"type": "append", "channel": CHANNEL, "serial": serial, "data": token}))
            .await;
    }
    let mut view = View::new();
    assert!(fold(&mut view, &first));
    let mut fragments = 0;
    while view
        .get(serial.parse().expect("serial"))
        .and_then(|m| m.data.as_str().map(str::len))
        != Some(expected.len())
    {
        let frame = joiner.recv_type("message").await;
        assert_eq!(frame["message"]["action"], "append");
        assert!(fold(&mut view, &frame), "no duplicate fragment: {frame}");
        fragments += 1;
    }
    assert_eq!(fragments, 250);

    let history = server.http().history(CHANNEL).await;
    assert_eq!(history.len(), 1, "history shows one message, not fragments");
    assert_eq!(history[0]["data"], json!(expected));
    assert_eq!(view_json(&view), history);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_after_drops_has_no_gap_and_no_duplicate() {
    let server = TestServer::start().await;
    let mut agent = server.ws().await;
    let ack = agent.publish(CHANNEL, json!({"data": ""})).await;
    let serial = ack["serial"].as_str().expect("serial").to_owned();

    let mut subscriber = server.ws().await;
    subscriber.attach(CHANNEL, json!({"rewind": 5})).await;
    let mut view = View::new();
    let mut position: Option<String> = None;
    let mut expected = String::new();
    let mut seen_positions = std::collections::HashSet::new();

    for round in 0..10 {
        for i in 0..50 {
            let token = format!("r{round}i{i} ");
            expected.push_str(&token);
            agent
                .request(
                    json!({"type": "append", "channel": CHANNEL, "serial": serial, "data": token}),
                )
                .await;
        }
        // Read a part of what was sent, then drop the socket mid-stream.
        for _ in 0..20 {
            let frame = subscriber.recv_type("message").await;
            apply_frame(&mut view, &mut position, &mut seen_positions, &frame);
        }
        drop(subscriber);
        subscriber = server.ws().await;
        let from = position.clone().expect("a position after 20 events");
        let attached = subscriber.attach(CHANNEL, json!({"from": from})).await;
        assert_eq!(attached["continuity"], "resumed", "{attached}");
    }
    for _ in 0..500 {
        agent.recv_type("ack").await;
    }
    // Drain until the view holds the whole message.
    let target: tether_core::Serial = serial.parse().expect("serial");
    while view.get(target).and_then(|m| m.data.as_str().map(str::len)) != Some(expected.len()) {
        let frame = subscriber.recv_type("message").await;
        apply_frame(&mut view, &mut position, &mut seen_positions, &frame);
    }
    let history = server.http().history(CHANNEL).await;
    assert_eq!(view_json(&view), history);
    assert_eq!(history[0]["data"], json!(expected));
    server.stop().await;
}

/// Folds a frame, asserting it is neither a duplicate nor out of order.
fn apply_frame(
    view: &mut View,
    position: &mut Option<String>,
    seen: &mut std::collections::HashSet<String>,
    frame: &Value,
) {
    let version = frame["message"]["version"]["serial"]
        .as_str()
        .expect("version serial")
        .to_owned();
    assert!(
        seen.insert(version.clone()),
        "duplicate delivery of {version}"
    );
    if let Some(p) = position.as_deref() {
        assert!(version.as_str() > p, "out of order: {version} after {p}");
    }
    assert!(fold(view, frame), "event was not new: {frame}");
    if let Some(p) = frame["position"].as_str() {
        *position = Some(p.to_owned());
    }
}
