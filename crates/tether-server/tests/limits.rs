//! Limits under hostile or broken clients: rate limits, slow consumers,
//! connection caps, malformed input.

mod support;

use std::time::Duration;

use futures::StreamExt;
use serde_json::{Value, json};
use support::{TestServer, Ws};
use tokio_tungstenite::tungstenite::Message as WsMessage;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_rate_is_limited_per_connection() {
    let server = TestServer::start_with(|c| {
        c.publish_rate_per_sec = 10;
        c.publish_burst = 5;
    })
    .await;
    let mut ws = server.ws().await;
    let mut reqs = Vec::new();
    for i in 0..30 {
        reqs.push(
            ws.request(json!({"type": "publish", "channel": "lobby", "message": {"data": i}}))
                .await,
        );
    }
    let (mut acks, mut limited) = (0, 0);
    for req in reqs {
        let reply = ws.reply(req).await;
        match reply["type"].as_str() {
            Some("ack") => acks += 1,
            _ => {
                assert_eq!(reply["code"], 42901, "{reply}");
                limited += 1;
            }
        }
    }
    assert!((5..=8).contains(&acks), "burst of 5 (+ refill), got {acks}");
    assert_eq!(acks + limited, 30);
    // Another connection has its own budget.
    let mut other = server.ws().await;
    assert_eq!(
        other.publish("lobby", json!({"data": "ok"})).await["type"],
        "ack"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_is_disconnected_and_others_keep_up() {
    let server = TestServer::start_with(|c| {
        c.outbound_queue = 64;
        c.slow_consumer_timeout_ms = 1_000;
        c.max_frame_bytes = 1 << 20;
        c.publish_rate_per_sec = 1_000_000;
        c.publish_burst = 1_000_000;
    })
    .await;
    let channel = "firehose";
    let mut slow = server.ws().await;
    slow.attach(channel, json!({})).await;
    let mut fast = server.ws().await;
    fast.attach(channel, json!({})).await;

    // 100k messages of ~200 bytes, published over REST in batches. The
    // publisher waits for the healthy subscriber between batches, so that
    // one is never too slow itself; the other never reads at all.
    let http = server.http();
    let payload = "p".repeat(200);
    let total = 100_000;
    let batch_size = 500;
    let seen = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = seen.clone();
    let reader = tokio::spawn(async move {
        while counter.load(std::sync::atomic::Ordering::SeqCst) < total {
            let frame = fast.recv_type("message").await;
            assert!(frame["message"]["data"].is_string());
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    });
    let mut slow_reader = None;
    for batch in 0..(total / batch_size) {
        let messages: Vec<Value> = (0..batch_size)
            .map(|i| json!({"data": format!("{batch}-{i}-{payload}")}))
            .collect();
        let (status, body) = http
            .post(&format!("/channels/{channel}/messages"), json!(messages))
            .await;
        assert_eq!(status, 201, "{body}");
        let published = (batch + 1) * batch_size;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while seen.load(std::sync::atomic::Ordering::SeqCst) < published {
            assert!(
                tokio::time::Instant::now() < deadline,
                "healthy subscriber stalled"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        // Once the server has given up on the slow client, read its socket:
        // what was buffered, then the error and the close frame.
        if slow_reader.is_none() && slow_disconnects(&server).await > 0 {
            let mut socket = std::mem::replace(&mut slow, server.ws().await);
            slow_reader = Some(tokio::spawn(async move {
                read_to_close(&mut socket.socket).await
            }));
        }
    }
    reader.await.expect("reader");
    assert_eq!(
        seen.load(std::sync::atomic::Ordering::SeqCst),
        total,
        "the healthy subscriber got everything"
    );
    let (error_code, close_code) = slow_reader
        .expect("the slow client was disconnected")
        .await
        .expect("slow reader");
    assert_eq!(error_code, Some(42902));
    assert_eq!(close_code, Some(4008));
    server.stop().await;
}

async fn slow_disconnects(server: &TestServer) -> u64 {
    let text = reqwest::get(format!("{}/metrics", server.base))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    text.lines()
        .find(|l| l.starts_with("tether_slow_consumer_disconnects_total"))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

/// Reads a socket to its close; returns the last error code and the close code.
async fn read_to_close(
    socket: &mut tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
) -> (Option<u64>, Option<u16>) {
    let mut error_code = None;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while let Ok(Some(Ok(frame))) = tokio::time::timeout_at(deadline, socket.next()).await {
        match frame {
            WsMessage::Text(text) => {
                let value: Value = serde_json::from_str(&text).expect("json");
                if value["type"] == "error" {
                    error_code = value["code"].as_u64();
                }
            }
            WsMessage::Close(frame) => return (error_code, frame.map(|f| u16::from(f.code))),
            _ => {}
        }
    }
    (error_code, None)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_caps_are_enforced() {
    let server = TestServer::start_with(|c| c.max_connections = 2).await;
    let _a = server.ws().await;
    let _b = server.ws().await;
    let refused = reqwest::get(format!("{}/channels/x/stream", server.base))
        .await
        .expect("request");
    assert_eq!(refused.status().as_u16(), 429);
    let body: Value = refused.json().await.expect("json");
    assert_eq!(body["error"]["code"], 42903);
    assert!(
        tokio_tungstenite::connect_async(server.ws_url())
            .await
            .is_err()
    );
    drop(_a);
    // The slot comes back once the connection is gone.
    let mut ok = false;
    for _ in 0..50 {
        if tokio_tungstenite::connect_async(server.ws_url())
            .await
            .is_ok()
        {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ok, "a freed slot is reusable");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_frames_get_errors_never_a_crash() {
    let server = TestServer::start().await;
    let mut ws = server.ws().await;
    let deep = format!("{}1{}", "[".repeat(5000), "]".repeat(5000));
    let nested_frame =
        format!(r#"{{"type":"publish","req":1,"channel":"lobby","message":{{"data":{deep}}}}}"#);
    let hostile = [
        "".to_owned(),
        "null".to_owned(),
        "[]".to_owned(),
        "42".to_owned(),
        r#"{"type":7}"#.to_owned(),
        r#"{"type":"attach"}"#.to_owned(),
        r#"{"type":"attach","channel":""}"#.to_owned(),
        r#"{"type":"attach","channel":"a","from":"9999999999999-9999999999999999"}"#.to_owned(),
        r#"{"type":"append","channel":"a","serial":"0000000000000-0000000000000000","data":"x"}"#
            .to_owned(),
        r#"{"type":"publish","channel":"a","message":{"extras":[1,2]}}"#.to_owned(),
        r#"{"type":"publish","channel":"a","message":{"id":""}}"#.to_owned(),
        "\u{0}\u{1}\u{2}".to_owned(),
        nested_frame,
    ];
    for text in &hostile {
        ws.send_raw(text).await;
    }
    // Invalid UTF-8 cannot be sent as text; send it as binary.
    use futures::SinkExt;
    ws.socket
        .send(WsMessage::Binary(vec![0xff, 0xfe, 0x00].into()))
        .await
        .expect("send");
    let mut errors = 0;
    while errors < hostile.len() {
        let frame = ws.recv().await;
        if frame["type"] == "error" {
            assert!(
                frame["code"]
                    .as_u64()
                    .is_some_and(|c| (40000..50000).contains(&c)),
                "{frame}"
            );
            errors += 1;
        }
    }
    let req = ws.request(json!({"type": "ping"})).await;
    assert_eq!(ws.reply(req).await["type"], "pong", "connection survived");
    assert!(
        server.http().history("a").await.is_empty(),
        "nothing written"
    );
    assert!(
        server.http().history("lobby").await.is_empty(),
        "nothing written"
    );
    let fresh = Ws::connect(&server.ws_url()).await;
    assert!(
        fresh.connected["connection_id"].is_string(),
        "server still serving"
    );
    server.stop().await;
}
