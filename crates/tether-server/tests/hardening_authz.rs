//! Hardening (issue 12): authorization of the message conventions on every
//! door, per-credential rate limits, idempotency scoped by publisher. Real
//! servers, real HTTP and WebSockets. (The LLM bridge's limits are in
//! `hardening_authz_llm.rs`.)

mod authz_support;
mod support;

use std::time::{Duration, Instant};

use authz_support::*;
use reqwest::Method;
use serde_json::{Value, json};
use support::{TestServer, WAIT, Ws};
use tether_server::{Config, Server};

// ---------------------------------------------------------------------------
// Item 1: the conventions' authority on every door.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handoff_needs_operator_on_every_rest_and_websocket_path() {
    let server = secured(|_| {}).await;
    let user = Api::token(&server.base, &user_token(&server).await);
    let messages = format!("/channels/{CHANNEL}/messages");
    let claim = json!({"name": "handoff", "extras": {"action": "claim"}});

    // REST: one message, an array of one, an array hiding one among others.
    let (status, body) = user.post(&messages, claim.clone()).await;
    assert_eq!((status, code(&body)), (403, Some(40300)), "{body}");
    let (status, body) = user.post(&messages, json!([claim.clone()])).await;
    assert_eq!((status, code(&body)), (403, Some(40300)), "{body}");
    let (status, body) = user
        .post(&messages, json!([{"data": "first"}, claim.clone()]))
        .await;
    assert_eq!((status, code(&body)), (403, Some(40300)), "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("operator")),
        "{body}"
    );
    assert!(user.history(CHANNEL).await.is_empty(), "nothing was stored");

    // Renaming one's own message into a handoff, over REST.
    let own = user
        .publish(CHANNEL, json!({"name": "chat", "data": "hi"}))
        .await;
    let (status, body) = user
        .patch(&format!("{messages}/{own}"), json!({"name": "handoff"}))
        .await;
    assert_eq!((status, code(&body)), (403, Some(40300)), "{body}");
    let (status, body) = user
        .post(
            &format!("{messages}/{own}/append"),
            json!({"data": "!", "name": "handoff"}),
        )
        .await;
    assert_eq!((status, code(&body)), (403, Some(40300)), "{body}");

    // ... and over WebSocket, plus an ephemeral handoff.
    let token = user.authorization.as_deref().expect("auth")["Bearer ".len()..].to_owned();
    let mut ws = Ws::connect(&format!("{}?token={token}", server.ws_url())).await;
    for frame in [
        json!({"type": "update", "channel": CHANNEL, "serial": own, "name": "handoff"}),
        json!({"type": "append", "channel": CHANNEL, "serial": own, "data": "!", "name": "handoff"}),
        json!({"type": "publish", "channel": CHANNEL, "message": claim.clone()}),
        json!({"type": "publish", "channel": CHANNEL, "message": claim.clone(), "ephemeral": true}),
    ] {
        let reply = ws_call(&mut ws, frame.clone()).await;
        assert_eq!(
            (reply["type"].as_str(), reply["code"].as_u64()),
            (Some("error"), Some(40300)),
            "{frame}: {reply}"
        );
    }
    // The user's own ordinary changes still work.
    let reply = ws_call(
        &mut ws,
        json!({"type": "update", "channel": CHANNEL, "serial": own, "data": "hello"}),
    )
    .await;
    assert_eq!(reply["type"], "ack", "{reply}");
    let history = user.history(CHANNEL).await;
    assert_eq!(history.len(), 1);
    assert_eq!(history[0]["name"], "chat");

    // An operator claims; a key that may change any message but not
    // operate cannot rename, edit or delete the claim (checked by the
    // store's writer against the message's current name).
    let admin = Api::admin(&server).acting_as("op-1");
    let handoff = admin.publish(CHANNEL, claim.clone()).await;
    let app = Api::app(&server).acting_as("backend");
    let at = format!("{messages}/{handoff}");
    for change in [
        json!({"name": "chat"}),
        json!({"extras": {"action": "release"}}),
    ] {
        let (status, body) = app.patch(&at, change.clone()).await;
        assert_eq!(
            (status, code(&body)),
            (403, Some(40300)),
            "{change}: {body}"
        );
    }
    let (status, body) = app.call(Method::DELETE, &at, None).await;
    assert_eq!((status, code(&body)), (403, Some(40300)), "{body}");
    let (status, body) = admin
        .patch(&at, json!({"extras": {"action": "release"}}))
        .await;
    assert_eq!(status, 200, "{body}");
    let (_, current) = admin.get(&at).await;
    assert_eq!(current["extras"]["action"], "release");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_needs_publish_and_a_user_may_cancel_the_agents_response() {
    let server = secured(|_| {}).await;
    let agent = Api::app(&server).acting_as("agent");
    let response = agent
        .publish(
            CHANNEL,
            json!({"name": "response", "data": "", "extras": {"stream": "streaming"}}),
        )
        .await;
    // The user (publish on their conversation) cancels the agent's answer.
    let user = Api::token(&server.base, &user_token(&server).await);
    user.publish(
        CHANNEL,
        json!({"name": "cancel", "extras": {"target": response}}),
    )
    .await;
    let at = format!("/channels/{CHANNEL}/messages/{response}");
    let deadline = Instant::now() + WAIT;
    loop {
        let (_, current) = user.get(&at).await;
        if current["extras"]["stream"] == "cancelled" {
            break;
        }
        assert!(Instant::now() < deadline, "not cancelled: {current}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // A reader who may edit their own messages but not publish cannot turn
    // one into a cancel.
    let mine = agent
        .acting_as("reader-1")
        .publish(CHANNEL, json!({"data": "note"}))
        .await;
    let reader = Api::token(
        &server.base,
        &mint(
            &server,
            "reader-1",
            json!({CHANNEL: ["subscribe", "history", "message-update-own"]}),
        )
        .await,
    );
    let (status, body) = reader
        .patch(
            &format!("/channels/{CHANNEL}/messages/{mine}"),
            json!({"name": "cancel", "data": response}),
        )
        .await;
    assert_eq!((status, code(&body)), (403, Some(40300)), "{body}");
    let (status, body) = reader
        .patch(
            &format!("/channels/{CHANNEL}/messages/{mine}"),
            json!({"data": "edited"}),
        )
        .await;
    assert_eq!(status, 200, "ordinary edits still work: {body}");
    server.stop().await;
}

// ---------------------------------------------------------------------------
// Item 2: rate limits per credential, across doors.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_arrays_are_charged_their_length_and_refused_whole() {
    let server = secured(|c| {
        c.publish_rate_per_sec = 5;
        c.publish_burst = 40;
    })
    .await;
    let app = Api::app(&server);
    let messages = format!("/channels/{CHANNEL}/messages");
    let many = |n: usize| Value::Array((0..n).map(|i| json!({"data": i})).collect());

    let (status, body) = app.post(&messages, many(2000)).await;
    assert_eq!((status, code(&body)), (429, Some(42901)), "{body}");
    assert!(app.history(CHANNEL).await.is_empty());

    let (status, body) = app.post(&messages, many(30)).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["results"].as_array().map(Vec::len), Some(30));
    // Ten (plus a little refill) are left: thirty more are refused whole.
    let (status, body) = app.post(&messages, many(30)).await;
    assert_eq!((status, code(&body)), (429, Some(42901)), "{body}");
    assert_eq!(app.history(CHANNEL).await.len(), 30);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_and_requests_of_one_credential_share_one_budget() {
    let server = secured(|c| {
        c.publish_rate_per_sec = 1;
        c.publish_burst = 10;
    })
    .await;
    let key_url = format!("{}?key=app:{APP_SECRET}", server.ws_url());
    let mut first = Ws::connect(&key_url).await;
    let mut second = Ws::connect(&format!("{key_url}&client_id=someone-else")).await;
    // What is announced is what applies, now per credential.
    assert_eq!(first.connected["limits"]["publish_rate_per_sec"], 1);
    assert_eq!(first.connected["limits"]["publish_burst"], 10);

    async fn burst(ws: &mut Ws, n: usize) -> (usize, usize) {
        let mut reqs = Vec::new();
        for i in 0..n {
            reqs.push(
                ws.request(json!({"type": "publish", "channel": CHANNEL, "message": {"data": i}}))
                    .await,
            );
        }
        let (mut acks, mut limited) = (0, 0);
        for req in reqs {
            let reply = ws.reply(req).await;
            if reply["type"] == "ack" {
                acks += 1;
            } else {
                assert_eq!(reply["code"], 42901, "{reply}");
                limited += 1;
            }
        }
        (acks, limited)
    }
    let started = Instant::now();
    let (acks_first, _) = burst(&mut first, 6).await;
    assert_eq!(acks_first, 6);
    let (acks_second, limited) = burst(&mut second, 6).await;
    let refill = started.elapsed().as_secs() as usize + 1;
    assert!(
        acks_second <= 4 + refill && limited >= 1,
        "the second connection of the key has only what is left: {acks_second} acks"
    );
    // REST, acting for yet another client of the same key: same budget
    // (three at once: only seconds of refill could pay for them).
    let app = Api::app(&server).acting_as("third");
    let (status, body) = app
        .post(
            &format!("/channels/{CHANNEL}/messages"),
            json!([{"data": 1}, {"data": 2}, {"data": 3}]),
        )
        .await;
    assert_eq!((status, code(&body)), (429, Some(42901)), "{body}");

    // Another credential (a token) has its own budget, on both doors.
    let token = user_token(&server).await;
    let user = Api::token(&server.base, &token);
    user.publish(CHANNEL, json!({"data": "mine"})).await;
    let mut ws = Ws::connect(&format!("{}?token={token}", server.ws_url())).await;
    assert_eq!(
        ws.publish(CHANNEL, json!({"data": "mine too"})).await["type"],
        "ack"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_dev_mode_a_client_id_is_one_budget_and_anonymous_connections_have_their_own() {
    let server = TestServer::start_with(|c| {
        c.publish_rate_per_sec = 1;
        c.publish_burst = 5;
    })
    .await;
    let alice = format!("{}?client_id=alice", server.ws_url());
    let mut first = Ws::connect(&alice).await;
    let mut acks = 0;
    while first.publish("room", json!({"data": acks})).await["type"] == "ack" {
        acks += 1;
        assert!(acks < 20, "the burst of 5 is never exhausted");
    }
    assert!(acks >= 5, "{acks}");
    // A second connection of alice has nothing left: of three sent at
    // once, at most a refill's worth pass.
    let mut second = Ws::connect(&alice).await;
    let mut reqs = Vec::new();
    for i in 0..3 {
        reqs.push(
            second
                .request(json!({"type": "publish", "channel": "room", "message": {"data": i}}))
                .await,
        );
    }
    let mut refused = 0;
    for req in reqs {
        if second.reply(req).await["code"] == 42901 {
            refused += 1;
        }
    }
    assert!(refused >= 1, "alice's second connection shares her budget");
    let (status, body) = Api::new(&server.base)
        .acting_as("alice")
        .post(
            "/channels/room/messages",
            json!([{"data": 1}, {"data": 2}, {"data": 3}]),
        )
        .await;
    assert_eq!((status, code(&body)), (429, Some(42901)), "{body}");
    // Without a client id each connection is its own budget, as before.
    let mut anonymous = server.ws().await;
    assert_eq!(
        anonymous.publish("room", json!({"data": "x"})).await["type"],
        "ack"
    );
    server.stop().await;
}

// ---------------------------------------------------------------------------
// Item 4: idempotency ids belong to their publisher.

async fn start_in(dir: &std::path::Path, adjust: impl FnOnce(&mut Config)) -> (Server, String) {
    let mut config = Config {
        listen: "127.0.0.1:0".parse().expect("addr"),
        data_dir: dir.join("data"),
        dev: true,
        ..Config::default()
    };
    adjust(&mut config);
    let server = Server::start(config).await.expect("server starts");
    let base = format!("http://{}", server.addr());
    (server, base)
}

/// Publishes with message id `id`; returns (serial, duplicate).
async fn publish_id(api: &Api, channel: &str, id: &str, data: &str) -> (String, bool) {
    let (status, body) = api
        .post(
            &format!("/channels/{channel}/messages"),
            json!({"id": id, "data": data}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    (
        body["serial"].as_str().expect("serial").to_owned(),
        body["duplicate"].as_bool().expect("duplicate"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_ids_belong_to_their_publisher_and_survive_a_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (server, base) = start_in(dir.path(), |_| {}).await;
    let alice = Api::new(&base).acting_as("alice");
    let bob = Api::new(&base).acting_as("bob");
    let (a, dup) = publish_id(&alice, "room", "m-1", "alice's").await;
    assert!(!dup);
    let (b, dup) = publish_id(&bob, "room", "m-1", "bob's").await;
    assert!(!dup, "bob's message is not swallowed by alice's id");
    assert_ne!(a, b);
    assert_eq!(
        publish_id(&alice, "room", "m-1", "again").await,
        (a.clone(), true)
    );
    // Over WebSocket, the same identity finds its own original.
    let ws_url = format!("{}/ws?client_id=bob", base.replace("http://", "ws://"));
    let mut ws = Ws::connect(&ws_url).await;
    let reply = ws
        .publish("room", json!({"id": "m-1", "data": "bob again"}))
        .await;
    assert_eq!(
        (reply["serial"].as_str(), reply["duplicate"].as_bool()),
        (Some(b.as_str()), Some(true)),
        "{reply}"
    );
    drop(ws);
    let history = alice.history("room").await;
    let data: Vec<&str> = history.iter().filter_map(|m| m["data"].as_str()).collect();
    assert_eq!(data, ["alice's", "bob's"]);
    server.shutdown().await;

    // Idempotency survives a restart, still per publisher.
    let (server, base) = start_in(dir.path(), |_| {}).await;
    let alice = Api::new(&base).acting_as("alice");
    assert_eq!(publish_id(&alice, "room", "m-1", "after").await, (a, true));
    let (c, dup) = publish_id(
        &Api::new(&base).acting_as("carol"),
        "room",
        "m-1",
        "carol's",
    )
    .await;
    assert!(!dup);
    assert_ne!(c, b);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_holders_without_a_client_are_scoped_by_key() {
    let server = secured(|_| {}).await;
    let (admin, app) = (Api::admin(&server), Api::app(&server));
    let (first, dup) = publish_id(&admin, CHANNEL, "k-1", "admin's").await;
    assert!(!dup);
    let (second, dup) = publish_id(&app, CHANNEL, "k-1", "app's").await;
    assert!(!dup);
    assert_ne!(first, second);
    assert_eq!(
        publish_id(&app, CHANNEL, "k-1", "again").await,
        (second, true)
    );
    // A token of the app key acting for a client is that client, not the key.
    let user = Api::token(&server.base, &user_token(&server).await);
    assert!(!publish_id(&user, CHANNEL, "k-1", "user's").await.1);
    assert_eq!(app.history(CHANNEL).await.len(), 3);
    server.stop().await;
}
