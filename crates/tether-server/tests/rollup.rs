//! Append roll-up: fewer frames, identical result. Prints frames per second
//! per subscriber for a 150 tokens/s stream with each window.

mod support;

use std::time::{Duration, Instant};

use serde_json::json;
use support::{Sse, TestServer, Ws, fold};
use tether_core::View;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollup_windows_cut_frames_and_keep_the_message() {
    let server = TestServer::start().await;
    let channel = "conversation:rollup";
    let mut subscribers = Vec::new();
    for window in [0u64, 40, 500] {
        let mut ws = Ws::connect(&format!("{}?rollup_ms={window}", server.ws_url())).await;
        ws.attach(channel, json!({})).await;
        subscribers.push((window, ws));
    }
    let mut sse = Sse::connect(
        &server.base,
        &format!("/channels/{channel}/stream?rollup_ms=40"),
        None,
    )
    .await;

    let mut agent = server.ws().await;
    let ack = agent
        .publish(
            channel,
            json!({"data": "", "extras": {"stream": "streaming"}}),
        )
        .await;
    let serial = ack["serial"].as_str().expect("serial").to_owned();
    // 150 tokens over one second, then the final status.
    let started = Instant::now();
    let mut expected = String::new();
    for i in 0..150u32 {
        let token = format!("w{i} ");
        expected.push_str(&token);
        agent
            .request(json!({"type": "append", "channel": channel, "serial": serial, "data": token}))
            .await;
        let due = started + Duration::from_micros(u64::from(i + 1) * 6_667);
        tokio::time::sleep(due.saturating_duration_since(Instant::now())).await;
    }
    let req = agent
        .request(json!({"type": "update", "channel": channel, "serial": serial, "extras": {"stream": "complete"}}))
        .await;
    assert_eq!(agent.reply(req).await["type"], "ack");
    let history = server.http().history(channel).await;
    assert_eq!(history[0]["data"], json!(expected));

    for (window, mut ws) in subscribers {
        let mut view = View::new();
        let mut frames = 0;
        loop {
            let frame = ws.recv_type("message").await;
            frames += 1;
            fold(&mut view, &frame);
            if frame["message"]["action"] == "update" {
                break;
            }
        }
        let fragments = frames - 2; // minus the create and the final update
        println!("rollup {window:>3} ms: {fragments:>3} fragment frames/s for 150 tokens/s");
        let folded = serde_json::to_value(view.messages().next().expect("message")).expect("json");
        assert_eq!(folded, history[0], "window {window}: same final message");
        match window {
            0 => assert_eq!(fragments, 150),
            40 => assert!((15..=40).contains(&fragments), "window 40: {fragments}"),
            _ => assert!((1..=5).contains(&fragments), "window 500: {fragments}"),
        }
    }
    // SSE rolls up the same way.
    let mut data = String::new();
    let mut events = 0;
    loop {
        let event = sse.next_of("message").await;
        if event.data["action"] == "append" {
            data.push_str(event.data["data"].as_str().expect("fragment"));
            events += 1;
        }
        if event.data["action"] == "update" {
            break;
        }
    }
    assert_eq!(data, expected);
    assert!(events < 60, "SSE rolled up: {events} events");
    server.stop().await;
}
