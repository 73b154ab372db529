//! Hardening of the WebSocket door (issue 12), end to end over real
//! sockets: presence limits, unauthenticated sockets, capabilities that
//! change, oversized and malformed frames, upgrade errors, and resume.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use futures::StreamExt;
use serde_json::{Value, json};
use support::{TestServer, Ws, basic};
use tether_core::Capabilities;
use tether_server::Config;
use tether_server::auth::KeyConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message as WsMessage;

const ADMIN: &str = "admin:admin-secret-0123456789";
const APP: &str = "app:app-secret-0123456789";

/// Every presence-related capability an app token may be given.
fn app_caps() -> Value {
    json!({"conversation:*": ["subscribe", "publish", "history", "presence", "presence-subscribe"]})
}

/// A server with authentication on: `admin` (everything) and `app`.
async fn secured(adjust: impl FnOnce(&mut Config)) -> TestServer {
    TestServer::start_with(|c| {
        c.dev = false;
        c.cors_origins.clear();
        let caps: Capabilities = serde_json::from_value(app_caps()).expect("caps");
        c.keys = HashMap::from([
            (
                "admin".to_owned(),
                KeyConfig {
                    secret: "admin-secret-0123456789".into(),
                    capabilities: Capabilities::all(),
                },
            ),
            (
                "app".to_owned(),
                KeyConfig {
                    secret: "app-secret-0123456789".into(),
                    capabilities: caps,
                },
            ),
        ]);
        adjust(c);
    })
    .await
}

/// Mints an `app` token for `client_id` with `caps`.
async fn mint(server: &TestServer, client_id: &str, caps: Value, ttl: u64) -> String {
    let response = reqwest::Client::new()
        .post(format!("{}/keys/app/tokens", server.base))
        .header("authorization", basic(APP))
        .json(&json!({"client_id": client_id, "capabilities": caps, "ttl_secs": ttl}))
        .send()
        .await
        .expect("mint");
    assert_eq!(response.status().as_u16(), 201);
    let body: Value = response.json().await.expect("json");
    body["token"].as_str().expect("token").to_owned()
}

/// The presence members of `channel`, read with the admin key (or none,
/// on a `--dev` server).
async fn members(server: &TestServer, channel: &str) -> Vec<Value> {
    let url = format!("{}/channels/{channel}/presence", server.base);
    let client = reqwest::Client::new();
    let mut response = client.get(&url).send().await.expect("presence");
    if response.status().as_u16() == 401 {
        response = client
            .get(&url)
            .header("authorization", basic(ADMIN))
            .send()
            .await
            .expect("presence");
    }
    assert_eq!(response.status().as_u16(), 200);
    let body: Value = response.json().await.expect("json");
    body["members"].as_array().cloned().unwrap_or_default()
}

/// Polls until `channel` has `n` members (or fails after a few seconds).
async fn wait_members(server: &TestServer, channel: &str, n: usize) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    loop {
        let now = members(server, channel).await;
        if now.len() == n {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{channel} should have {n} members, has {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Sends a frame and returns the server's reply to it.
async fn ask(ws: &mut Ws, frame: Value) -> Value {
    let req = ws.request(frame).await;
    ws.reply(req).await
}

async fn presence(ws: &mut Ws, channel: &str, action: &str, data: Value) -> Value {
    ask(
        ws,
        json!({"type": "presence", "channel": channel, "action": action, "data": data}),
    )
    .await
}

async fn attach(ws: &mut Ws, channel: &str) -> Value {
    ask(ws, json!({"type": "attach", "channel": channel})).await
}

/// Reads until the server closes; returns the error frames seen and the
/// close code.
async fn until_closed(ws: &mut Ws, wait: Duration) -> (Vec<Value>, Option<u16>) {
    let mut errors = Vec::new();
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let next = tokio::time::timeout_at(deadline, ws.socket.next())
            .await
            .expect("the server closes the connection in time");
        match next {
            Some(Ok(WsMessage::Text(text))) => {
                let frame: Value = serde_json::from_str(&text).expect("JSON");
                if frame["type"] == "error" {
                    errors.push(frame);
                }
            }
            Some(Ok(WsMessage::Close(frame))) => {
                return (errors, frame.map(|f| u16::from(f.code)));
            }
            Some(Ok(_)) => {}
            Some(Err(_)) | None => return (errors, None),
        }
    }
}

/// Whether the connection still answers a ping.
async fn alive(ws: &mut Ws) -> bool {
    let req = ws.request(json!({"type": "ping"})).await;
    matches!(ws.try_recv(Duration::from_secs(3)).await, Some(f) if f["req"] == json!(req) && f["type"] == "pong")
}

// ---- 1. presence limits ----------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_counts_against_the_channels_per_connection() {
    let server = TestServer::start_with(|c| c.max_channels_per_connection = 3).await;
    let mut ws = server.ws().await;
    assert_eq!(attach(&mut ws, "room:a").await["type"], "attached");
    for channel in ["room:a", "room:b", "room:c"] {
        let reply = presence(&mut ws, channel, "enter", json!({"n": 1})).await;
        assert_eq!(reply["type"], "ok", "{channel}: {reply}");
    }
    // attached ∪ present = {a, b, c}: a fourth channel is refused either way.
    let reply = presence(&mut ws, "room:d", "enter", json!({})).await;
    assert_eq!(reply["code"], 42900, "{reply}");
    let reply = attach(&mut ws, "room:d").await;
    assert_eq!(reply["code"], 42900, "{reply}");
    // A channel present and attached counts once.
    assert_eq!(attach(&mut ws, "room:b").await["type"], "attached");
    // Updating where present is no new channel.
    let reply = presence(&mut ws, "room:c", "update", json!({"n": 2})).await;
    assert_eq!(reply["type"], "ok", "{reply}");
    // Leaving frees the channel.
    assert_eq!(
        presence(&mut ws, "room:c", "leave", json!(null)).await["type"],
        "ok"
    );
    assert_eq!(attach(&mut ws, "room:d").await["type"], "attached");
    let reply = presence(&mut ws, "room:e", "enter", json!({})).await;
    assert_eq!(reply["code"], 42900, "{reply}");
    assert_eq!(members(&server, "room:e").await.len(), 0);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_data_has_its_own_size_limit() {
    let server = TestServer::start_with(|c| c.max_presence_data_bytes = 1024).await;
    let mut ws = server.ws().await;
    let big = "x".repeat(2000);
    let reply = presence(&mut ws, "room:big", "enter", json!({"blob": big})).await;
    assert_eq!(reply["code"], 41302, "{reply}");
    assert!(members(&server, "room:big").await.is_empty());
    let small = "y".repeat(500);
    let reply = presence(&mut ws, "room:big", "enter", json!({"blob": small})).await;
    assert_eq!(reply["type"], "ok", "{reply}");
    let reply = presence(&mut ws, "room:big", "update", json!({"blob": big})).await;
    assert_eq!(reply["code"], 41302, "{reply}");
    let now = members(&server, "room:big").await;
    assert_eq!(now.len(), 1);
    assert_eq!(
        now[0]["data"]["blob"],
        json!(small),
        "the refused update changed nothing"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_changes_are_rate_limited_per_connection() {
    let server = TestServer::start_with(|c| {
        c.presence_rate_per_sec = 1;
        c.presence_burst = 5;
    })
    .await;
    let mut ws = server.ws().await;
    let mut reqs = Vec::new();
    for n in 0..8 {
        let frame =
            json!({"type": "presence", "channel": "room:r", "action": "update", "data": {"n": n}});
        reqs.push(ws.request(frame).await);
    }
    let mut limited = 0;
    for req in reqs {
        let reply = ws.reply(req).await;
        match reply["type"].as_str() {
            Some("ok") => {}
            _ => {
                assert_eq!(reply["code"], 42905, "{reply}");
                limited += 1;
            }
        }
    }
    assert!(
        (1..=3).contains(&limited),
        "bursts of 5 at 1/s: {limited} refused"
    );
    assert!(alive(&mut ws).await, "the connection stays open");
    // Another connection has its own budget.
    let mut other = server.ws().await;
    let reply = presence(&mut other, "room:r", "enter", json!({})).await;
    assert_eq!(reply["type"], "ok", "{reply}");
    server.stop().await;
}

// ---- 2. unauthenticated sockets -------------------------------------------

type RawSocket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens a WebSocket; `Err((status, body))` when the upgrade is refused.
async fn try_connect(url: &str) -> Result<RawSocket, (u16, Value)> {
    use tokio_tungstenite::tungstenite::Error;
    match tokio_tungstenite::connect_async(url).await {
        Ok((socket, _)) => Ok(socket),
        Err(Error::Http(response)) => {
            let body = response
                .body()
                .as_ref()
                .and_then(|b| serde_json::from_slice(b).ok())
                .unwrap_or(Value::Null);
            Err((response.status().as_u16(), body))
        }
        Err(other) => panic!("unexpected connect error: {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthenticated_sockets_have_their_own_pool() {
    let server = secured(|c| {
        c.max_connections_per_key = 2;
        c.max_unauthenticated_connections = 3;
    })
    .await;
    let url = server.ws_url();
    let mut waiting = Vec::new();
    for _ in 0..3 {
        let ws = Ws::connect(&url).await;
        assert_eq!(ws.connected["authenticated"], false);
        waiting.push(ws);
    }
    let refused = try_connect(&url).await.expect_err("the pool is full");
    assert_eq!(refused.0, 429);
    assert_eq!(refused.1["error"]["code"], 42903, "{:?}", refused.1);
    // Keys are unaffected by sockets still waiting to authenticate.
    let keyed = try_connect(&format!("{url}?key={APP}")).await;
    assert!(keyed.is_ok(), "a key connects while the pool is full");
    // Authenticating moves a socket out of the pool.
    let reply = ask(&mut waiting[0], json!({"type": "auth", "key": ADMIN})).await;
    assert_eq!(reply["type"], "authorized", "{reply}");
    let again = try_connect(&url).await;
    assert!(again.is_ok(), "a slot of the pool was freed");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_frame_is_charged_to_the_keys_cap() {
    let server = secured(|c| c.max_connections_per_key = 2).await;
    let url = server.ws_url();
    let _one = Ws::connect(&format!("{url}?key={APP}")).await;
    let _two = Ws::connect(&format!("{url}?key={APP}")).await;
    let refused = try_connect(&format!("{url}?key={APP}")).await.err();
    assert_eq!(refused.map(|r| r.0), Some(429), "the key is full");
    // Without a credential at the upgrade, then `auth`: still refused.
    let mut late = Ws::connect(&url).await;
    let req = late.request(json!({"type": "auth", "key": APP})).await;
    let (errors, code) = until_closed(&mut late, Duration::from_secs(5)).await;
    assert!(
        errors.iter().any(|e| e["code"] == 42903),
        "refused with 42903: {errors:?} (req {req})"
    );
    assert!(code.is_some(), "closed with a close code");
    // Another key is not affected.
    let mut admin = Ws::connect(&url).await;
    let reply = ask(&mut admin, json!({"type": "auth", "key": ADMIN})).await;
    assert_eq!(reply["type"], "authorized", "{reply}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthenticated_sockets_must_authenticate_in_time() {
    let server = secured(|c| c.auth_timeout_ms = 1_000).await;
    let url = server.ws_url();
    let mut silent = Ws::connect(&url).await;
    let mut prompt = Ws::connect(&url).await;
    let reply = ask(&mut prompt, json!({"type": "auth", "key": APP})).await;
    assert_eq!(reply["type"], "authorized", "{reply}");
    // The silent socket keeps answering pings automatically; still closed.
    let (errors, code) = until_closed(&mut silent, Duration::from_secs(5)).await;
    assert_eq!(code, Some(4006), "close code 4006");
    assert!(errors.iter().any(|e| e["code"] == 40801), "{errors:?}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        alive(&mut prompt).await,
        "an authenticated socket has no deadline"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_authenticated_by_frame_can_be_resumed_while_live() {
    let server = secured(|_| {}).await;
    let url = server.ws_url();
    let mut old = Ws::connect(&url).await;
    let id = old.connected["connection_id"].clone();
    let key = old.connected["resume_key"].clone();
    let auth = json!({"type": "auth", "key": APP, "client_id": "hana"});
    let reply = ask(&mut old, auth.clone()).await;
    assert_eq!(reply["type"], "authorized", "{reply}");
    // A second socket takes it over (a half-dead socket on a flaky network).
    let mut new = Ws::connect(&url).await;
    let reply = ask(&mut new, auth).await;
    assert_eq!(reply["type"], "authorized", "{reply}");
    let reply = ask(
        &mut new,
        json!({"type": "resume", "connection_id": id, "resume_key": key}),
    )
    .await;
    assert_eq!(reply["type"], "resumed", "{reply}");
    let (_, code) = until_closed(&mut old, Duration::from_secs(5)).await;
    assert_eq!(code, Some(4010));
    server.stop().await;
}

#[test]
fn a_key_named_dash_is_refused() {
    let mut config = Config::default();
    config.keys.insert(
        "-".into(),
        KeyConfig {
            secret: "dash-secret-0123456789".into(),
            capabilities: Capabilities::all(),
        },
    );
    let err = config.validate().expect_err("a key named - is refused");
    let message = err.to_string();
    assert!(message.contains("key \"-\""), "{message}");
    assert!(
        message.contains("reserved for connections that have not authenticated yet"),
        "{message}"
    );
}

// ---- 3. capabilities that change ------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aisdk_stream_ends_when_its_token_expires() {
    let server = secured(|_| {}).await;
    let (status, _) = {
        let response = reqwest::Client::new()
            .post(format!("{}/channels/conversation:ai/messages", server.base))
            .header("authorization", basic(ADMIN))
            .json(&json!({"name": "response", "data": "Hel", "extras": {"stream": "streaming"}}))
            .send()
            .await
            .expect("publish");
        (response.status().as_u16(), ())
    };
    assert_eq!(status, 201);
    let token = mint(&server, "erin", app_caps(), 2).await;
    let mut response = reqwest::Client::new()
        .get(format!(
            "{}/channels/conversation:ai/aisdk/stream",
            server.base
        ))
        .bearer_auth(&token)
        .send()
        .await
        .expect("stream");
    assert_eq!(response.status().as_u16(), 200);
    let mut body = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(6);
    loop {
        let chunk = tokio::time::timeout_at(deadline, response.chunk())
            .await
            .expect("the stream ends at the token's expiry")
            .expect("body");
        match chunk {
            Some(bytes) => body.push_str(std::str::from_utf8(&bytes).expect("UTF-8")),
            None => break,
        }
    }
    assert!(body.contains("\"delta\":\"Hel\""), "{body}");
    assert!(body.contains("\"type\":\"error\""), "{body}");
    assert!(body.contains("40101"), "{body}");
    assert!(body.ends_with("data: [DONE]\n\n"), "{body}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renewal_without_presence_capabilities_takes_effect() {
    let server = secured(|_| {}).await;
    let full = mint(&server, "frank", app_caps(), 600).await;
    let mut ws = Ws::connect(&format!("{}?token={full}", server.ws_url())).await;
    let reply = ask(
        &mut ws,
        json!({"type": "attach", "channel": "conversation:p", "presence": true}),
    )
    .await;
    assert_eq!(reply["type"], "attached", "{reply}");
    let sync = ws.recv_type("presence-sync").await;
    assert_eq!(sync["members"], json!([]));
    let reply = presence(&mut ws, "conversation:p", "enter", json!({"s": 1})).await;
    assert_eq!(reply["type"], "ok", "{reply}");
    let own = ws.recv_type("presence").await;
    assert_eq!(own["action"], "enter");
    assert_eq!(members(&server, "conversation:p").await.len(), 1);

    // Renew to a token that may subscribe but not see or join presence.
    let bare = mint(
        &server,
        "frank",
        json!({"conversation:*": ["subscribe", "publish"]}),
        600,
    )
    .await;
    let reply = ask(&mut ws, json!({"type": "auth", "token": bare})).await;
    assert_eq!(reply["type"], "authorized", "{reply}");
    wait_members(&server, "conversation:p", 0).await;

    // Someone else enters; then a message shows the attachment is alive.
    let mut admin = Ws::connect(&format!("{}?key={ADMIN}", server.ws_url())).await;
    let reply = presence(&mut admin, "conversation:p", "enter", json!({"s": 2})).await;
    assert_eq!(reply["type"], "ok", "{reply}");
    let ack = admin
        .publish("conversation:p", json!({"data": "after"}))
        .await;
    assert_eq!(ack["type"], "ack", "{ack}");
    loop {
        let frame = ws.recv().await;
        assert_ne!(frame["type"], "presence", "presence after renewal: {frame}");
        assert_ne!(
            frame["type"], "presence-sync",
            "presence after renewal: {frame}"
        );
        if frame["type"] == "message" && frame["message"]["data"] == "after" {
            break;
        }
    }
    // Entering again is refused now.
    let reply = presence(&mut ws, "conversation:p", "enter", json!({})).await;
    assert_eq!(reply["code"], 40300, "{reply}");

    // Without subscribe the attachment is detached with an error.
    let none = mint(
        &server,
        "frank",
        json!({"conversation:*": ["publish"]}),
        600,
    )
    .await;
    let reply = ask(&mut ws, json!({"type": "auth", "token": none})).await;
    assert_eq!(reply["type"], "authorized", "{reply}");
    let detached = ws.recv_type("detached").await;
    assert_eq!(detached["channel"], "conversation:p");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_does_not_reenter_presence_without_the_capability() {
    let server = secured(|_| {}).await;
    let full = mint(&server, "gina", app_caps(), 600).await;
    let mut ws = Ws::connect(&format!("{}?token={full}", server.ws_url())).await;
    let id = ws.connected["connection_id"].clone();
    let key = ws.connected["resume_key"].clone();
    let reply = presence(&mut ws, "conversation:q", "enter", json!({})).await;
    assert_eq!(reply["type"], "ok", "{reply}");
    drop(ws); // vanishes: presence is held for the grace period
    assert_eq!(members(&server, "conversation:q").await.len(), 1);

    let bare = mint(
        &server,
        "gina",
        json!({"conversation:*": ["subscribe", "publish"]}),
        600,
    )
    .await;
    let mut ws = Ws::connect(&format!("{}?token={bare}", server.ws_url())).await;
    let reply = ask(
        &mut ws,
        json!({"type": "resume", "connection_id": id, "resume_key": key, "positions": {}}),
    )
    .await;
    assert_eq!(reply["type"], "resumed", "{reply}");
    wait_members(&server, "conversation:q", 0).await;
    server.stop().await;
}

// ---- 4. frames and upgrades -----------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_far_over_the_limit_closes_with_4009() {
    let server = TestServer::start_with(|c| c.max_frame_bytes = 4096).await;
    let mut ws = server.ws().await;
    let id = ws.connected["connection_id"].clone();
    let key = ws.connected["resume_key"].clone();
    let reply = presence(&mut ws, "room:f", "enter", json!({})).await;
    assert_eq!(reply["type"], "ok", "{reply}");
    // Over the limit but not far: an error, and the connection survives.
    let near = json!({"type": "ping", "pad": "x".repeat(5000)}).to_string();
    ws.send_raw(&near).await;
    assert_eq!(ws.recv_type("error").await["code"], 41301);
    assert!(alive(&mut ws).await);
    // Far over it: error frame, close code 4009.
    ws.send_raw(&"x".repeat(40_000)).await;
    let (errors, code) = until_closed(&mut ws, Duration::from_secs(5)).await;
    assert_eq!(code, Some(4009), "errors: {errors:?}");
    assert!(errors.iter().any(|e| e["code"] == 41301), "{errors:?}");
    // A server-initiated close, not a vanish: presence is left at once and
    // the session cannot be resumed.
    wait_members(&server, "room:f", 0).await;
    let mut next = server.ws().await;
    let reply = ask(
        &mut next,
        json!({"type": "resume", "connection_id": id, "resume_key": key}),
    )
    .await;
    assert_eq!(reply["code"], 41001, "{reply}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_frame_closes_with_a_protocol_error() {
    let server = TestServer::start().await;
    let mut ws = server.ws().await;
    let reply = presence(&mut ws, "room:m", "enter", json!({})).await;
    assert_eq!(reply["type"], "ok", "{reply}");
    // A masked text frame with the reserved bit RSV1 set (no extension
    // was negotiated): a protocol violation.
    let payload = br#"{"type":"ping"}"#;
    let mask = [1u8, 2, 3, 4];
    let mut frame = vec![0xC1, 0x80 | u8::try_from(payload.len()).expect("short")];
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    let tokio_tungstenite::MaybeTlsStream::Plain(tcp) = ws.socket.get_mut() else {
        panic!("plain TCP expected");
    };
    tcp.write_all(&frame).await.expect("write raw frame");
    let (errors, code) = until_closed(&mut ws, Duration::from_secs(5)).await;
    assert_eq!(code, Some(4000), "errors: {errors:?}");
    assert!(errors.iter().any(|e| e["code"] == 40000), "{errors:?}");
    wait_members(&server, "room:m", 0).await;
    server.stop().await;
}

/// Sends a raw HTTP/1.1 request; returns the status and the JSON body.
async fn raw_http(server: &TestServer, request: &str) -> (u16, Value) {
    let addr = server.base.trim_start_matches("http://");
    let mut tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    tcp.write_all(request.as_bytes()).await.expect("write");
    let mut buf = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout_at(deadline, tcp.read(&mut chunk))
            .await
            .expect("a response in time")
            .expect("read");
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf).to_string();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head
                .lines()
                .find_map(|l| {
                    let (name, value) = l.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            if body.len() >= length || n == 0 {
                let status = head
                    .split_whitespace()
                    .nth(1)
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0);
                let json = serde_json::from_str(&body[..length.min(body.len())])
                    .unwrap_or_else(|_| json!({"not_json": body}));
                return (status, json);
            }
        }
        assert!(n > 0, "connection closed mid-response: {text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrade_errors_are_json() {
    let server = TestServer::start().await;
    let (status, body) = server.http().get("/ws").await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], 40000, "{body}");
    let (status, body) = raw_http(
        &server,
        "GET /ws HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 12\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], 40000, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    let (status, body) = raw_http(
        &server,
        "GET /ws?rollup_ms=soon HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\n\
         Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], 40008, "{body}");
    server.stop().await;
}

// ---- 5. resume edge -------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_attaches_every_channel_named_in_positions() {
    let server = TestServer::start().await;
    let mut writer = server.ws().await;
    let first = writer.publish("room:p", json!({"data": "one"})).await;
    let second = writer.publish("room:p", json!({"data": "two"})).await;
    let first = first["serial"].as_str().expect("serial").to_owned();
    // A connection whose attach never reached the server.
    let lost = server.ws().await;
    let id = lost.connected["connection_id"].clone();
    let key = lost.connected["resume_key"].clone();
    drop(lost);
    let mut ws = server.ws().await;
    let reply = ask(
        &mut ws,
        json!({"type": "resume", "connection_id": id, "resume_key": key,
               "positions": {"room:p": first}}),
    )
    .await;
    assert_eq!(reply["type"], "resumed", "{reply}");
    assert_eq!(
        reply["attachments"],
        json!([{"channel": "room:p", "position": first, "presence": false}]),
        "{reply}"
    );
    let attached = ws.recv_type("attached").await;
    assert_eq!(attached["channel"], "room:p");
    assert_eq!(attached["continuity"], "resumed");
    let message = ws.recv_type("message").await;
    assert_eq!(message["message"]["serial"], second["serial"]);
    server.stop().await;
}
