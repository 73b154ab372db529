//! Presence, connection resume, interrupts and handoff, end to end.

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{Value, json};
use support::{TestServer, Ws};

/// Applies presence frames to a member set (by connection id).
fn apply_presence(
    set: &mut BTreeSet<String>,
    syncing: &mut Option<BTreeSet<String>>,
    frame: &Value,
) {
    match frame["type"].as_str() {
        Some("presence-sync") => {
            let page = syncing.get_or_insert_with(BTreeSet::new);
            for m in frame["members"].as_array().into_iter().flatten() {
                page.insert(m["connection_id"].as_str().unwrap_or_default().to_owned());
            }
            if frame["complete"] == true {
                *set = syncing.take().unwrap_or_default();
            }
        }
        Some("presence") => {
            let id = frame["member"]["connection_id"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            if frame["action"] == "leave" {
                set.remove(&id);
            } else {
                set.insert(id);
            }
        }
        _ => {}
    }
}

async fn enter(ws: &mut Ws, channel: &str, data: Value) {
    let req = ws
        .request(json!({"type": "presence", "channel": channel, "action": "enter", "data": data}))
        .await;
    let reply = ws.reply(req).await;
    assert_eq!(reply["type"], "ok", "{reply}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_sync_during_churn_converges() {
    let server = TestServer::start().await;
    let channel = "room:churn";
    // 100 stay, 100 come and go while an observer attaches.
    let mut stayers = Vec::new();
    for i in 0..100 {
        let mut ws = server.ws().await;
        enter(&mut ws, channel, json!({"n": i})).await;
        stayers.push(ws);
    }
    let churn_server = server.ws_url();
    let churn = tokio::spawn(async move {
        let mut kept = Vec::new();
        for i in 0..100 {
            let mut ws = Ws::connect(&churn_server).await;
            enter(&mut ws, "room:churn", json!({"churn": i})).await;
            if i % 2 == 0 {
                let req = ws
                    .request(
                        json!({"type": "presence", "channel": "room:churn", "action": "leave"}),
                    )
                    .await;
                ws.reply(req).await;
            }
            kept.push(ws);
        }
        kept
    });
    let mut observer = server.ws().await;
    let req = observer
        .request(json!({"type": "attach", "channel": channel, "presence": true}))
        .await;
    observer.reply(req).await;
    let kept = churn.await.expect("churn");
    // Settle: wait until REST shows the final count, then drain the observer.
    let expected = 150;
    let http = server.http();
    let mut server_set = BTreeSet::new();
    for _ in 0..100 {
        let (_, body) = http.get(&format!("/channels/{channel}/presence")).await;
        server_set = body["members"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|m| m["connection_id"].as_str().unwrap_or_default().to_owned())
            .collect();
        if server_set.len() == expected {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(server_set.len(), expected);
    let mut view = BTreeSet::new();
    let mut syncing = None;
    while let Some(frame) = observer.try_recv(Duration::from_millis(500)).await {
        apply_presence(&mut view, &mut syncing, &frame);
    }
    assert_eq!(view, server_set, "observer's presence equals the server's");
    drop((stayers, kept));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abrupt_disconnect_leaves_after_grace_unless_resumed() {
    let server = TestServer::start_with(|c| c.presence_grace_ms = 600).await;
    let channel = "room:grace";
    let mut observer = server.ws().await;
    let req = observer
        .request(json!({"type": "attach", "channel": channel, "presence": true}))
        .await;
    observer.reply(req).await;
    observer.recv_type("presence-sync").await;

    // A vanishes without closing: it leaves after the grace period.
    let mut a = server.ws().await;
    enter(&mut a, channel, json!({"role": "user"})).await;
    let a_id = a.connected["connection_id"].clone();
    assert_eq!(observer.recv_type("presence").await["action"], "enter");
    drop(a); // no close frame
    let leave = observer.recv_type("presence").await;
    assert_eq!(leave["action"], "leave");
    assert_eq!(leave["member"]["connection_id"], a_id);

    // B vanishes and resumes within the grace period: no leave at all.
    let mut b = server.ws().await;
    enter(&mut b, channel, json!({"role": "agent"})).await;
    assert_eq!(observer.recv_type("presence").await["action"], "enter");
    let b_id = b.connected["connection_id"]
        .as_str()
        .expect("id")
        .to_owned();
    let b_key = b.connected["resume_key"].as_str().expect("key").to_owned();
    drop(b);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut b2 = server.ws().await;
    let req = b2
        .request(json!({"type": "resume", "connection_id": b_id, "resume_key": b_key}))
        .await;
    let resumed = b2.reply(req).await;
    assert_eq!(resumed["type"], "resumed", "{resumed}");
    assert_eq!(resumed["connection_id"], json!(b_id));
    // Well past the grace period: still no presence event for B.
    while let Some(frame) = observer.try_recv(Duration::from_millis(1200)).await {
        assert_ne!(frame["type"], "presence", "no leave/enter flicker: {frame}");
    }
    let (_, body) = server
        .http()
        .get(&format!("/channels/{channel}/presence"))
        .await;
    let ids: Vec<&str> = body["members"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["connection_id"].as_str())
        .collect();
    assert_eq!(ids, vec![b_id.as_str()]);

    // A wrong key is refused with the documented code.
    let mut c = server.ws().await;
    let req = c
        .request(json!({"type": "resume", "connection_id": b_id, "resume_key": "nope"}))
        .await;
    assert_eq!(c.reply(req).await["code"], 41001);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resent_in_flight_appends_apply_exactly_once_in_order() {
    let server = TestServer::start().await;
    let channel = "conversation:resume";
    let mut agent = server.ws().await;
    let id = agent.connected["connection_id"]
        .as_str()
        .expect("id")
        .to_owned();
    let key = agent.connected["resume_key"]
        .as_str()
        .expect("key")
        .to_owned();
    let req = agent
        .request(json!({"type": "publish", "seq": 1, "channel": channel, "message": {"data": ""}}))
        .await;
    let serial = agent.reply(req).await["serial"]
        .as_str()
        .expect("serial")
        .to_owned();
    // 100 appends in flight; the socket dies before reading any ack.
    for i in 0..100u64 {
        agent
            .request(json!({"type": "append", "seq": i + 2, "channel": channel, "serial": serial, "data": format!("<{i}>")}))
            .await;
    }
    drop(agent);
    let mut again = server.ws().await;
    let req = again
        .request(json!({"type": "resume", "connection_id": id, "resume_key": key}))
        .await;
    assert_eq!(again.reply(req).await["type"], "resumed");
    // Re-send all of them with the same sequence numbers.
    let mut reqs = Vec::new();
    for i in 0..100u64 {
        reqs.push(
            again
                .request(json!({"type": "append", "seq": i + 2, "channel": channel, "serial": serial, "data": format!("<{i}>")}))
                .await,
        );
    }
    let mut versions = Vec::new();
    for req in reqs {
        let ack = again.reply(req).await;
        assert_eq!(ack["type"], "ack", "{ack}");
        versions.push(ack["version_serial"].as_str().expect("v").to_owned());
    }
    let mut sorted = versions.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted, versions, "acks carry increasing, distinct versions");
    let history = server.http().history(channel).await;
    let expected: String = (0..100).map(|i| format!("<{i}>")).collect();
    assert_eq!(
        history[0]["data"],
        json!(expected),
        "each append exactly once, in order"
    );
    // A new append continues the sequence.
    let req = again
        .request(json!({"type": "append", "seq": 102, "channel": channel, "serial": serial, "data": "!"}))
        .await;
    assert_eq!(again.reply(req).await["type"], "ack");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_stops_the_stream_and_late_joiners_see_it() {
    let server = TestServer::start().await;
    let channel = "conversation:cancel";
    let mut agent = server.ws().await;
    agent.attach(channel, json!({})).await;
    let ack = agent
        .publish(channel, json!({"name": "response", "data": "", "extras": {"role": "assistant", "stream": "streaming"}}))
        .await;
    let serial = ack["serial"].as_str().expect("serial").to_owned();
    for i in 0..10 {
        assert_eq!(
            agent.append(channel, &serial, &format!("t{i} ")).await["type"],
            "ack"
        );
    }
    let mut user = server.ws().await;
    let sent = std::time::Instant::now();
    let cancel = user
        .publish(
            channel,
            json!({"name": "cancel", "extras": {"target": serial}}),
        )
        .await;
    assert_eq!(cancel["type"], "ack");
    // The agent sees the cancel request on the channel...
    let seen = loop {
        let frame = agent.recv_type("message").await;
        if frame["message"]["name"] == "cancel" {
            break frame;
        }
    };
    assert_eq!(seen["message"]["extras"]["target"], json!(serial));
    assert!(
        sent.elapsed() < Duration::from_millis(500),
        "within milliseconds"
    );
    // ...and its next append is refused: the response was cancelled.
    let refused = loop {
        let reply = agent.append(channel, &serial, "late").await;
        if reply["type"] == "error" {
            break reply;
        }
    };
    assert_eq!(refused["code"], 40901);
    let mut late = server.ws().await;
    late.attach(channel, json!({"rewind": 10})).await;
    let first = late.recv_type("message").await;
    assert_eq!(first["message"]["extras"]["stream"], "cancelled");
    assert!(
        first["message"]["data"]
            .as_str()
            .is_some_and(|d| d.starts_with("t0 t1"))
    );
    // Cancelling a finished response changes nothing.
    let done = agent
        .publish(
            channel,
            json!({"data": "", "extras": {"stream": "streaming"}}),
        )
        .await;
    let done_serial = done["serial"].as_str().expect("serial").to_owned();
    let req = agent
        .request(json!({"type": "update", "channel": channel, "serial": done_serial, "extras": {"stream": "complete"}}))
        .await;
    assert_eq!(agent.reply(req).await["type"], "ack");
    user.publish(
        channel,
        json!({"name": "cancel", "extras": {"target": done_serial}}),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (_, message) = server
        .http()
        .get(&format!("/channels/{channel}/messages/{done_serial}"))
        .await;
    assert_eq!(message["extras"]["stream"], "complete");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ephemeral_messages_are_live_only() {
    let server = TestServer::start().await;
    let channel = "conversation:typing";
    let mut a = server.ws().await;
    a.attach(channel, json!({})).await;
    let mut b = server.ws().await;
    let req = b
        .request(json!({"type": "publish", "channel": channel, "ephemeral": true, "message": {"name": "typing", "data": true}}))
        .await;
    assert_eq!(b.reply(req).await["type"], "ok");
    let frame = a.recv_type("ephemeral").await;
    assert_eq!(frame["message"]["name"], "typing");
    assert!(frame["message"].get("serial").is_none());
    assert!(
        server.http().history(channel).await.is_empty(),
        "not stored"
    );
    let mut late = server.ws().await;
    late.attach(channel, json!({"rewind": 10})).await;
    assert!(
        late.try_recv(Duration::from_millis(300))
            .await
            .is_some_and(|f| f["type"] == "synced")
    );
    assert!(
        late.try_recv(Duration::from_millis(300)).await.is_none(),
        "not replayed"
    );
    server.stop().await;
}

/// A server with keys: `ops` may operate, `app` may not.
async fn secured() -> TestServer {
    use std::collections::HashMap;
    use tether_core::Capabilities;
    use tether_server::auth::KeyConfig;
    TestServer::start_with(|c| {
        c.dev = false;
        let user_caps: Capabilities = serde_json::from_value(json!({
            "conversation:*": ["subscribe", "publish", "history", "presence", "presence-subscribe",
                "message-update-own", "message-delete-own"]
        }))
        .expect("caps");
        c.keys = HashMap::from([
            (
                "app".to_owned(),
                KeyConfig {
                    secret: "app-secret-0123456789".into(),
                    capabilities: user_caps,
                },
            ),
            (
                "ops".to_owned(),
                KeyConfig {
                    secret: "ops-secret-0123456789".into(),
                    capabilities: Capabilities::all(),
                },
            ),
        ]);
    })
    .await
}

async fn connect_as(server: &TestServer, key: &str, client_id: &str) -> Ws {
    Ws::connect(&format!(
        "{}?key={key}&client_id={client_id}",
        server.ws_url()
    ))
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn human_handoff_with_user_agent_and_operator() {
    let server = secured().await;
    let channel = "conversation:help";
    let mut agent = connect_as(&server, "ops:ops-secret-0123456789", "agent-1").await;
    let mut user = connect_as(&server, "app:app-secret-0123456789", "user-1").await;
    let mut operator = connect_as(&server, "ops:ops-secret-0123456789", "operator-1").await;
    for ws in [&mut agent, &mut user, &mut operator] {
        let req = ws
            .request(json!({"type": "attach", "channel": channel, "presence": true}))
            .await;
        assert_eq!(ws.reply(req).await["type"], "attached");
    }
    enter(
        &mut agent,
        channel,
        json!({"role": "agent", "status": "idle"}),
    )
    .await;
    enter(&mut operator, channel, json!({"role": "operator"})).await;

    // The user cannot claim: claiming needs the operator capability.
    let req = user
        .request(json!({"type": "publish", "channel": channel, "message": {"name": "handoff", "extras": {"action": "claim"}}}))
        .await;
    assert_eq!(user.reply(req).await["code"], 40300);

    // The operator claims; the agent sees it and steps back.
    let claim = operator
        .publish(
            channel,
            json!({"name": "handoff", "extras": {"action": "claim"}}),
        )
        .await;
    assert_eq!(claim["type"], "ack");
    let seen = loop {
        let frame = agent.recv_type("message").await;
        if frame["message"]["name"] == "handoff" {
            break frame;
        }
    };
    assert_eq!(
        seen["message"]["client_id"], "operator-1",
        "identity set by the server"
    );
    assert_eq!(seen["message"]["extras"]["action"], "claim");
    let req = agent
        .request(json!({"type": "presence", "channel": channel, "action": "update", "data": {"role": "agent", "status": "handed-off"}}))
        .await;
    agent.reply(req).await;
    let status = loop {
        let frame = user.recv_type("presence").await;
        if frame["member"]["client_id"] == "agent-1" && frame["action"] == "update" {
            break frame;
        }
    };
    assert_eq!(status["member"]["data"]["status"], "handed-off");

    // The operator talks to the user on the same channel.
    operator
        .publish(
            channel,
            json!({"name": "chat", "data": "Hi, a human here."}),
        )
        .await;
    let reply = loop {
        let frame = user.recv_type("message").await;
        if frame["message"]["name"] == "chat" {
            break frame;
        }
    };
    assert_eq!(reply["message"]["client_id"], "operator-1");

    // And hands back.
    operator
        .publish(
            channel,
            json!({"name": "handoff", "extras": {"action": "release"}}),
        )
        .await;
    let release = loop {
        let frame = agent.recv_type("message").await;
        if frame["message"]["name"] == "handoff"
            && frame["message"]["extras"]["action"] == "release"
        {
            break frame;
        }
    };
    assert_eq!(release["message"]["client_id"], "operator-1");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_devices_of_one_user_stay_in_sync_through_a_drop() {
    let server = secured().await;
    let channel = "conversation:alice";
    let key = "app:app-secret-0123456789";
    let mut phone = connect_as(&server, key, "alice").await;
    let mut laptop = connect_as(&server, key, "alice").await;
    for ws in [&mut phone, &mut laptop] {
        let req = ws
            .request(json!({"type": "attach", "channel": channel, "presence": true}))
            .await;
        ws.reply(req).await;
        enter(ws, channel, json!({"device": "x"})).await;
    }
    let (_, body) = server
        .http()
        .client
        .get(format!(
            "{}/channels/{channel}/presence?key={key}",
            server.base
        ))
        .send()
        .await
        .map(|r| ((), r))
        .expect("presence");
    let body: Value = body.json().await.expect("json");
    let members = body["members"].as_array().expect("members");
    assert_eq!(members.len(), 2, "each device is a member");
    assert!(members.iter().all(|m| m["client_id"] == "alice"));

    let sent = phone
        .publish(channel, json!({"data": "from the phone"}))
        .await;
    let got = laptop.recv_type("message").await;
    assert_eq!(got["message"]["data"], "from the phone");
    let position = got["position"].as_str().expect("position").to_owned();
    assert_eq!(got["position"], sent["serial"]);

    // The laptop drops; the phone keeps talking; the laptop resumes.
    let id = laptop.connected["connection_id"]
        .as_str()
        .expect("id")
        .to_owned();
    let resume_key = laptop.connected["resume_key"]
        .as_str()
        .expect("key")
        .to_owned();
    drop(laptop);
    for i in 0..5 {
        phone
            .publish(channel, json!({"data": format!("while away {i}")}))
            .await;
    }
    let mut laptop = connect_as(&server, key, "alice").await;
    let req = laptop
        .request(
            json!({"type": "resume", "connection_id": id, "resume_key": resume_key,
            "positions": {channel: position}}),
        )
        .await;
    let resumed = laptop.reply(req).await;
    assert_eq!(resumed["type"], "resumed", "{resumed}");
    assert_eq!(resumed["attachments"][0]["position"], json!(position));
    let mut missed = Vec::new();
    while missed.len() < 5 {
        let frame = laptop.recv_type("message").await;
        missed.push(frame["message"]["data"].clone());
    }
    let expected: Vec<Value> = (0..5).map(|i| json!(format!("while away {i}"))).collect();
    assert_eq!(missed, expected, "exactly what it missed, in order");
    // Another identity cannot take the laptop's connection.
    let mut mallory = connect_as(&server, key, "mallory").await;
    let req = mallory
        .request(json!({"type": "resume", "connection_id": id, "resume_key": resume_key}))
        .await;
    assert_eq!(mallory.reply(req).await["code"], 41001);
    server.stop().await;
}
