//! The SDK against a real server: pipelining, mutations and reads, errors,
//! offline queueing, connection state, continuity loss and cancellation.

mod sdk_support;

use std::time::Duration;

use futures::StreamExt;
use sdk_support::{Harness, WAIT, eventually, fast_options, history};
use serde_json::{Value, json};
use tether_client::{
    ChannelState, Client, ClientOptions, ConnectionState, Continuity, DeleteOp, Direction, Error,
    ErrorCode, Event, HistoryQuery, NewMessage, Serial, SubscribeOptions, UpdateOp,
};

fn text(data: &str) -> NewMessage {
    NewMessage {
        data: Value::String(data.to_owned()),
        ..NewMessage::default()
    }
}

async fn within<T>(what: &str, future: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, future)
        .await
        .unwrap_or_else(|_| panic!("timed out: {what}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_appends_keep_their_order() {
    let harness = Harness::start().await;
    let client = Client::connect(&harness.url(), ClientOptions::default())
        .await
        .expect("connects");
    let channel = client.channel("pipeline:1").expect("channel");
    let mut events = channel.subscribe().await.expect("subscribed");
    let created = channel.publish(text("")).await.expect("published");

    // Queue 500 appends without waiting; await their acks in reverse order
    // to show that call order, not await order, is what counts.
    let mut expected = String::new();
    let mut acks = Vec::new();
    for i in 0..500 {
        let fragment = format!("{i},");
        expected.push_str(&fragment);
        acks.push(channel.append(created.serial, fragment));
    }
    let mut versions = Vec::new();
    while let Some(ack) = acks.pop() {
        let ack = within("ack", ack).await.expect("acknowledged");
        assert_eq!(ack.serial, created.serial);
        versions.push(ack.version_serial);
    }
    versions.reverse();
    assert!(
        versions.windows(2).all(|w| w[0] < w[1]),
        "acks follow call order"
    );

    // The subscriber sees the create, then the fragments in order (the
    // server may roll several fragments up into one event).
    let mut fragments: Vec<String> = Vec::new();
    while fragments.concat().len() < expected.len() {
        let event = within("event", events.next()).await.expect("open");
        let Event::Message(message) = event else {
            panic!("unexpected {event:?}");
        };
        if message.version.serial != created.serial {
            fragments.push(message.data.as_str().unwrap_or_default().to_owned());
        }
    }
    assert_eq!(fragments.concat(), expected);
    let stored = channel.message(created.serial).await.expect("stored");
    assert_eq!(stored.data, Value::String(expected));
    assert_eq!(channel.view().get(created.serial), Some(&stored));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_update_delete_and_reads() {
    let harness = Harness::start().await;
    let client = Client::connect(&harness.url(), ClientOptions::default())
        .await
        .expect("connects");
    let channel = client.channel("chat:crud").expect("channel");

    let first = channel
        .publish(NewMessage {
            id: Some("m-1".into()),
            name: Some("prompt".into()),
            ..text("hello")
        })
        .await
        .expect("published");
    assert!(!first.duplicate);
    let again = channel
        .publish(NewMessage {
            id: Some("m-1".into()),
            ..text("hello")
        })
        .await
        .expect("published again");
    assert!(again.duplicate, "same id: not stored twice");
    assert_eq!(again.serial, first.serial);

    let updated = channel
        .update(
            first.serial,
            UpdateOp {
                data: Some(json!("hello, edited")),
                description: Some("typo".into()),
                ..UpdateOp::default()
            },
        )
        .await
        .expect("updated");
    assert!(updated.version_serial > first.serial);
    let deleted = channel
        .delete(first.serial, DeleteOp::default())
        .await
        .expect("deleted");
    let versions = channel.versions(first.serial).await.expect("versions");
    assert_eq!(versions.len(), 3, "create, update, delete");
    assert_eq!(versions[1].version.description.as_deref(), Some("typo"));
    assert_eq!(versions[2].version.serial, deleted.version_serial);
    assert_eq!(
        channel.message(first.serial).await.expect("tombstone").data,
        Value::Null
    );

    // Refusals carry the server's code.
    let err = channel
        .append(first.serial, "more")
        .await
        .expect_err("deleted messages refuse appends");
    assert_eq!(err.code(), Some(ErrorCode::MessageDeleted), "{err}");
    let missing: Serial = "1000000000000-0000000000000099".parse().expect("serial");
    let err = channel.message(missing).await.expect_err("no such message");
    assert_eq!(err.code(), Some(ErrorCode::MessageNotFound), "{err}");

    // History pages.
    for i in 0..24 {
        channel
            .publish(text(&format!("m{i}")))
            .await
            .expect("published");
    }
    let mut query = HistoryQuery::default()
        .limit(10)
        .direction(Direction::Forwards);
    let mut pages = 0;
    let mut seen = Vec::new();
    loop {
        let page = channel.history(&query).await.expect("page");
        pages += 1;
        seen.extend(page.messages.into_iter().map(|m| m.serial));
        match page.next {
            Some(next) => query = query.cursor(next),
            None => break,
        }
    }
    assert_eq!(seen.len(), 25);
    assert!(seen.windows(2).all(|w| w[0] < w[1]));
    assert!(pages >= 3);
    let newest = channel
        .history(&HistoryQuery::default().limit(1))
        .await
        .expect("page");
    assert_eq!(
        newest.messages[0].data,
        json!("m23"),
        "backwards by default"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_errors_are_clear() {
    let err = Client::connect("http://127.0.0.1:1", ClientOptions::default())
        .await
        .expect_err("nothing listens on port 1");
    assert!(matches!(err, Error::Connect { .. }), "{err:?}");
    assert!(err.to_string().contains("127.0.0.1:1"), "{err}");
    let err = Client::connect("ftp://example.invalid", ClientOptions::default())
        .await
        .expect_err("not http");
    assert!(matches!(err, Error::InvalidUrl { .. }), "{err:?}");
    let harness = Harness::start().await;
    let client = Client::connect(&harness.url(), ClientOptions::default())
        .await
        .expect("connects");
    assert!(matches!(
        client.channel("no spaces allowed"),
        Err(Error::InvalidChannel(_))
    ));
    let err = client
        .channel("chat:x")
        .expect("channel")
        .subscribe_with(SubscribeOptions::default().rewind(5000))
        .await
        .expect_err("rewind is capped");
    assert_eq!(err.code(), Some(ErrorCode::InvalidParameter), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operations_wait_for_the_connection_and_state_is_observable() {
    let mut harness = Harness::start().await;
    let client = Client::connect(&harness.url(), fast_options())
        .await
        .expect("connects");
    let mut state = client.state();
    assert!(matches!(
        *state.borrow_and_update(),
        ConnectionState::Connected { .. }
    ));
    let channel = client.channel("offline:1").expect("channel");
    let mut events = channel.subscribe().await.expect("subscribed");
    let mut channel_state = channel.state();
    assert_eq!(
        *channel_state.borrow_and_update(),
        ChannelState::Attached {
            continuity: Continuity::New
        }
    );

    // The position arrives just after the attach; resuming needs it.
    eventually("a position", || channel.position().is_some()).await;
    harness.stop().await;
    within(
        "disconnected",
        state.wait_for(|s| matches!(s, ConnectionState::Disconnected { .. })),
    )
    .await
    .expect("state");
    // Queued while the server is down, in order.
    let acks: Vec<_> = (0..5)
        .map(|i| channel.publish(text(&format!("queued {i}"))))
        .collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    harness.resume().await;
    within(
        "reconnected",
        state.wait_for(|s| matches!(s, ConnectionState::Connected { .. })),
    )
    .await
    .expect("state");
    let mut serials = Vec::new();
    for ack in acks {
        serials.push(within("ack", ack).await.expect("applied").serial);
    }
    assert!(serials.windows(2).all(|w| w[0] < w[1]), "sent in order");
    // Resumed from the position, not attached afresh.
    let resumed = tokio::time::timeout(
        WAIT,
        channel_state.wait_for(|s| {
            *s == ChannelState::Attached {
                continuity: Continuity::Resumed,
            }
        }),
    )
    .await
    .is_ok_and(|r| r.is_ok());
    let now = channel.state().borrow().clone();
    assert!(resumed, "not resumed: {now:?}");
    for (i, serial) in serials.iter().enumerate() {
        let event = within("event", events.next()).await.expect("open");
        let Event::Message(message) = event else {
            panic!("unexpected {event:?}");
        };
        assert_eq!(message.serial, *serial);
        assert_eq!(message.data, json!(format!("queued {i}")));
    }
    client.close().await;
    assert_eq!(*client.state().borrow(), ConnectionState::Closed);
    assert!(within("end", events.next()).await.is_none(), "stream ends");
    let err = channel.publish(text("late")).await.expect_err("closed");
    assert!(matches!(err, Error::Closed), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn continuity_loss_resets_the_view_and_says_so() {
    let harness = Harness::start().await;
    let client = Client::connect(&harness.url(), ClientOptions::default())
        .await
        .expect("connects");
    let channel = client.channel("lost:1").expect("channel");
    for i in 0..3 {
        channel
            .publish(text(&format!("m{i}")))
            .await
            .expect("published");
    }
    // A position from another epoch of the log cannot be served.
    let stale: Serial = "1000000000000-0000000000000002".parse().expect("serial");
    let mut events = channel
        .subscribe_with(SubscribeOptions::default().from(stale))
        .await
        .expect("attached anyway");
    assert_eq!(
        *channel.state().borrow(),
        ChannelState::Attached {
            continuity: Continuity::Lost
        }
    );
    let first = within("event", events.next()).await.expect("open");
    assert!(
        matches!(&first, Event::ContinuityLost(info) if info.code == 41000),
        "{first:?}"
    );
    let history = history(&harness.rest(), "lost:1").await;
    let wanted = history.len();
    eventually("the current state", || channel.view().len() == wanted).await;
    let view: Vec<_> = channel.view().messages().cloned().collect();
    assert_eq!(view, history);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_request_reaches_the_streaming_agent() {
    let harness = Harness::start().await;
    let agent = Client::connect(&harness.url(), ClientOptions::default())
        .await
        .expect("agent connects");
    let user = Client::connect(&harness.url(), ClientOptions::default())
        .await
        .expect("user connects");
    let channel = agent.channel("conversation:cancel").expect("channel");
    let mut response = channel
        .stream_response("response", json!({"role": "assistant"}))
        .await
        .expect("stream starts");
    response.append("Once upon").expect("queued");
    response.flush().await.expect("acknowledged");
    assert!(!response.is_cancelled());

    user.channel("conversation:cancel")
        .expect("channel")
        .request_cancel(response.serial())
        .await
        .expect("cancel published");
    within("cancel observed", response.cancelled()).await;
    assert!(response.is_cancelled());
    let serial = response.serial();
    let ack = response.finish().await.expect("marked cancelled");
    assert_eq!(ack.serial, serial);
    let stored = channel.message(serial).await.expect("stored");
    assert_eq!(stored.data, json!("Once upon"));
    assert_eq!(
        stored.extras.as_ref().and_then(|e| e.get("stream")),
        Some(&json!("cancelled"))
    );
    assert_eq!(
        stored.extras.as_ref().and_then(|e| e.get("role")),
        Some(&json!("assistant")),
        "the caller's extras are kept"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_response_is_marked_cancelled() {
    let harness = Harness::start().await;
    let client = Client::connect(&harness.url(), ClientOptions::default())
        .await
        .expect("connects");
    let channel = client.channel("conversation:dropped").expect("channel");
    let mut response = channel
        .stream_response("response", Value::Null)
        .await
        .expect("stream starts");
    response.append("partial").expect("queued");
    let serial = response.serial();
    drop(response);
    let rest = harness.rest();
    let mut status = None;
    for _ in 0..200 {
        let stored = rest
            .message("conversation:dropped", serial)
            .await
            .expect("stored");
        status = stored.extras.and_then(|e| e.get("stream").cloned());
        if status == Some(json!("cancelled")) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(status, Some(json!("cancelled")));
    assert!(matches!(
        channel.stream_response("response", json!([1])).await,
        Err(Error::InvalidArgument(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_are_paced_to_the_announced_rate_limit() {
    // The burst leaves room for scheduling jitter on a loaded machine: a
    // stall bunches frames in the socket, and the server's bucket refills
    // at most to the burst while they wait.
    let harness = Harness::start_with(|config| {
        config.publish_rate_per_sec = 1000;
        config.publish_burst = 300;
    })
    .await;
    let client = Client::connect(&harness.url(), ClientOptions::default())
        .await
        .expect("connects");
    let channel = client.channel("paced:1").expect("channel");
    let mut response = channel
        .stream_response("response", Value::Null)
        .await
        .expect("stream starts");
    let started = std::time::Instant::now();
    let mut expected = String::new();
    for i in 0..1500 {
        let token = format!("{i} ");
        expected.push_str(&token);
        response.append(&token).expect("no append refused");
    }
    let serial = response.serial();
    within("complete", response.complete())
        .await
        .expect("nothing was rate limited");
    // 1,500 operations against a bucket of 300 at 1,000/s cannot all go
    // out in less than 1.2 s unless the client ignored the limit.
    assert!(
        started.elapsed() >= std::time::Duration::from_millis(1100),
        "sent faster than announced: {:?}",
        started.elapsed()
    );
    let stored = channel.message(serial).await.expect("stored");
    assert_eq!(stored.data, Value::String(expected));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn synced_marks_the_end_of_the_catch_up_for_subscriptions_that_ask() {
    let harness = Harness::start().await;
    let client = Client::connect(&harness.url(), ClientOptions::default())
        .await
        .expect("connects");
    let channel = client.channel("synced:1").expect("channel");
    for word in ["a", "b", "c"] {
        channel.publish(text(word)).await.expect("published");
    }
    let mut events = channel
        .subscribe_with(SubscribeOptions::default().rewind(2).synced())
        .await
        .expect("subscribed");
    let mut caught_up = Vec::new();
    let position = loop {
        match within("catch-up", events.next()).await.expect("open") {
            Event::Message(message) => caught_up.push(message.data),
            Event::Synced { position } => break position,
            other => panic!("unexpected {other:?}"),
        }
    };
    assert_eq!(
        caught_up,
        [json!("b"), json!("c")],
        "the rewind, then synced"
    );
    assert!(position.is_some(), "a quiet channel still has a position");
    assert_eq!(position, channel.position());

    // A later subscription that asks is told at once; one that does not
    // ask never sees it.
    let mut late = channel
        .subscribe_with(SubscribeOptions::default().synced())
        .await
        .expect("subscribed");
    assert!(matches!(
        within("late synced", late.next()).await,
        Some(Event::Synced { .. })
    ));
    let mut plain = channel.subscribe().await.expect("subscribed");
    channel.publish(text("d")).await.expect("published");
    for events in [&mut events, &mut late, &mut plain] {
        let event = within("live event", events.next()).await.expect("open");
        assert!(
            matches!(&event, Event::Message(m) if m.data == json!("d")),
            "{event:?}"
        );
    }

    // After a reconnect the re-attach catches up again.
    client.reconnect();
    let event = within("synced again", events.next()).await.expect("open");
    assert!(matches!(event, Event::Synced { .. }), "{event:?}");
}
