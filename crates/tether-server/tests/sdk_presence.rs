//! Presence and ephemeral messages through the SDK against a real server:
//! enter, update, leave, the member set and its changes; presence kept
//! across a resumed connection and entered again after one that could
//! not be resumed; live-only messages to subscribers.

mod sdk_support;

use std::time::Duration;

use futures::StreamExt;
use sdk_support::{Harness, Proxy, WAIT, eventually, fast_options};
use serde_json::json;
use tether_client::{
    Client, ConnectionState, Event, NewMessage, PresenceAction, PresenceEvent, PresenceSubscription,
};

async fn next(changes: &mut PresenceSubscription) -> PresenceEvent {
    tokio::time::timeout(WAIT, changes.next())
        .await
        .expect("a presence change in time")
        .expect("the subscription stays open")
}

fn connection_id(client: &Client) -> String {
    match &*client.state().borrow() {
        ConnectionState::Connected { connection_id } => connection_id.clone(),
        other => panic!("not connected: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enter_update_leave_and_the_member_set() {
    let harness = Harness::start().await;
    let agent = Client::connect(&harness.url(), fast_options().client_id("agent"))
        .await
        .expect("agent connects");
    let watcher = Client::connect(&harness.url(), fast_options())
        .await
        .expect("watcher connects");
    let channel = "room:presence";
    agent
        .channel(channel)
        .expect("channel")
        .presence()
        .enter(json!({"role": "agent", "status": "idle"}))
        .await
        .expect("entered");

    let presence = watcher.channel(channel).expect("channel").presence();
    let mut changes = presence.subscribe().await.expect("watching");
    let first = next(&mut changes).await;
    assert_eq!(first.action, PresenceAction::Enter);
    assert!(first.from_sync, "the sync reports who was already there");
    assert_eq!(first.member.client_id.as_deref(), Some("agent"));
    assert_eq!(first.member.connection_id, connection_id(&agent));
    assert!(presence.is_synced());
    assert_eq!(presence.members().len(), 1);

    let agent_presence = agent.channel(channel).expect("channel").presence();
    agent_presence
        .update(json!({"role": "agent", "status": "thinking"}))
        .await
        .expect("updated");
    let update = next(&mut changes).await;
    assert_eq!(update.action, PresenceAction::Update);
    assert!(!update.from_sync);
    assert_eq!(update.member.data["status"], "thinking");
    assert_eq!(presence.members()[0].data["status"], "thinking");

    let third = Client::connect(&harness.url(), fast_options())
        .await
        .expect("connects");
    third
        .channel(channel)
        .expect("channel")
        .presence()
        .enter(json!({"role": "user"}))
        .await
        .expect("entered");
    let enter = next(&mut changes).await;
    assert_eq!(enter.action, PresenceAction::Enter);
    assert_eq!(enter.member.connection_id, connection_id(&third));
    assert_eq!(presence.members().len(), 2);
    // REST sees the same set.
    let fetched = presence.fetch().await.expect("fetched");
    assert_eq!(fetched.len(), 2);

    agent_presence.leave().await.expect("left");
    let leave = next(&mut changes).await;
    assert_eq!(leave.action, PresenceAction::Leave);
    assert_eq!(leave.member.client_id.as_deref(), Some("agent"));
    // Closing cleanly leaves at once.
    third.close().await;
    let gone = next(&mut changes).await;
    assert_eq!(gone.action, PresenceAction::Leave);
    assert!(presence.members().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_survives_a_resumed_connection_without_flicker() {
    let harness = Harness::start().await;
    let proxy = Proxy::start(harness.addr()).await;
    let agent = Client::connect(&proxy.url(), fast_options())
        .await
        .expect("agent connects");
    let before = connection_id(&agent);
    let channel = "room:resume";
    agent
        .channel(channel)
        .expect("channel")
        .presence()
        .enter(json!({"status": "streaming"}))
        .await
        .expect("entered");
    let watcher = Client::connect(&harness.url(), fast_options())
        .await
        .expect("watcher connects");
    let mut changes = watcher
        .channel(channel)
        .expect("channel")
        .presence()
        .subscribe()
        .await
        .expect("watching");
    assert_eq!(next(&mut changes).await.action, PresenceAction::Enter);

    for _ in 0..3 {
        proxy.cut();
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut state = agent.state();
        tokio::time::timeout(
            WAIT,
            state.wait_for(|s| matches!(s, ConnectionState::Connected { .. })),
        )
        .await
        .expect("reconnects in time")
        .expect("state");
        assert_eq!(connection_id(&agent), before, "resumed");
    }
    let quiet = tokio::time::timeout(Duration::from_millis(300), changes.next()).await;
    assert!(quiet.is_err(), "no leave or enter was seen: {quiet:?}");
    // And the member is still the same connection, with its data.
    let members = watcher
        .channel(channel)
        .expect("channel")
        .presence()
        .members();
    assert_eq!(members.len(), 1);
    assert_eq!(members[0].connection_id, before);
    assert_eq!(members[0].data["status"], "streaming");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_is_entered_again_on_a_connection_that_was_not_resumed() {
    let harness = Harness::start_with(|config| {
        config.resume_ttl_ms = 1;
        config.presence_grace_ms = 1;
    })
    .await;
    let proxy = Proxy::start(harness.addr()).await;
    let agent = Client::connect(&proxy.url(), fast_options())
        .await
        .expect("agent connects");
    let before = connection_id(&agent);
    let channel = "room:reenter";
    agent
        .channel(channel)
        .expect("channel")
        .presence()
        .enter(json!({"status": "idle"}))
        .await
        .expect("entered");
    let watcher = Client::connect(&harness.url(), fast_options())
        .await
        .expect("watcher connects");
    let presence = watcher.channel(channel).expect("channel").presence();
    let mut changes = presence.subscribe().await.expect("watching");
    assert_eq!(next(&mut changes).await.action, PresenceAction::Enter);

    proxy.cut();
    // The old connection leaves after the grace period, the new one enters:
    // in either order.
    let (mut leave, mut enter) = (next(&mut changes).await, next(&mut changes).await);
    if leave.action == PresenceAction::Enter {
        std::mem::swap(&mut leave, &mut enter);
    }
    assert_eq!(leave.action, PresenceAction::Leave);
    assert_eq!(leave.member.connection_id, before);
    assert_eq!(enter.action, PresenceAction::Enter);
    assert_ne!(enter.member.connection_id, before, "a new connection");
    assert_eq!(enter.member.data, json!({"status": "idle"}), "same data");
    eventually("one member", || presence.members().len() == 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ephemeral_messages_reach_live_subscribers_only() {
    let harness = Harness::start().await;
    let sender = Client::connect(&harness.url(), fast_options().client_id("alice"))
        .await
        .expect("connects");
    let receiver = Client::connect(&harness.url(), fast_options())
        .await
        .expect("connects");
    let channel = "room:typing";
    let to = sender.channel(channel).expect("channel");
    // Nobody listens yet: delivered to no one, and never later.
    to.publish_ephemeral(NewMessage {
        name: Some("typing".into()),
        data: json!("early"),
        ..NewMessage::default()
    })
    .await
    .expect("accepted");
    let from = receiver.channel(channel).expect("channel");
    let mut events = from
        .subscribe_with(tether_client::SubscribeOptions::default().rewind(10))
        .await
        .expect("subscribed");
    to.publish_ephemeral(NewMessage {
        name: Some("typing".into()),
        data: json!(true),
        ..NewMessage::default()
    })
    .await
    .expect("accepted");
    let event = tokio::time::timeout(WAIT, events.next())
        .await
        .expect("in time")
        .expect("open");
    let Event::Ephemeral(message) = event else {
        panic!("unexpected {event:?}");
    };
    assert_eq!(message.name.as_deref(), Some("typing"));
    assert_eq!(message.data, json!(true), "not the one sent before");
    assert_eq!(message.client_id.as_deref(), Some("alice"));
    assert!(from.view().is_empty(), "not folded into the view");
    let history = sdk_support::history(&harness.rest(), channel).await;
    assert!(history.is_empty(), "never stored");
}
