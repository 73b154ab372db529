//! The two frames every append produces, written by hand: the `message`
//! event each subscriber receives and the writer's `ack`.
//!
//! They are the same JSON as [`ServerFrame`](crate::ServerFrame)'s
//! `Serialize` (the tests compare both on random frames), without serde's
//! generic machinery: field names are literal bytes instead of escaped
//! strings, serials are copied from their fixed-width text, and the buffer
//! is sized once. Strings that come from clients still go through
//! serde_json's escaping.

use serde_json::Value;
use tether_core::{Action, Message, Serial};

/// `{"type":"message","channel":…,"position":…,"message":{…}}`.
pub fn message_frame(channel: &str, position: Option<Serial>, message: &Message) -> Vec<u8> {
    let text = message.data.as_str().map_or(0, str::len);
    let mut out = Vec::with_capacity(256 + channel.len() + message.id.len() + text);
    out.extend_from_slice(br#"{"type":"message","channel":"#);
    string(&mut out, channel);
    if let Some(position) = position {
        out.extend_from_slice(br#","position":"#);
        serial(&mut out, position);
    }
    out.extend_from_slice(br#","message":{"serial":"#);
    serial(&mut out, message.serial);
    out.extend_from_slice(br#","id":"#);
    string(&mut out, &message.id);
    if let Some(name) = &message.name {
        out.extend_from_slice(br#","name":"#);
        string(&mut out, name);
    }
    out.extend_from_slice(br#","data":"#);
    match &message.data {
        Value::String(text) => string(&mut out, text),
        other => json(&mut out, other),
    }
    if let Some(extras) = &message.extras {
        out.extend_from_slice(br#","extras":"#);
        json(&mut out, extras);
    }
    if let Some(client_id) = &message.client_id {
        out.extend_from_slice(br#","client_id":"#);
        string(&mut out, client_id);
    }
    if let Some(connection_id) = &message.connection_id {
        out.extend_from_slice(br#","connection_id":"#);
        string(&mut out, connection_id);
    }
    out.extend_from_slice(br#","timestamp":"#);
    number(&mut out, message.timestamp);
    out.extend_from_slice(match message.action {
        Action::Create => br#","action":"create""#.as_slice(),
        Action::Append => br#","action":"append""#.as_slice(),
        Action::Update => br#","action":"update""#.as_slice(),
        Action::Delete => br#","action":"delete""#.as_slice(),
    });
    let version = &message.version;
    out.extend_from_slice(br#","version":{"serial":"#);
    serial(&mut out, version.serial);
    out.extend_from_slice(br#","timestamp":"#);
    number(&mut out, version.timestamp);
    if let Some(client_id) = &version.client_id {
        out.extend_from_slice(br#","client_id":"#);
        string(&mut out, client_id);
    }
    if let Some(description) = &version.description {
        out.extend_from_slice(br#","description":"#);
        string(&mut out, description);
    }
    if let Some(metadata) = &version.metadata {
        out.extend_from_slice(br#","metadata":"#);
        json(&mut out, metadata);
    }
    out.extend_from_slice(b"}}}");
    out
}

/// `{"type":"ack","req":…,"serial":…,"version_serial":…,"duplicate":…}`.
pub fn ack_frame(
    req: Option<u64>,
    serial_: Serial,
    version_serial: Serial,
    duplicate: bool,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    out.extend_from_slice(br#"{"type":"ack""#);
    if let Some(req) = req {
        out.extend_from_slice(br#","req":"#);
        number(&mut out, req);
    }
    out.extend_from_slice(br#","serial":"#);
    serial(&mut out, serial_);
    out.extend_from_slice(br#","version_serial":"#);
    serial(&mut out, version_serial);
    out.extend_from_slice(if duplicate {
        br#","duplicate":true}"#.as_slice()
    } else {
        br#","duplicate":false}"#.as_slice()
    });
    out
}

/// A serial's text is digits and one `-`: nothing to escape.
fn serial(out: &mut Vec<u8>, serial: Serial) {
    out.push(b'"');
    out.extend_from_slice(serial.to_text().as_str().as_bytes());
    out.push(b'"');
}

fn number(out: &mut Vec<u8>, n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut n = n;
    loop {
        at -= 1;
        // `n % 10` is below 10.
        #[allow(clippy::cast_possible_truncation)]
        let d = (n % 10) as u8;
        digits[at] = b'0' + d;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

/// A JSON string, escaped by serde_json (writing to a `Vec` cannot fail).
fn string(out: &mut Vec<u8>, text: &str) {
    let _ = serde_json::to_writer(&mut *out, text);
}

/// Any JSON value (writing a `Value` or a string-keyed map to a `Vec`
/// cannot fail).
fn json<T: serde::Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) {
    let _ = serde_json::to_writer(&mut *out, value);
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::borrow::Cow;

    use proptest::prelude::*;
    use serde_json::{Map, json};
    use tether_core::Version;

    use super::*;
    use crate::ServerFrame;

    fn serial_in() -> impl Strategy<Value = Serial> {
        (0..=9_999_999_999_999u64, 0..=9_999_999_999_999_999u64)
            .prop_map(|(e, s)| Serial::new(e, s).unwrap())
    }

    fn value() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_map(|f| json!(f)),
            "\\PC{0,12}".prop_map(Value::from),
            Just(json!({"a": [1, "t\"wo\n", null], "é": {"c": true}})),
        ]
    }

    fn message() -> impl Strategy<Value = Message> {
        (
            (serial_in(), serial_in()),
            "\\PC{0,16}",
            proptest::option::of("\\PC{0,8}"),
            value(),
            proptest::option::of(Just(json!({"stream": "stream\"ing", "n": 1}))),
            (
                proptest::option::of("[a-z\"\\\\]{0,6}"),
                proptest::option::of("[a-z]{0,6}"),
            ),
            (any::<u64>(), any::<u64>()),
            0usize..4,
            (
                proptest::option::of("\\PC{0,6}"),
                proptest::option::of("\\PC{0,10}"),
                proptest::option::of(value()),
            ),
        )
            .prop_map(
                |(
                    (s, vs),
                    id,
                    name,
                    data,
                    extras,
                    (client_id, connection_id),
                    (ts, vts),
                    action,
                    (by, description, metadata),
                )| {
                    Message {
                        serial: s,
                        id,
                        name,
                        data,
                        extras: extras
                            .and_then(|e| e.as_object().cloned())
                            .map(|m: Map<String, Value>| m),
                        client_id,
                        connection_id,
                        timestamp: ts,
                        action: [
                            Action::Create,
                            Action::Append,
                            Action::Update,
                            Action::Delete,
                        ][action],
                        version: Version {
                            serial: vs,
                            timestamp: vts,
                            client_id: by,
                            description,
                            metadata,
                        },
                    }
                },
            )
    }

    proptest! {
        #[test]
        fn message_frames_are_what_serde_writes(
            channel in "\\PC{1,12}",
            position in proptest::option::of(serial_in()),
            m in message(),
        ) {
            let by_hand = message_frame(&channel, position, &m);
            let by_serde = serde_json::to_vec(&ServerFrame::Message {
                channel: Cow::Borrowed(&channel),
                position,
                message: Cow::Borrowed(&m),
            }).unwrap();
            prop_assert_eq!(String::from_utf8(by_hand).unwrap(), String::from_utf8(by_serde).unwrap());
        }

        #[test]
        fn ack_frames_are_what_serde_writes(
            req in proptest::option::of(any::<u64>()),
            s in serial_in(),
            v in serial_in(),
            duplicate in any::<bool>(),
        ) {
            let by_hand = ack_frame(req, s, v, duplicate);
            let by_serde = serde_json::to_vec(&ServerFrame::Ack {
                req,
                serial: s,
                version_serial: v,
                duplicate,
            }).unwrap();
            prop_assert_eq!(by_hand, by_serde);
        }
    }
}
