//! The server's real encoders against the protocol's golden vectors: for
//! the inputs a vector shows, `ws_delivery`, `sse_delivery`, the error and
//! ack frames produce exactly that JSON. (The vectors are checked against
//! the protocol types in tether-protocol and against the TypeScript SDK.)

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::Value;
use tether_core::{ChannelName, ErrorInfo, Message, Serial};
use tether_engine::fanout::{EphemeralMessage, LiveEvent};
use tether_engine::presence::{Member, PresenceAction, PresenceEvent};
use tether_engine::subscription::EventRef;
use tether_engine::{Continuity, Delivery, EngineError};
use tether_protocol::sse;
use tether_server::protocol::{ack_frame, error_frame, sse_delivery, sse_error, ws_delivery};
use tether_store::{Ack, Committed};

fn examples(kind: &str, name: &str) -> Vec<Value> {
    let path: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tether-protocol/vectors/frames")
        .join(kind)
        .join(format!("{name}.json"));
    let text = std::fs::read_to_string(&path).expect("vector readable");
    serde_json::from_str(&text).expect("vector is a JSON array")
}

fn json(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).expect("the server encodes JSON")
}

fn text(value: &Value, key: &str) -> String {
    value[key].as_str().expect("a string field").to_owned()
}

fn opt_serial(value: &Value) -> Option<Serial> {
    value.as_str().map(|s| s.parse().expect("a serial"))
}

fn channel(value: &Value) -> ChannelName {
    ChannelName::new(text(value, "channel")).expect("valid channel")
}

fn member(value: &Value) -> Member {
    Member {
        client_id: value["client_id"].as_str().map(str::to_owned),
        connection_id: text(value, "connection_id"),
        data: value["data"].clone(),
        timestamp: value["timestamp"].as_u64().expect("timestamp"),
    }
}

fn action(value: &Value) -> PresenceAction {
    match value.as_str() {
        Some("enter") => PresenceAction::Enter,
        Some("update") => PresenceAction::Update,
        Some("leave") => PresenceAction::Leave,
        other => panic!("no presence action {other:?}"),
    }
}

fn ephemeral(value: &Value) -> EphemeralMessage {
    EphemeralMessage {
        id: text(value, "id"),
        name: value["name"].as_str().map(str::to_owned),
        data: value["data"].clone(),
        extras: value["extras"].as_object().cloned(),
        client_id: value["client_id"].as_str().map(str::to_owned),
        connection_id: value["connection_id"].as_str().map(str::to_owned),
        timestamp: value["timestamp"].as_u64().expect("timestamp"),
    }
}

fn attached(value: &Value) -> Delivery {
    let continuity = match value["continuity"].as_str() {
        Some("new") => Continuity::New,
        Some("resumed") => Continuity::Resumed,
        Some("lost") => Continuity::Lost,
        other => panic!("no continuity {other:?}"),
    };
    // The engine says why continuity was lost as a type; the vectors use
    // the wording of a position that was never issued.
    let error = (!value["error"].is_null()).then(|| {
        let wire = serde_json::from_value::<ErrorInfo>(value["error"].clone()).expect("error");
        assert_eq!(wire.kind(), Some(tether_core::ErrorCode::ContinuityLost));
        EngineError::ContinuityLost(tether_core::ContinuityLost::Unknown)
    });
    Delivery::Attached { continuity, error }
}

fn stored(message: &Value, position: Option<Serial>) -> Delivery {
    let message: Message = serde_json::from_value(message.clone()).expect("a message");
    Delivery::Event {
        event: EventRef::Stored(Arc::new(message)),
        position,
    }
}

fn presence_event(channel: &ChannelName, value: &Value) -> Delivery {
    Delivery::Presence(Arc::new(PresenceEvent {
        channel: channel.clone(),
        action: action(&value["action"]),
        member: member(&value["member"]),
        version: 1,
    }))
}

fn presence_sync(value: &Value) -> Delivery {
    Delivery::PresenceSync {
        members: value["members"]
            .as_array()
            .expect("members")
            .iter()
            .map(member)
            .collect(),
        complete: value["complete"].as_bool().expect("complete"),
    }
}

#[test]
fn websocket_deliveries_equal_the_vectors() {
    let mut checked = 0;
    for name in [
        "attached",
        "message",
        "synced",
        "presence-sync",
        "presence",
        "ephemeral",
    ] {
        for vector in examples("server", name) {
            let ch = channel(&vector);
            let req = vector["req"].as_u64();
            let delivery = match name {
                "attached" => attached(&vector),
                "message" => stored(&vector["message"], opt_serial(&vector["position"])),
                "synced" => Delivery::Synced {
                    position: opt_serial(&vector["position"]),
                },
                "presence-sync" => presence_sync(&vector),
                "presence" => presence_event(&ch, &vector),
                "ephemeral" => Delivery::Ephemeral(Arc::new(ephemeral(&vector["message"]))),
                _ => unreachable!(),
            };
            assert_eq!(json(&ws_delivery(&ch, req, &delivery)), vector, "{name}");
            checked += 1;
        }
    }
    assert!(checked >= 10);
}

#[test]
fn a_live_event_encodes_like_a_stored_one_and_once() {
    for vector in examples("server", "message") {
        let message: Message = serde_json::from_value(vector["message"].clone()).expect("message");
        let position = message.version.serial;
        let ch = channel(&vector);
        let live = Arc::new(LiveEvent::new(Arc::new(Committed {
            channel: ch.clone(),
            event: message.clone(),
        })));
        let delivery = Delivery::Event {
            event: EventRef::Live(live.clone()),
            position: Some(position),
        };
        let first = ws_delivery(&ch, None, &delivery);
        let mut expected = vector.clone();
        expected["position"] = Value::String(position.to_string());
        assert_eq!(json(&first), expected);
        // The second subscriber gets the cached bytes.
        let second = ws_delivery(&ch, None, &delivery);
        assert_eq!(first.as_ptr(), second.as_ptr(), "encoded once, shared");
        let sse_first = sse_delivery(&ch, &delivery);
        assert_eq!(sse_first.as_ptr(), sse_delivery(&ch, &delivery).as_ptr());
    }
}

#[test]
fn error_and_ack_frames_equal_the_vectors() {
    for vector in examples("server", "error") {
        let err = ErrorInfo {
            code: u32::try_from(vector["code"].as_u64().expect("code")).expect("u32"),
            message: text(&vector, "message"),
        };
        let frame = error_frame(vector["req"].as_u64(), vector["channel"].as_str(), &err);
        assert_eq!(json(&frame), vector);
    }
    for vector in examples("server", "ack") {
        let ack = Ack {
            serial: opt_serial(&vector["serial"]).expect("serial"),
            version_serial: opt_serial(&vector["version_serial"]).expect("version serial"),
            duplicate: vector["duplicate"].as_bool().expect("duplicate"),
        };
        assert_eq!(json(&ack_frame(vector["req"].as_u64(), &ack)), vector);
    }
}

#[test]
fn sse_deliveries_equal_the_vectors() {
    let ch = ChannelName::new("chat:1").expect("channel");
    let mut checked = 0;
    for name in sse::SseEvent::NAMES {
        for vector in examples("sse", name) {
            let data = &vector["data"];
            let id = opt_serial(&vector["id"]);
            let bytes = match name {
                "attached" => sse_delivery(&ch, &attached(data)),
                "message" => sse_delivery(&ch, &stored(data, id)),
                "synced" => sse_delivery(&ch, &Delivery::Synced { position: id }),
                "ephemeral" => sse_delivery(&ch, &Delivery::Ephemeral(Arc::new(ephemeral(data)))),
                "presence" => sse_delivery(&ch, &presence_event(&ch, data)),
                "presence-sync" => sse_delivery(&ch, &presence_sync(data)),
                "error" => sse_error(
                    &serde_json::from_value::<ErrorInfo>(data.clone()).expect("error info"),
                ),
                other => panic!("no SSE event {other}"),
            };
            let framed = String::from_utf8(bytes.to_vec()).expect("utf-8");
            let raw = sse::parse(&framed).expect("one event");
            assert_eq!(raw.name, name);
            assert_eq!(raw.id, vector["id"].as_str(), "{name}: id line");
            assert_eq!(&json(raw.data.as_bytes()), data, "{name}: data");
            checked += 1;
        }
    }
    assert!(checked >= 7);
}
