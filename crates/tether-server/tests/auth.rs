//! Authentication and capabilities, end to end over WebSocket, SSE and REST.

mod support;

use std::collections::HashMap;

use base64::Engine;
use serde_json::{Value, json};
use support::{TestServer, Ws, basic};
use tether_core::Capabilities;
use tether_server::auth::KeyConfig;

const ADMIN: &str = "admin:admin-secret-0123456789";
const APP_SECRET: &str = "app-secret-0123456789";

async fn secured() -> TestServer {
    TestServer::start_with(|c| {
        c.dev = false;
        c.cors_origins.clear();
        let app_caps: Capabilities = serde_json::from_value(json!({
            "conversation:*": ["subscribe", "publish", "history", "message-update-own",
                "message-update-any", "message-delete-own", "message-delete-any"],
            "lobby": ["subscribe"]
        }))
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
                "app".to_owned(),
                KeyConfig {
                    secret: APP_SECRET.into(),
                    capabilities: app_caps,
                },
            ),
        ]);
    })
    .await
}

/// Mints a token for `client_id` with `caps` through the REST endpoint.
async fn mint(server: &TestServer, client_id: &str, caps: Value, ttl: u64) -> String {
    let response = reqwest::Client::new()
        .post(format!("{}/keys/app/tokens", server.base))
        .header("authorization", basic(&format!("app:{APP_SECRET}")))
        .json(&json!({"client_id": client_id, "capabilities": caps, "ttl_secs": ttl}))
        .send()
        .await
        .expect("mint");
    assert_eq!(response.status().as_u16(), 201);
    let body: Value = response.json().await.expect("json");
    body["token"].as_str().expect("token").to_owned()
}

/// Publishes as the admin key, acting for `owner`; returns the serial.
async fn seed(server: &TestServer, channel: &str, owner: &str) -> String {
    let response = reqwest::Client::new()
        .post(format!("{}/channels/{channel}/messages", server.base))
        .header("authorization", basic(ADMIN))
        .header("x-tether-client-id", owner)
        .json(&json!({"data": "seed"}))
        .send()
        .await
        .expect("seed");
    assert_eq!(response.status().as_u16(), 201);
    let body: Value = response.json().await.expect("json");
    body["serial"].as_str().expect("serial").to_owned()
}

#[derive(Debug, Clone, Copy)]
enum Op {
    Subscribe,
    Publish,
    History,
    Append,
    Update,
    Delete,
}

/// Runs `op` over WebSocket; `Ok` or the error code.
async fn over_ws(
    server: &TestServer,
    token: &str,
    op: Op,
    channel: &str,
    serial: &str,
) -> Result<(), u64> {
    let mut ws = Ws::connect(&format!("{}?token={token}", server.ws_url())).await;
    let frame = match op {
        Op::Subscribe => json!({"type": "attach", "channel": channel}),
        Op::Publish => json!({"type": "publish", "channel": channel, "message": {"data": "x"}}),
        Op::Append => json!({"type": "append", "channel": channel, "serial": serial, "data": "x"}),
        Op::Update => json!({"type": "update", "channel": channel, "serial": serial, "data": "y"}),
        Op::Delete => json!({"type": "delete", "channel": channel, "serial": serial}),
        Op::History => return over_rest(server, token, op, channel, serial).await,
    };
    let req = ws.request(frame).await;
    let reply = ws.reply(req).await;
    match reply["type"].as_str() {
        Some("ack") | Some("attached") => Ok(()),
        _ => Err(reply["code"].as_u64().unwrap_or(0)),
    }
}

/// Runs `op` over REST (subscribe: SSE); `Ok` or the error code.
async fn over_rest(
    server: &TestServer,
    token: &str,
    op: Op,
    channel: &str,
    serial: &str,
) -> Result<(), u64> {
    let client = reqwest::Client::new();
    let url = |path: String| format!("{}{}", server.base, path);
    let request = match op {
        Op::Subscribe => client.get(url(format!("/channels/{channel}/stream?token={token}"))),
        Op::Publish => client
            .post(url(format!("/channels/{channel}/messages")))
            .json(&json!({"data": "x"})),
        Op::History => client.get(url(format!("/channels/{channel}/messages"))),
        Op::Append => client
            .post(url(format!("/channels/{channel}/messages/{serial}/append")))
            .json(&json!({"data": "x"})),
        Op::Update => client
            .patch(url(format!("/channels/{channel}/messages/{serial}")))
            .json(&json!({"data": "y"})),
        Op::Delete => client
            .delete(url(format!("/channels/{channel}/messages/{serial}")))
            .json(&json!({})),
    };
    let request = if matches!(op, Op::Subscribe) {
        request
    } else {
        request.bearer_auth(token)
    };
    let response = request.send().await.expect("request");
    if response.status().is_success() {
        return Ok(());
    }
    let body: Value = response.json().await.unwrap_or(Value::Null);
    Err(body["error"]["code"].as_u64().unwrap_or(0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capability_matrix() {
    let server = secured().await;
    let me = "user-1";
    let mine = "conversation:u1";
    let other = "conversation:u2";
    let all_msg = [
        "subscribe",
        "publish",
        "history",
        "message-update-any",
        "message-delete-any",
    ];
    // (what, granted capabilities, channel acted on, op, message owner is me, expected)
    type Case<'a> = (&'a str, Value, &'a str, Op, bool, Result<(), u64>);
    let cases: Vec<Case> = vec![
        (
            "subscribe granted",
            json!({mine: ["subscribe"]}),
            mine,
            Op::Subscribe,
            true,
            Ok(()),
        ),
        (
            "subscribe not granted",
            json!({mine: ["publish"]}),
            mine,
            Op::Subscribe,
            true,
            Err(40300),
        ),
        (
            "subscribe other channel",
            json!({mine: ["subscribe"]}),
            other,
            Op::Subscribe,
            true,
            Err(40300),
        ),
        (
            "subscribe by pattern",
            json!({"conversation:*": ["subscribe"]}),
            other,
            Op::Subscribe,
            true,
            Ok(()),
        ),
        (
            "publish granted",
            json!({mine: ["publish"]}),
            mine,
            Op::Publish,
            true,
            Ok(()),
        ),
        (
            "publish not granted",
            json!({mine: ["subscribe"]}),
            mine,
            Op::Publish,
            true,
            Err(40300),
        ),
        (
            "publish other channel",
            json!({mine: ["publish"]}),
            other,
            Op::Publish,
            true,
            Err(40300),
        ),
        (
            "history granted",
            json!({mine: ["history"]}),
            mine,
            Op::History,
            true,
            Ok(()),
        ),
        (
            "history not granted",
            json!({mine: ["subscribe"]}),
            mine,
            Op::History,
            true,
            Err(40300),
        ),
        (
            "history other channel",
            json!({mine: ["history"]}),
            other,
            Op::History,
            true,
            Err(40300),
        ),
        (
            "append any",
            json!({mine: ["message-update-any"]}),
            mine,
            Op::Append,
            false,
            Ok(()),
        ),
        (
            "append own, mine",
            json!({mine: ["message-update-own"]}),
            mine,
            Op::Append,
            true,
            Ok(()),
        ),
        (
            "append own, theirs",
            json!({mine: ["message-update-own"]}),
            mine,
            Op::Append,
            false,
            Err(40300),
        ),
        (
            "append not granted",
            json!({mine: ["publish"]}),
            mine,
            Op::Append,
            true,
            Err(40300),
        ),
        (
            "append other channel",
            json!({mine: ["message-update-any"]}),
            other,
            Op::Append,
            true,
            Err(40300),
        ),
        (
            "update any",
            json!({mine: ["message-update-any"]}),
            mine,
            Op::Update,
            false,
            Ok(()),
        ),
        (
            "update own, mine",
            json!({mine: ["message-update-own"]}),
            mine,
            Op::Update,
            true,
            Ok(()),
        ),
        (
            "update own, theirs",
            json!({mine: ["message-update-own"]}),
            mine,
            Op::Update,
            false,
            Err(40300),
        ),
        (
            "update not granted",
            json!({mine: all_msg[..3]}),
            mine,
            Op::Update,
            true,
            Err(40300),
        ),
        (
            "delete any",
            json!({mine: ["message-delete-any"]}),
            mine,
            Op::Delete,
            false,
            Ok(()),
        ),
        (
            "delete own, mine",
            json!({mine: ["message-delete-own"]}),
            mine,
            Op::Delete,
            true,
            Ok(()),
        ),
        (
            "delete own, theirs",
            json!({mine: ["message-delete-own"]}),
            mine,
            Op::Delete,
            false,
            Err(40300),
        ),
        (
            "delete not granted",
            json!({mine: ["message-update-any"]}),
            mine,
            Op::Delete,
            true,
            Err(40300),
        ),
        (
            "delete other channel",
            json!({mine: ["message-delete-any"]}),
            other,
            Op::Delete,
            true,
            Err(40300),
        ),
    ];
    for (what, caps, channel, op, own, expected) in cases {
        let token = mint(&server, me, caps, 600).await;
        for transport in ["ws", "rest"] {
            let owner = if own { me } else { "user-2" };
            let serial = seed(&server, channel, owner).await;
            let got = match transport {
                "ws" => over_ws(&server, &token, op, channel, &serial).await,
                _ => over_rest(&server, &token, op, channel, &serial).await,
            };
            assert_eq!(got, expected, "{what} over {transport}");
        }
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_comes_from_the_credential() {
    let server = secured().await;
    let token = mint(
        &server,
        "alice",
        json!({"conversation:*": ["publish", "history"]}),
        600,
    )
    .await;
    let mut ws = Ws::connect(&format!("{}?token={token}", server.ws_url())).await;
    assert_eq!(ws.connected["client_id"], "alice");
    let ack = ws.publish("conversation:a", json!({"data": "hi"})).await;
    let serial = ack["serial"].as_str().expect("serial").to_owned();
    let (_, message) = server
        .http()
        .client
        .get(format!(
            "{}/channels/conversation:a/messages/{serial}",
            server.base
        ))
        .bearer_auth(&token)
        .send()
        .await
        .map(|r| (r.status(), r))
        .expect("get");
    let message: Value = message.json().await.expect("json");
    assert_eq!(message["client_id"], "alice");
    assert_eq!(message["connection_id"], ws.connected["connection_id"]);

    // A payload claiming an identity is refused.
    let req = ws
        .request(json!({"type": "publish", "channel": "conversation:a", "message": {"data": "x", "client_id": "bob"}}))
        .await;
    assert_eq!(ws.reply(req).await["code"], 40000);
    // A token holder cannot pick another client_id.
    match tokio_tungstenite::connect_async(format!(
        "{}?token={token}&client_id=bob",
        server.ws_url()
    ))
    .await
    {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status().as_u16(), 403);
        }
        other => panic!("expected a refused upgrade, got {:?}", other.map(|_| ())),
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_credentials_are_refused_with_stable_codes() {
    let server = secured().await;
    let client = reqwest::Client::new();
    let history = format!("{}/channels/conversation:x/messages", server.base);
    let status_and_code = |r: reqwest::Response| async move {
        let status = r.status().as_u16();
        let body: Value = r.json().await.unwrap_or(Value::Null);
        (status, body["error"]["code"].as_u64().unwrap_or(0))
    };
    // No credential at all.
    let r = client.get(&history).send().await.expect("request");
    assert_eq!(status_and_code(r).await, (401, 40100));
    // Wrong key secret.
    let r = client
        .get(&history)
        .header("authorization", basic("app:wrong-secret-000000000"))
        .send()
        .await
        .expect("request");
    assert_eq!(status_and_code(r).await, (401, 40100));
    // A token with a tampered signature.
    let token = mint(&server, "u", json!({"conversation:*": ["history"]}), 600).await;
    let tampered = format!("{}x", &token[..token.len() - 1]);
    let r = client
        .get(&history)
        .bearer_auth(&tampered)
        .send()
        .await
        .expect("request");
    assert_eq!(status_and_code(r).await, (401, 40100));
    // alg: none.
    let header =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(r#"{"alg":"none","kid":"app"}"#);
    let claims = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(r#"{"capabilities":{"*":["*"]},"exp":99999999999}"#);
    let r = client
        .get(&history)
        .bearer_auth(format!("{header}.{claims}."))
        .send()
        .await
        .expect("request");
    assert_eq!(status_and_code(r).await, (401, 40100));
    // Garbage.
    let r = client
        .get(&history)
        .bearer_auth("not.a.jwt")
        .send()
        .await
        .expect("request");
    assert_eq!(status_and_code(r).await, (401, 40100));
    // A token may not grant more than its key.
    let r = client
        .post(format!("{}/keys/app/tokens", server.base))
        .header("authorization", basic(&format!("app:{APP_SECRET}")))
        .json(&json!({"capabilities": {"secret:*": ["subscribe"]}}))
        .send()
        .await
        .expect("request");
    assert_eq!(status_and_code(r).await, (403, 40300));
    // Only the key itself mints its tokens.
    let r = client
        .post(format!("{}/keys/app/tokens", server.base))
        .header("authorization", basic(ADMIN))
        .json(&json!({}))
        .send()
        .await
        .expect("request");
    assert_eq!(status_and_code(r).await, (403, 40300));
    // Metrics need the stats capability.
    let r = client
        .get(format!("{}/metrics", server.base))
        .bearer_auth(&token)
        .send()
        .await
        .expect("m");
    assert_eq!(status_and_code(r).await, (403, 40300));
    let r = client
        .get(format!("{}/metrics", server.base))
        .header("authorization", basic(ADMIN))
        .send()
        .await
        .expect("m");
    assert_eq!(r.status().as_u16(), 200);
    // A WebSocket with a bad token is refused before the upgrade.
    assert!(
        tokio_tungstenite::connect_async(format!("{}?token={tampered}", server.ws_url()))
            .await
            .is_err()
    );
    // A WebSocket without a credential must authenticate first.
    let mut ws = Ws::connect(&server.ws_url()).await;
    assert_eq!(ws.connected["authenticated"], false);
    ws.send(json!({"type": "attach", "channel": "conversation:x"}))
        .await;
    assert_eq!(ws.recv_type("error").await["code"], 40100);
    assert!(
        ws.try_recv(std::time::Duration::from_secs(5))
            .await
            .is_none(),
        "closed"
    );
    // ...and may do so with an auth frame.
    let mut ws = Ws::connect(&server.ws_url()).await;
    let req = ws
        .request(json!({"type": "auth", "key": format!("app:{APP_SECRET}")}))
        .await;
    assert_eq!(ws.reply(req).await["type"], "authorized");
    ws.attach("conversation:x", json!({})).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_renewal_keeps_attachments_and_expiry_disconnects() {
    let server = secured().await;
    let caps = json!({"conversation:*": ["subscribe", "publish"]});
    let short = mint(&server, "carol", caps.clone(), 2).await;
    let mut ws = Ws::connect(&format!("{}?token={short}", server.ws_url())).await;
    ws.attach("conversation:r", json!({})).await;
    let longer = mint(&server, "carol", caps.clone(), 600).await;
    let req = ws.request(json!({"type": "auth", "token": longer})).await;
    let authorized = ws.reply(req).await;
    assert_eq!(authorized["type"], "authorized", "{authorized}");
    // Past the first token's expiry the connection is still attached.
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    let ack = ws
        .publish("conversation:r", json!({"data": "still here"}))
        .await;
    assert_eq!(ack["type"], "ack");
    let frame = ws.recv_type("message").await;
    assert_eq!(frame["message"]["data"], "still here");
    // Renewal cannot change identity.
    let mallory = mint(&server, "mallory", caps.clone(), 600).await;
    let req = ws.request(json!({"type": "auth", "token": mallory})).await;
    assert_eq!(ws.reply(req).await["code"], 40300);

    // Without renewal, expiry closes with 40101 / close code 4005.
    let expiring = mint(&server, "dave", caps, 1).await;
    let mut ws = Ws::connect(&format!("{}?token={expiring}", server.ws_url())).await;
    ws.attach("conversation:r", json!({})).await;
    let error = ws.recv_type("error").await;
    assert_eq!(error["code"], 40101);
    use futures::StreamExt;
    let close = loop {
        match ws.socket.next().await {
            Some(Ok(tokio_tungstenite::tungstenite::Message::Close(frame))) => break frame,
            Some(Ok(_)) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    };
    assert_eq!(close.map(|f| u16::from(f.code)), Some(4005));
    server.stop().await;
}

#[tokio::test]
async fn a_keyless_dev_server_says_why_it_refuses_a_token() {
    let server = TestServer::start().await;
    let key = KeyConfig {
        secret: APP_SECRET.into(),
        capabilities: Capabilities::all(),
    };
    let request = tether_server::auth::TokenRequest {
        client_id: Some("u1".into()),
        capabilities: None,
        ttl_secs: Some(600),
    };
    let (token, _) = tether_server::auth::token::mint("app", &key, request).expect("mint");
    let response = reqwest::Client::new()
        .get(format!("{}/channels/lobby/messages", server.base))
        .bearer_auth(&token)
        .send()
        .await
        .expect("request");
    assert_eq!(response.status().as_u16(), 401);
    let body: Value = response.json().await.expect("json");
    let message = body["error"]["message"].as_str().expect("message");
    assert!(message.contains("unknown key"), "{message}");
    assert!(message.contains("--dev and no keys"), "{message}");
    // Without a credential the same request is served.
    let open = reqwest::get(format!("{}/channels/lobby/messages", server.base))
        .await
        .expect("request");
    assert_eq!(open.status().as_u16(), 200);
}
