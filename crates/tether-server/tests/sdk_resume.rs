//! Connection resume through the SDK: the network fails (a proxy cuts the
//! TCP connections) while publishes, appends, updates and deletes are in
//! flight; the client resumes its connection and re-sends what was not
//! acknowledged with the original `seq`, and every operation is applied
//! exactly once. When the server no longer knows the connection, the
//! client carries on as a new one and re-attaches by position.

mod sdk_support;

use std::collections::HashMap;
use std::time::Duration;

use futures::StreamExt;
use sdk_support::{Harness, Proxy, WAIT, connection_id, fast_options, history, text};
use serde_json::{Value, json};
use tether_client::{AckFuture, Client, ConnectionState, DeleteOp, Error, Event, Serial, UpdateOp};

async fn within<T>(what: &str, future: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, future)
        .await
        .unwrap_or_else(|_| panic!("timed out: {what}"))
}

/// Waits until the client is connected again after a cut.
async fn reconnected(client: &Client) {
    let mut state = client.state();
    within(
        "reconnected",
        state.wait_for(|s| matches!(s, ConnectionState::Connected { .. })),
    )
    .await
    .expect("state");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operation_is_applied_exactly_once_across_network_failures() {
    let harness = Harness::start().await;
    let proxy = Proxy::start(harness.addr()).await;
    let client = Client::connect(&proxy.url(), fast_options())
        .await
        .expect("connects");
    let first_id = connection_id(&client).expect("connected");
    // The targets of appends and updates belong to another client, so no
    // client-side bookkeeping could have confirmed them: only the server's
    // exactly-once state can.
    let rest = harness.rest();
    let channel_name = "exactly:once";
    let appended = rest
        .publish(channel_name, &text(""))
        .await
        .expect("target")
        .serial;
    let updated = rest
        .publish(channel_name, &text("v0"))
        .await
        .expect("target")
        .serial;
    let channel = client.channel(channel_name).expect("channel");

    const ROUNDS: usize = 20;
    const PER_ROUND: usize = 25;
    let mut expected = String::new();
    let mut publishes: Vec<(String, AckFuture)> = Vec::new();
    let mut appends = Vec::new();
    let mut updates = Vec::new();
    let mut deletes = Vec::new();
    for round in 0..ROUNDS {
        for i in 0..PER_ROUND {
            let n = round * PER_ROUND + i;
            let data = format!("p{n}");
            publishes.push((data.clone(), channel.publish(text(&data))));
            let fragment = format!("a{n} ");
            expected.push_str(&fragment);
            appends.push(channel.append(appended, fragment));
            updates.push(channel.update(
                updated,
                UpdateOp {
                    data: Some(json!(format!("v{}", n + 1))),
                    ..UpdateOp::default()
                },
            ));
        }
        // Some frames reach the server, some acks come back, then the
        // network fails with more in flight both ways.
        tokio::time::sleep(Duration::from_millis(2)).await;
        proxy.cut();
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Deletes of messages created in this test, in flight at a cut too.
    for i in 0..10 {
        let serial = within("a publish", channel.publish(text(&format!("d{i}"))))
            .await
            .expect("published")
            .serial;
        deletes.push((serial, channel.delete(serial, DeleteOp::default())));
    }
    proxy.cut();

    let mut serials: HashMap<Serial, String> = HashMap::new();
    for (data, ack) in publishes {
        let ack = within("publish ack", ack).await.expect("published");
        assert!(
            serials.insert(ack.serial, data).is_none(),
            "two publishes acknowledged with one serial"
        );
    }
    let mut versions = Vec::new();
    for ack in appends.into_iter().chain(updates) {
        let ack = within("ack", ack).await.expect("applied, not in doubt");
        versions.push(ack.version_serial);
    }
    for (serial, ack) in deletes {
        let ack = within("delete ack", ack).await.expect("deleted once");
        assert_eq!(ack.serial, serial);
    }
    reconnected(&client).await;
    assert_eq!(
        connection_id(&client),
        Some(first_id),
        "every cut was resumed as the same connection"
    );

    // History: each publish once, each append once, each update once.
    let stored = history(&rest, channel_name).await;
    let published: Vec<_> = stored
        .iter()
        .filter(|m| m.data.as_str().is_some_and(|d| d.starts_with('p')))
        .collect();
    assert_eq!(published.len(), ROUNDS * PER_ROUND, "no publish twice");
    for message in published {
        assert_eq!(
            serials.get(&message.serial).map(String::as_str),
            message.data.as_str()
        );
    }
    let target = rest
        .message(channel_name, appended)
        .await
        .expect("appended");
    assert_eq!(
        target.data,
        Value::String(expected),
        "every append exactly once, in order"
    );
    let update_versions = rest
        .versions(channel_name, updated)
        .await
        .expect("versions");
    assert_eq!(
        update_versions.len(),
        1 + ROUNDS * PER_ROUND,
        "the create and each update once"
    );
    assert_eq!(
        update_versions.last().map(|m| m.data.clone()),
        Some(json!(format!("v{}", ROUNDS * PER_ROUND)))
    );
    versions.sort();
    versions.dedup();
    assert_eq!(versions.len(), 2 * ROUNDS * PER_ROUND, "distinct versions");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_continue_through_a_resumed_connection() {
    let harness = Harness::start().await;
    let proxy = Proxy::start(harness.addr()).await;
    let subscriber = Client::connect(&proxy.url(), fast_options())
        .await
        .expect("connects");
    let first_id = connection_id(&subscriber).expect("connected");
    let channel = subscriber.channel("resume:live").expect("channel");
    let mut events = channel.subscribe().await.expect("subscribed");
    let rest = harness.rest();
    let mut published = Vec::new();
    for i in 0..50 {
        let ack = rest
            .publish("resume:live", &text(&format!("m{i}")))
            .await
            .expect("published");
        published.push(ack.serial);
        if i % 10 == 5 {
            proxy.cut();
        }
    }
    for serial in &published {
        let event = within("event", events.next()).await.expect("open");
        let Event::Message(message) = event else {
            panic!("unexpected {event:?}");
        };
        assert_eq!(message.serial, *serial, "in order, no gap, no repeat");
    }
    reconnected(&subscriber).await;
    assert_eq!(connection_id(&subscriber), Some(first_id), "resumed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_resume_falls_back_to_a_new_connection() {
    // The server forgets a vanished connection almost at once.
    let harness = Harness::start_with(|config| config.resume_ttl_ms = 1).await;
    let proxy = Proxy::start(harness.addr()).await;
    let client = Client::connect(&proxy.url(), fast_options())
        .await
        .expect("connects");
    let first_id = connection_id(&client).expect("connected");
    let channel = client.channel("resume:refused").expect("channel");
    let mut events = channel.subscribe().await.expect("subscribed");
    let target = channel.publish(text("")).await.expect("published").serial;
    let first = within("event", events.next()).await.expect("open");
    assert!(matches!(first, Event::Message(ref m) if m.serial == target));
    sdk_support::eventually("a position", || channel.position().is_some()).await;

    // Operations in flight at the cut: publishes are re-sent (their id
    // makes that safe); an append either got its ack before the cut or
    // reports that its outcome is unknown; none is applied twice.
    let publishes: Vec<_> = (0..20)
        .map(|i| channel.publish(text(&format!("p{i}"))))
        .collect();
    let appends: Vec<_> = (0..20)
        .map(|i| (format!("{i},"), channel.append(target, format!("{i},"))))
        .collect();
    proxy.cut();
    tokio::time::sleep(Duration::from_millis(50)).await;
    for ack in publishes {
        within("publish", ack).await.expect("a publish is re-sent");
    }
    let mut acknowledged = String::new();
    let mut unknown = Vec::new();
    for (fragment, ack) in appends {
        match within("append", ack).await {
            Ok(_) => acknowledged.push_str(&fragment),
            Err(Error::OutcomeUnknown { operation, .. }) => {
                assert_eq!(operation, "append");
                unknown.push(fragment);
            }
            Err(other) => panic!("unexpected {other}"),
        }
    }
    reconnected(&client).await;
    assert_ne!(connection_id(&client), Some(first_id), "a new connection");
    let stored = harness
        .rest()
        .message("resume:refused", target)
        .await
        .expect("stored");
    let applied: Vec<&str> = stored
        .data
        .as_str()
        .expect("text")
        .split_terminator(',')
        .collect();
    let mut distinct = applied.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(
        distinct.len(),
        applied.len(),
        "no append twice: {applied:?}"
    );
    for fragment in acknowledged.split_terminator(',') {
        assert!(
            applied.contains(&fragment),
            "{fragment} acknowledged, applied"
        );
    }
    assert!(
        applied.len() - acknowledged.split_terminator(',').count() <= unknown.len(),
        "only those in doubt may have been applied without an ack"
    );
    let history = history(&harness.rest(), "resume:refused").await;
    assert_eq!(history.len(), 21, "each publish once");

    // The subscription re-attached by position: the next event follows.
    let after = channel.publish(text("after")).await.expect("published");
    loop {
        let event = within("event", events.next()).await.expect("open");
        if let Event::Message(message) = event
            && message.serial == after.serial
        {
            break;
        }
    }
    assert_eq!(channel.view().len(), 22);
}
