//! Credentials through the SDK against a server that requires them:
//! short-lived tokens renewed by the auth callback on the live connection
//! (no reconnect, the subscription goes on), a token refused at connect
//! renewed by the callback, and API keys for back ends (WebSocket and
//! REST, acting as a chosen client).

mod sdk_support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::StreamExt;
use sdk_support::{Harness, WAIT, connection_id, text};
use tether_client::{Client, ClientOptions, ConnectionState, ErrorCode, Event, Rest};
use tether_server::Config;
use tether_server::auth::{KeyConfig, TokenRequest, token};

const KEY: &str = "app";
const SECRET: &str = "sdk-auth-secret-0123456789";

fn with_key(config: &mut Config) {
    config.dev = false;
    config.keys.insert(
        KEY.into(),
        KeyConfig {
            secret: SECRET.into(),
            capabilities: tether_core::Capabilities::all(),
        },
    );
}

/// A token for `client_id` living `ttl_secs`, as a back end would mint it.
fn mint(client_id: &str, ttl_secs: u64) -> String {
    let key = KeyConfig {
        secret: SECRET.into(),
        capabilities: tether_core::Capabilities::all(),
    };
    let request = TokenRequest {
        client_id: Some(client_id.into()),
        capabilities: None,
        ttl_secs: Some(ttl_secs),
    };
    token::mint(KEY, &key, request).expect("minted").0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_lived_tokens_are_renewed_on_the_live_connection() {
    let harness = Harness::start_with(with_key).await;
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    // Three-second tokens: renewed about a second before each expires.
    let options = ClientOptions::default().auth_callback(move || {
        counted.fetch_add(1, Ordering::SeqCst);
        async { Ok::<_, String>(mint("user-1", 3)) }
    });
    let client = Client::connect(&harness.url(), options)
        .await
        .expect("connects with the callback's token");
    let first = connection_id(&client).expect("connected");
    let dropped = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut state = client.state();
    let seen = dropped.clone();
    tokio::spawn(async move {
        while state.changed().await.is_ok() {
            let connected = matches!(
                *state.borrow_and_update(),
                ConnectionState::Connected { .. }
            );
            if !connected {
                seen.store(true, Ordering::SeqCst);
            }
        }
    });
    let channel = client.channel("conversation:renew").expect("channel");
    let mut events = channel.subscribe().await.expect("subscribed");

    // Seven seconds: every token the connection started with has expired.
    let mut serials = Vec::new();
    for i in 0..14 {
        let ack = tokio::time::timeout(WAIT, channel.publish(text(&format!("m{i}"))))
            .await
            .expect("in time")
            .expect("the connection keeps working");
        serials.push(ack.serial);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    for serial in serials {
        let event = tokio::time::timeout(WAIT, events.next())
            .await
            .expect("in time")
            .expect("open");
        assert!(matches!(event, Event::Message(ref m) if m.serial == serial));
    }
    assert!(
        calls.load(Ordering::SeqCst) >= 3,
        "renewed: {} calls",
        calls.load(Ordering::SeqCst)
    );
    assert_eq!(
        connection_id(&client),
        Some(first),
        "renewed in place, not by reconnecting"
    );
    assert!(
        !dropped.load(Ordering::SeqCst),
        "the connection never dropped"
    );
    // REST shares the renewed credential.
    let page = channel
        .history(&tether_client::HistoryQuery::default())
        .await
        .expect("REST with the current token");
    assert_eq!(page.messages.len(), 14);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_token_is_replaced_through_the_callback() {
    let harness = Harness::start_with(with_key).await;
    let expired = mint("user-2", 1);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    // Without a callback the expired token is refused with its code.
    let err = Client::connect(
        &harness.url(),
        ClientOptions::default().token(expired.clone()),
    )
    .await
    .expect_err("expired");
    assert_eq!(err.code(), Some(ErrorCode::TokenExpired), "{err}");
    // With one, the client sees from the token's `exp` that it is spent,
    // asks the callback first and connects.
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let options = ClientOptions::default()
        .token(expired)
        .auth_callback(move || {
            counted.fetch_add(1, Ordering::SeqCst);
            async { Ok::<_, String>(mint("user-2", 60)) }
        });
    let client = Client::connect(&harness.url(), options)
        .await
        .expect("a fresh token from the callback");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    let ack = client
        .channel("conversation:u2")
        .expect("channel")
        .publish(text("hi"))
        .await
        .expect("published");
    let stored = harness
        .rest_with(ClientOptions::default().key(format!("{KEY}:{SECRET}")))
        .message("conversation:u2", ack.serial)
        .await
        .expect("stored");
    assert_eq!(stored.client_id.as_deref(), Some("user-2"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_keys_work_on_the_websocket_and_rest() {
    let harness = Harness::start_with(with_key).await;
    let err = Client::connect(&harness.url(), ClientOptions::default())
        .await
        .expect_err("no credential");
    assert_eq!(err.code(), Some(ErrorCode::Unauthorized), "{err}");
    let key = format!("{KEY}:{SECRET}");
    let client = Client::connect(
        &harness.url(),
        ClientOptions::default().key(key.clone()).client_id("bot-7"),
    )
    .await
    .expect("a key connects");
    let ack = client
        .channel("agents:1")
        .expect("channel")
        .publish(text("from the bot"))
        .await
        .expect("published");
    let rest = Rest::new(
        &harness.url(),
        &ClientOptions::default().key(key).client_id("bot-8"),
    )
    .expect("rest");
    let stored = rest.message("agents:1", ack.serial).await.expect("read");
    assert_eq!(stored.client_id.as_deref(), Some("bot-7"), "acts as asked");
    let again = rest
        .publish("agents:1", &text("over REST"))
        .await
        .expect("published over REST");
    let stored = rest.message("agents:1", again.serial).await.expect("read");
    assert_eq!(stored.client_id.as_deref(), Some("bot-8"));
    let wrong = Rest::new(
        &harness.url(),
        &ClientOptions::default().key(format!("{KEY}:wrong-secret-0000000000")),
    )
    .expect("rest");
    let err = wrong
        .message("agents:1", ack.serial)
        .await
        .expect_err("refused");
    assert_eq!(err.code(), Some(ErrorCode::Unauthorized), "{err}");
}
