//! Hardening of token handling (issue 12): an overflow-safe expiry, the
//! maximum lifetime and `nbf`, against a real server over real HTTP.

mod support;

use std::time::Duration;

use support::TestServer;

// ---------------------------------------------------------------------
// 2. Tokens: overflow-safe expiry, maximum lifetime, nbf
// ---------------------------------------------------------------------

const SECRET: &str = "app-secret-0123456789";

/// A server with authentication on and one key, `app`.
async fn secured(adjust: impl FnOnce(&mut tether_server::Config)) -> TestServer {
    TestServer::start_with(|c| {
        c.dev = false;
        c.keys = std::collections::HashMap::from([(
            "app".to_owned(),
            tether_server::auth::KeyConfig {
                secret: SECRET.into(),
                capabilities: tether_core::Capabilities::all(),
            },
        )]);
        adjust(c);
    })
    .await
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

/// Signs claims the way an issuer with the `app` secret would.
fn sign(claims: serde_json::Value) -> String {
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    header.kid = Some("app".into());
    jsonwebtoken::encode(
        &header,
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .expect("sign")
}

fn claims(exp: u64, extra: serde_json::Value) -> serde_json::Value {
    let mut claims = serde_json::json!({
        "client_id": "user-1",
        "capabilities": {"*": ["*"]},
        "exp": exp,
        "iat": now(),
    });
    if let serde_json::Value::Object(extra) = extra {
        for (k, v) in extra {
            claims[k] = v;
        }
    }
    claims
}

/// `GET path` with a bearer token: status and JSON body.
async fn get_with(server: &TestServer, path: &str, token: &str) -> (u16, serde_json::Value) {
    let response = reqwest::Client::new()
        .get(format!("{}{}", server.base, path))
        .bearer_auth(token)
        .send()
        .await
        .expect("GET");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_with_an_exp_of_u64_max_streams_instead_of_panicking() {
    // With the lifetime cap lifted, an exp of 2^64-1 reaches the SSE
    // handler, whose expiry deadline must not overflow.
    let server = secured(|c| c.max_token_lifetime_secs = u64::MAX).await;
    let token = sign(claims(u64::MAX, serde_json::json!({})));
    let mut sse = support::Sse::connect(
        &server.base,
        &format!("/channels/conversation:exp/stream?token={token}"),
        None,
    )
    .await;
    assert_eq!(sse.next_of("attached").await.event, "attached");
    // The server is still fine: the same stream delivers a publish.
    let response = reqwest::Client::new()
        .post(format!(
            "{}/channels/conversation:exp/messages",
            server.base
        ))
        .bearer_auth(&token)
        .json(&serde_json::json!({"data": "hello"}))
        .send()
        .await
        .expect("publish");
    assert_eq!(response.status().as_u16(), 201);
    let message = sse.next_of("message").await;
    assert_eq!(message.data["data"], "hello", "{:?}", message.data);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ai_sdk_stream_with_an_exp_of_u64_max_streams_instead_of_panicking() {
    // The AI SDK stream ends when the credential expires too; its deadline
    // must not overflow either.
    let server = secured(|c| c.max_token_lifetime_secs = u64::MAX).await;
    let token = sign(claims(u64::MAX, serde_json::json!({})));
    let http = reqwest::Client::new();
    let channel = "conversation:exp-aisdk";
    let created = http
        .post(format!("{}/channels/{channel}/messages", server.base))
        .bearer_auth(&token)
        .json(&serde_json::json!({
            "name": "response", "data": "Hel", "extras": {"stream": "streaming"}
        }))
        .send()
        .await
        .expect("publish");
    assert_eq!(created.status().as_u16(), 201);
    let mut stream = http
        .get(format!("{}/channels/{channel}/aisdk/stream", server.base))
        .bearer_auth(&token)
        .send()
        .await
        .expect("stream");
    assert_eq!(stream.status().as_u16(), 200);
    let first = tokio::time::timeout(Duration::from_secs(5), stream.chunk())
        .await
        .expect("a chunk in time")
        .expect("readable")
        .expect("not ended");
    assert!(
        String::from_utf8_lossy(&first).contains("data:"),
        "{first:?}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_longer_than_the_maximum_lifetime_are_refused() {
    let server = secured(|c| c.max_token_lifetime_secs = 3600).await;
    let path = "/channels/conversation:life/messages";
    let (status, body) = get_with(
        &server,
        path,
        &sign(claims(u64::MAX, serde_json::json!({}))),
    )
    .await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"]["code"], 40100, "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("max_token_lifetime_secs"), "{message}");

    // Without iat the lifetime counts from now.
    let no_iat = serde_json::json!({"capabilities": {"*": ["*"]}, "exp": now() + 7200});
    let (status, body) = get_with(&server, path, &sign(no_iat)).await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (401, 40100.into()),
        "{body}"
    );
    // A future-dated iat does not shorten the lifetime.
    let future_iat = claims(now() + 7200, serde_json::json!({"iat": now() + 7000}));
    let (status, body) = get_with(&server, path, &sign(future_iat)).await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (401, 40100.into()),
        "{body}"
    );

    // Within the maximum: accepted.
    let (status, body) = get_with(
        &server,
        path,
        &sign(claims(now() + 3000, serde_json::json!({}))),
    )
    .await;
    assert_eq!(status, 200, "{body}");

    // Minting beyond the maximum is refused with 40008; within, it works.
    let mint = |ttl: u64| {
        reqwest::Client::new()
            .post(format!("{}/keys/app/tokens", server.base))
            .basic_auth("app", Some(SECRET))
            .json(&serde_json::json!({"client_id": "user-1", "ttl_secs": ttl}))
            .send()
    };
    let response = mint(3601).await.expect("mint");
    assert_eq!(response.status().as_u16(), 400);
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(body["error"]["code"], 40008, "{body}");
    let response = mint(3600).await.expect("mint");
    assert_eq!(response.status().as_u16(), 201);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_before_their_nbf_are_not_yet_valid() {
    let server = secured(|_| {}).await;
    let path = "/channels/conversation:nbf/messages";
    let early = sign(claims(
        now() + 3600,
        serde_json::json!({"nbf": now() + 600}),
    ));
    let (status, body) = get_with(&server, path, &early).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"]["code"], 40102, "{body}");

    // A WebSocket upgrade with it is refused with the same code.
    let url = format!(
        "{}/ws?token={early}",
        server.base.replace("http://", "ws://")
    );
    match tokio_tungstenite::connect_async(&url).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status().as_u16(), 401);
            let body = String::from_utf8_lossy(response.body().as_deref().unwrap_or_default())
                .into_owned();
            assert!(body.contains("40102"), "{body}");
        }
        other => panic!("upgrade not refused: {:?}", other.map(|_| ())),
    }

    // Authenticating with it in the first frame closes with 4007.
    let url = format!("{}/ws", server.base.replace("http://", "ws://"));
    let (mut socket, _) = tokio_tungstenite::connect_async(&url)
        .await
        .expect("upgrade without a credential");
    {
        use futures::{SinkExt, StreamExt};
        use tokio_tungstenite::tungstenite::Message as WsMessage;
        let auth = serde_json::json!({"type": "auth", "token": early}).to_string();
        socket
            .send(WsMessage::Text(auth.into()))
            .await
            .expect("send auth");
        let mut close = None;
        while let Ok(Some(Ok(frame))) =
            tokio::time::timeout(Duration::from_secs(5), socket.next()).await
        {
            if let WsMessage::Close(frame) = frame {
                close = frame.map(|f| u16::from(f.code));
                break;
            }
        }
        assert_eq!(close, Some(4007), "close code for a not-yet-valid token");
    }

    // Within the clock-skew leeway: accepted.
    let skewed = sign(claims(now() + 3600, serde_json::json!({"nbf": now() + 10})));
    let (status, body) = get_with(&server, path, &skewed).await;
    assert_eq!(status, 200, "{body}");
    server.stop().await;
}
