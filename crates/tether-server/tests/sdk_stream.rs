//! The SDK against a real server: a 1,000-append response streamed while
//! connections drop and the server restarts; the subscriber's folded view
//! must equal history, with no append lost or applied twice.

mod sdk_support;

use std::collections::HashSet;

use futures::StreamExt;
use sdk_support::{Harness, Proxy, WAIT, eventually, fast_options, history};
use serde_json::{Value, json};
use tether_client::{Client, Event, Message, Serial, Subscription};
use tokio::task::JoinHandle;

const APPENDS: usize = 1000;

/// Reads a subscription until the response `serial` is complete; returns
/// every version serial received for it, asserting none repeats, and the
/// subscription (which keeps the channel attached and its view alive).
fn collect(mut events: Subscription, serial: Serial) -> JoinHandle<(Vec<Serial>, Subscription)> {
    tokio::spawn(async move {
        let mut seen = HashSet::new();
        let mut versions = Vec::new();
        loop {
            let event = tokio::time::timeout(WAIT, events.next())
                .await
                .expect("an event before timeout")
                .expect("the subscription stays open");
            let Event::Message(message) = event else {
                panic!("unexpected event {event:?}");
            };
            if message.serial != serial {
                continue;
            }
            let version = message.version.serial;
            assert!(seen.insert(version), "version {version} delivered twice");
            if let Some(last) = versions.last() {
                assert!(version > *last, "out of order: {version} after {last}");
            }
            versions.push(version);
            if is_complete(&message) {
                return (versions, events);
            }
        }
    })
}

fn is_complete(message: &Message) -> bool {
    message.extras.as_ref().and_then(|e| e.get("stream")) == Some(&json!("complete"))
}

/// Streams APPENDS fragments, calling `disrupt(i)` every `every` appends.
async fn stream_with<F, Fut>(
    agent: &Client,
    channel: &str,
    every: usize,
    mut disrupt: F,
) -> (Serial, String)
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut response = agent
        .channel(channel)
        .expect("channel")
        .stream_response("response", json!({"role": "assistant"}))
        .await
        .expect("stream starts");
    let serial = response.serial();
    let mut expected = String::new();
    for i in 0..APPENDS {
        let token = format!("t{i} ");
        expected.push_str(&token);
        response.append(&token).expect("append queued");
        if i % every == every - 1 {
            disrupt(i).await;
        } else if i % 7 == 0 {
            tokio::task::yield_now().await;
        }
    }
    let ack = tokio::time::timeout(WAIT, response.complete())
        .await
        .expect("complete before timeout")
        .expect("complete");
    assert_eq!(ack.serial, serial);
    (serial, expected)
}

async fn assert_view_is_history(harness: &Harness, subscriber: &Client, channel: &str) {
    let history = history(&harness.rest(), channel).await;
    let view: Vec<Message> = subscriber
        .channel(channel)
        .expect("channel")
        .view()
        .messages()
        .cloned()
        .collect();
    assert_eq!(view, history, "the folded view equals history");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_appends_while_the_subscriber_keeps_reconnecting() {
    let harness = Harness::start().await;
    let channel = "conversation:drops";
    let agent = Client::connect(&harness.url(), fast_options())
        .await
        .expect("agent connects");
    // Every fragment as its own event, to check each is delivered once.
    let subscriber = Client::connect(&harness.url(), fast_options().rollup_ms(0))
        .await
        .expect("subscriber connects");
    let events = subscriber
        .channel(channel)
        .expect("channel")
        .subscribe()
        .await
        .expect("subscribed");

    // The response's serial is needed to filter events; it is the first
    // message on the channel, so collect from the first event.
    let collector_channel = subscriber.channel(channel).expect("channel");
    let (serial, expected, _events) = {
        let mut events = events;
        let agent_stream = stream_with(&agent, channel, 100, |_| {
            let subscriber = subscriber.clone();
            async move {
                // Resuming replays after the last position; a subscriber
                // that had not yet received the response's create would get
                // the response as one snapshot (correct, but then not every
                // fragment as its own event, which this test counts).
                let held = subscriber.channel(channel).expect("channel");
                eventually("the response's create", || {
                    held.with_view(|v| !v.is_empty())
                })
                .await;
                subscriber.reconnect();
                // Let the reconnect happen while appends keep flowing.
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
        });
        let first = async {
            let event = tokio::time::timeout(WAIT, events.next())
                .await
                .expect("first event")
                .expect("open");
            let Event::Message(message) = event else {
                panic!("unexpected {event:?}")
            };
            message.serial
        };
        let (first, (serial, expected)) = tokio::join!(first, agent_stream);
        assert_eq!(first, serial, "the response is the first message");
        let (versions, events) = collect(events, serial).await.expect("collector");
        // The create was seen above; every append and the final one here.
        assert_eq!(versions.len(), APPENDS + 1, "every version exactly once");
        (serial, expected, events)
    };
    let message = collector_channel
        .view()
        .get(serial)
        .cloned()
        .expect("the view holds the response");
    assert_eq!(message.data, Value::String(expected));
    assert!(is_complete(&message));
    assert_view_is_history(&harness, &subscriber, channel).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_appends_while_the_server_restarts() {
    let mut harness = Harness::start().await;
    let channel = "conversation:restarts";
    let agent = Client::connect(&harness.url(), fast_options())
        .await
        .expect("agent connects");
    let subscriber = Client::connect(&harness.url(), fast_options())
        .await
        .expect("subscriber connects");
    let sub_channel = subscriber.channel(channel).expect("channel");
    let mut events = sub_channel.subscribe().await.expect("subscribed");

    let restarts = tokio::sync::Mutex::new(&mut harness);
    let (serial, expected) = stream_with(&agent, channel, 250, |_| {
        let restarts = &restarts;
        async move {
            // Let part of what was queued reach the server first, so some
            // appends are in flight when it goes down.
            tokio::task::yield_now().await;
            restarts.lock().await.restart().await;
        }
    })
    .await;
    // Every append is acknowledged; now the subscriber must converge.
    let mut seen = HashSet::new();
    loop {
        let event = tokio::time::timeout(WAIT, events.next())
            .await
            .expect("events keep coming")
            .expect("open");
        let Event::Message(message) = event else {
            panic!("unexpected {event:?}");
        };
        assert!(
            seen.insert((message.serial, message.version.serial)),
            "duplicate delivery"
        );
        if message.serial == serial && is_complete(&message) {
            break;
        }
    }
    let stored = harness
        .rest()
        .message(channel, serial)
        .await
        .expect("stored");
    assert_eq!(
        stored.data,
        Value::String(expected.clone()),
        "no append lost or applied twice across restarts"
    );
    let held = sub_channel.view().get(serial).cloned().expect("in view");
    assert_eq!(held.data, Value::String(expected));
    assert_view_is_history(&harness, &subscriber, channel).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_appends_while_the_network_keeps_failing() {
    let harness = Harness::start().await;
    let proxy = Proxy::start(harness.addr()).await;
    let channel = "conversation:network";
    // Both sides go through the proxy, so both lose frames in flight: the
    // agent's appends (applied or not, acks lost) and the subscriber's events.
    let agent = Client::connect(&proxy.url(), fast_options())
        .await
        .expect("agent connects");
    let subscriber = Client::connect(&proxy.url(), fast_options())
        .await
        .expect("subscriber connects");
    let sub_channel = subscriber.channel(channel).expect("channel");
    let mut events = sub_channel.subscribe().await.expect("subscribed");
    let (serial, expected) = stream_with(&agent, channel, 50, |_| {
        let proxy = &proxy;
        async move {
            // Some appends reach the server, some acks come back, then the
            // network fails with more in flight; then the client reconnects.
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
            proxy.cut();
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await;
    let mut seen = HashSet::new();
    loop {
        let event = tokio::time::timeout(WAIT, events.next())
            .await
            .expect("events keep coming")
            .expect("open");
        let Event::Message(message) = event else {
            panic!("unexpected {event:?}");
        };
        assert!(
            seen.insert((message.serial, message.version.serial)),
            "duplicate delivery"
        );
        if message.serial == serial && is_complete(&message) {
            break;
        }
    }
    let stored = harness
        .rest()
        .message(channel, serial)
        .await
        .expect("stored");
    assert_eq!(
        stored.data,
        Value::String(expected),
        "no append lost or applied twice across network failures"
    );
    assert_view_is_history(&harness, &subscriber, channel).await;
}
