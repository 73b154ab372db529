//! Updates and deletes: every client converges on the latest version, a
//! reconnect never brings back stale content, and every version is kept.

mod support;

use serde_json::json;
use support::{TestServer, fold, view_json};
use tether_core::View;

const CHANNEL: &str = "conversation:edits";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_converge_on_updates_and_deletes() {
    let server = TestServer::start().await;
    let http = server.http();
    let mut alice = server.ws().await;
    let mut bob = server.ws().await;
    alice.attach(CHANNEL, json!({})).await;
    bob.attach(CHANNEL, json!({})).await;

    let first = alice
        .publish(
            CHANNEL,
            json!({"name": "chat", "data": "helo", "extras": {"role": "user", "lang": "en"}}),
        )
        .await;
    let second = alice
        .publish(CHANNEL, json!({"data": "to be deleted"}))
        .await;
    let s1 = first["serial"].as_str().expect("serial").to_owned();
    let s2 = second["serial"].as_str().expect("serial").to_owned();

    // Bob remembers his position now, before the edits.
    let mut bob_view = View::new();
    let mut bob_position = None;
    for _ in 0..2 {
        let frame = bob.recv_type("message").await;
        fold(&mut bob_view, &frame);
        bob_position = frame["position"].as_str().map(str::to_owned);
    }
    drop(bob);

    let req = alice
        .request(
            json!({"type": "update", "channel": CHANNEL, "serial": s1, "data": "hello",
            "extras": {"lang": null, "edited": true}, "description": "typo"}),
        )
        .await;
    let update_ack = alice.reply(req).await;
    assert_eq!(update_ack["type"], "ack", "{update_ack}");
    assert_eq!(update_ack["serial"], json!(s1));
    assert!(update_ack["version_serial"].as_str() > Some(s2.as_str()));
    let req = alice
        .request(json!({"type": "delete", "channel": CHANNEL, "serial": s2, "description": "spam"}))
        .await;
    assert_eq!(alice.reply(req).await["type"], "ack");

    // Alice's live view.
    let mut alice_view = View::new();
    for _ in 0..4 {
        let frame = alice.recv_type("message").await;
        fold(&mut alice_view, &frame);
    }

    // Bob reconnects from before the edits: he must end on the new versions.
    let mut bob = server.ws().await;
    let attached = bob
        .attach(CHANNEL, json!({"from": bob_position.expect("position")}))
        .await;
    assert_eq!(attached["continuity"], "resumed");
    for _ in 0..2 {
        let frame = bob.recv_type("message").await;
        assert_ne!(frame["message"]["data"], "helo", "stale content came back");
        fold(&mut bob_view, &frame);
    }

    // A fresh client with rewind sees the same.
    let mut carol = server.ws().await;
    carol.attach(CHANNEL, json!({"rewind": 10})).await;
    let mut carol_view = View::new();
    for _ in 0..2 {
        fold(&mut carol_view, &carol.recv_type("message").await);
    }

    let history = http.history(CHANNEL).await;
    assert_eq!(history.len(), 2, "a deleted message keeps its place");
    assert_eq!(history[0]["data"], "hello");
    assert_eq!(
        history[0]["extras"],
        json!({"role": "user", "edited": true})
    );
    assert_eq!(history[0]["version"]["description"], "typo");
    assert_eq!(history[1]["action"], "delete");
    assert_eq!(history[1]["data"], json!(null));
    for view in [&alice_view, &bob_view, &carol_view] {
        assert_eq!(view_json(view), history);
    }

    let (status, versions) = http
        .get(&format!("/channels/{CHANNEL}/messages/{s1}/versions"))
        .await;
    assert_eq!(status, 200);
    let versions = versions["versions"].as_array().expect("versions").clone();
    assert_eq!(versions.len(), 2);
    assert_eq!(versions[0]["data"], "helo");
    assert_eq!(versions[1]["data"], "hello");

    let (status, one) = http
        .get(&format!("/channels/{CHANNEL}/messages/{s2}"))
        .await;
    assert_eq!(status, 200);
    assert_eq!(one["action"], "delete");

    // Mutating a deleted message is refused.
    let req = alice
        .request(json!({"type": "update", "channel": CHANNEL, "serial": s2, "data": "back"}))
        .await;
    let refused = alice.reply(req).await;
    assert_eq!(refused["type"], "error");
    assert_eq!(refused["code"], 40900);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_mutations_and_history_pages() {
    let server = TestServer::start().await;
    let http = server.http();
    let (status, acks) = http
        .post(
            &format!("/channels/{CHANNEL}/messages"),
            json!([{"data": "a"}, {"data": "b"}, {"data": "c"}, {"data": ""}]),
        )
        .await;
    assert_eq!(status, 201, "{acks}");
    let results = acks["results"].as_array().expect("results").clone();
    assert_eq!(results.len(), 4);
    let last = results[3]["serial"].as_str().expect("serial").to_owned();

    let (status, ack) = http
        .post(
            &format!("/channels/{CHANNEL}/messages/{last}/append"),
            json!({"data": "streamed", "extras": {"stream": "complete"}}),
        )
        .await;
    assert_eq!(status, 200, "{ack}");
    let (status, _) = http
        .send(
            reqwest::Method::PATCH,
            &format!(
                "/channels/{CHANNEL}/messages/{}",
                results[0]["serial"].as_str().expect("s")
            ),
            json!({"data": "A"}),
        )
        .await;
    assert_eq!(status, 200);
    let (status, deleted) = http
        .send(
            reqwest::Method::DELETE,
            &format!(
                "/channels/{CHANNEL}/messages/{}",
                results[1]["serial"].as_str().expect("s")
            ),
            json!({}),
        )
        .await;
    assert_eq!(status, 200);

    // Backwards pages of two, following the cursor.
    let (_, page1) = http
        .get(&format!("/channels/{CHANNEL}/messages?limit=2"))
        .await;
    let msgs = page1["messages"].as_array().expect("messages");
    assert_eq!(msgs.len(), 2);
    assert_eq!(msgs[0]["data"], "streamed");
    assert_eq!(msgs[0]["extras"]["stream"], "complete");
    assert_eq!(msgs[1]["data"], "c");
    let cursor = page1["next"].as_str().expect("next cursor");
    let (_, page2) = http
        .get(&format!(
            "/channels/{CHANNEL}/messages?limit=2&cursor={cursor}"
        ))
        .await;
    let msgs = page2["messages"].as_array().expect("messages");
    assert_eq!(msgs.len(), 2);
    assert_eq!(msgs[0]["action"], "delete");
    assert_eq!(msgs[1]["data"], "A");

    // Bounded by serial.
    let start = results[1]["serial"].as_str().expect("s");
    let end = results[2]["serial"].as_str().expect("s");
    let (_, bounded) = http
        .get(&format!(
            "/channels/{CHANNEL}/messages?direction=forwards&start={start}&end={end}"
        ))
        .await;
    assert_eq!(bounded["messages"].as_array().map(Vec::len), Some(2));
    assert_eq!(bounded["next"], json!(null));

    let (status, info) = http.get(&format!("/channels/{CHANNEL}")).await;
    assert_eq!(status, 200);
    assert!(ack["version_serial"].as_str() < deleted["version_serial"].as_str());
    assert_eq!(info["position"], deleted["version_serial"]);
    server.stop().await;
}
