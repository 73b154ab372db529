//! Subscribing over Server-Sent Events, resuming with `Last-Event-ID`.

mod support;

use serde_json::json;
use support::{Sse, TestServer, view_json};
use tether_core::{Message, View};

const CHANNEL: &str = "conversation:sse";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_resumes_from_last_event_id_without_gap_or_duplicate() {
    let server = TestServer::start().await;
    let http = server.http();
    let (status, ack) = http
        .post(
            &format!("/channels/{CHANNEL}/messages"),
            json!({"data": ""}),
        )
        .await;
    assert_eq!(status, 201, "{ack}");
    let serial = ack["serial"].as_str().expect("serial").to_owned();

    let mut sse = Sse::connect(
        &server.base,
        &format!("/channels/{CHANNEL}/stream?rewind=5&rollup_ms=0"),
        None,
    )
    .await;
    let attached = sse.next_of("attached").await;
    assert_eq!(attached.data["continuity"], "new");

    let mut agent = server.ws().await;
    let mut view = View::new();
    let mut last_id: Option<String> = None;
    let mut versions = std::collections::HashSet::new();
    let mut expected = String::new();
    for round in 0..6 {
        for i in 0..40 {
            let token = format!("{round}.{i} ");
            expected.push_str(&token);
            agent
                .request(
                    json!({"type": "append", "channel": CHANNEL, "serial": serial, "data": token}),
                )
                .await;
        }
        for _ in 0..15 {
            let event = sse.next_of("message").await;
            let message: Message = serde_json::from_value(event.data).expect("message");
            assert!(
                versions.insert(message.version.serial),
                "duplicate {}",
                message.version.serial
            );
            assert!(view.apply(&message), "not new: {message:?}");
            if event.id.is_some() {
                last_id = event.id;
            }
        }
        drop(sse);
        sse = Sse::connect(
            &server.base,
            &format!("/channels/{CHANNEL}/stream?rollup_ms=0"),
            last_id.as_deref(),
        )
        .await;
        let attached = sse.next_of("attached").await;
        assert_eq!(
            attached.data["continuity"], "resumed",
            "{:?}",
            attached.data
        );
    }
    let target = serial.parse().expect("serial");
    while view.get(target).and_then(|m| m.data.as_str().map(str::len)) != Some(expected.len()) {
        let event = sse.next_of("message").await;
        let message: Message = serde_json::from_value(event.data).expect("message");
        assert!(
            versions.insert(message.version.serial),
            "duplicate {}",
            message.version.serial
        );
        assert!(view.apply(&message));
    }
    assert_eq!(view_json(&view), http.history(CHANNEL).await);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_from_query_and_lost_continuity() {
    let server = TestServer::start().await;
    let http = server.http();
    let mut serials = Vec::new();
    for i in 0..3 {
        let (_, ack) = http
            .post(
                &format!("/channels/{CHANNEL}/messages"),
                json!({"data": format!("m{i}")}),
            )
            .await;
        serials.push(ack["serial"].as_str().expect("serial").to_owned());
    }
    // ?from= resumes after the first message.
    let mut sse = Sse::connect(
        &server.base,
        &format!("/channels/{CHANNEL}/stream?from={}", serials[0]),
        None,
    )
    .await;
    assert_eq!(sse.next_of("attached").await.data["continuity"], "resumed");
    let a = sse.next_of("message").await;
    let b = sse.next_of("message").await;
    assert_eq!(a.data["data"], "m1");
    assert_eq!(b.data["data"], "m2");
    assert_eq!(b.id.as_deref(), Some(serials[2].as_str()));

    // A position from another epoch: continuity lost, then current state.
    let stale = "0000000000001-0000000000000002";
    let mut sse = Sse::connect(
        &server.base,
        &format!("/channels/{CHANNEL}/stream"),
        Some(stale),
    )
    .await;
    let attached = sse.next_of("attached").await;
    assert_eq!(attached.data["continuity"], "lost");
    assert_eq!(attached.data["error"]["code"], 41000);
    let first = sse.next_of("message").await;
    assert_eq!(first.data["data"], "m0");
    server.stop().await;
}
