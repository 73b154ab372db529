//! The adapter between the SDK and `tether-protocol`, the one definition of
//! the wire format: the frames the SDK builds from its own requests, the
//! tolerant decoding of server frames, and the conversions of the
//! frame-shaped protocol types into the SDK's owned public types. No frame
//! or body is declared here, so the SDK cannot drift from the server.

use std::collections::HashMap;

use serde_json::Value;
use tether_core::{ErrorInfo, Operation, Serial};
use tether_protocol::{AnnouncedLimits, ClientFrame, PresenceAction, PresenceVerb, ServerFrame};

/// What the SDK keeps of the server's `connected` frame: the protocol
/// frame is a variant, and the driver passes these fields around a
/// connection's lifetime.
#[derive(Debug, Clone)]
pub(crate) struct Hello {
    pub(crate) connection_id: String,
    /// Proves a later `resume` of this connection comes from us; `None`
    /// when the server offers no resume (an empty key).
    pub(crate) resume_key: Option<String>,
    /// How long after a drop the connection can be resumed.
    pub(crate) resume_ttl_ms: u64,
    pub(crate) heartbeat_ms: u64,
    pub(crate) idle_timeout_ms: u64,
    /// What the server enforces; the driver paces mutations by it.
    pub(crate) limits: AnnouncedLimits,
}

/// The outcome of reading the first frame of a connection.
#[derive(Debug)]
pub(crate) enum Opening {
    /// `connected`, with a credential the server accepted.
    Ready(Hello),
    /// `connected`, but the server waits for an `auth` frame first.
    NeedsCredential,
    /// The server refused the connection with an `error` frame.
    Refused(ErrorInfo),
    /// Anything else: not how a connection starts.
    Unexpected,
}

impl Opening {
    /// Sorts the first frame of a connection.
    pub(crate) fn of(frame: ServerFrame<'static>) -> Opening {
        match frame {
            ServerFrame::Connected {
                authenticated: false,
                ..
            } => Opening::NeedsCredential,
            ServerFrame::Connected {
                connection_id,
                resume_key,
                resume_ttl_ms,
                heartbeat_ms,
                idle_timeout_ms,
                limits,
                ..
            } => Opening::Ready(Hello {
                connection_id: connection_id.into_owned(),
                resume_key: Some(resume_key.into_owned()).filter(|key| !key.is_empty()),
                resume_ttl_ms,
                heartbeat_ms,
                idle_timeout_ms,
                limits,
            }),
            ServerFrame::Error { code, message, .. } => Opening::Refused(ErrorInfo {
                code,
                message: message.into_owned(),
            }),
            _ => Opening::Unexpected,
        }
    }
}

/// Decodes a text frame from the server. `Ok(None)` is a frame type this
/// SDK does not know, tolerated so an older SDK keeps working against a
/// newer server; `Err` carries a short description for logs.
pub(crate) fn decode(text: &str) -> Result<Option<ServerFrame<'static>>, String> {
    match ServerFrame::decode(text) {
        Ok(frame) => Ok(Some(frame)),
        Err(err) => {
            let unknown_type = serde_json::from_str::<Value>(text)
                .ok()
                .and_then(|value| value.get("type")?.as_str().map(str::to_owned))
                .is_some_and(|kind| !ServerFrame::TYPES.contains(&kind.as_str()));
            if unknown_type {
                return Ok(None);
            }
            let head: String = text.chars().take(200).collect();
            Err(format!("{err} in frame {head}"))
        }
    }
}

/// The frame carrying `op` on `channel`, with its exactly-once `seq`.
pub(crate) fn operation(req: u64, seq: Option<u64>, channel: &str, op: &Operation) -> ClientFrame {
    let (req, channel) = (Some(req), channel.to_owned());
    match op {
        Operation::Create(message) => ClientFrame::Publish {
            req,
            seq,
            channel,
            message: message.clone(),
            ephemeral: false,
        },
        Operation::Append { target, append } => ClientFrame::Append {
            req,
            seq,
            channel,
            serial: target.to_string(),
            append: append.clone(),
        },
        Operation::Update { target, update } => ClientFrame::Update {
            req,
            seq,
            channel,
            serial: target.to_string(),
            update: update.clone(),
        },
        Operation::Delete { target, delete } => ClientFrame::Delete {
            req,
            seq,
            channel,
            serial: target.to_string(),
            delete: delete.clone(),
        },
    }
}

/// The verb of a presence request for the SDK's [`PresenceAction`] (the
/// SDK's API names requests and changes alike).
pub(crate) fn verb(action: PresenceAction) -> PresenceVerb {
    match action {
        PresenceAction::Enter => PresenceVerb::Enter,
        PresenceAction::Update => PresenceVerb::Update,
        PresenceAction::Leave => PresenceVerb::Leave,
    }
}

/// The `positions` of a `resume` frame: serials as the protocol writes them.
pub(crate) fn positions<'a>(
    positions: impl IntoIterator<Item = (&'a str, Serial)>,
) -> HashMap<String, String> {
    positions
        .into_iter()
        .map(|(channel, serial)| (channel.to_owned(), serial.to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use tether_core::{AppendOp, NewMessage};

    fn serial(n: u64) -> Serial {
        Serial::new(1_764_151_200_000, n).expect("fits")
    }

    fn value(frame: &ClientFrame) -> Value {
        serde_json::from_str(&frame.to_json()).expect("json")
    }

    #[test]
    fn encodes_operations_as_the_protocol_says() {
        let append = Operation::Append {
            target: serial(7),
            append: AppendOp {
                data: "Hel".into(),
                name: None,
                extras: None,
            },
        };
        assert_eq!(
            value(&operation(4, Some(9), "chat:1", &append)),
            json!({"type":"append","req":4,"seq":9,"channel":"chat:1","serial":serial(7),"data":"Hel"})
        );
        let publish = Operation::Create(NewMessage {
            id: Some("m-1".into()),
            data: json!("hi"),
            ..NewMessage::default()
        });
        assert_eq!(
            value(&operation(3, None, "c", &publish)),
            json!({"type":"publish","req":3,"channel":"c","message":{"id":"m-1","data":"hi"}})
        );
        let resume = ClientFrame::Resume {
            req: Some(1),
            connection_id: "c_1".into(),
            resume_key: "k".into(),
            positions: positions([("chat:1", serial(3))]),
        };
        assert_eq!(
            value(&resume),
            json!({"type":"resume","req":1,"connection_id":"c_1","resume_key":"k","positions":{"chat:1":serial(3)}})
        );
        assert_eq!(verb(PresenceAction::Update), PresenceVerb::Update);
    }

    #[test]
    fn tolerates_unknown_frame_types_but_not_broken_known_ones() {
        let frame = decode(r#"{"type":"surprise","channel":"c"}"#);
        assert!(matches!(frame, Ok(None)), "{frame:?}");
        assert!(decode(r#"{"type":"ack","req":1}"#).is_err());
        assert!(decode("not json").is_err());
        let frame = decode(r#"{"type":"synced","channel":"c"}"#).expect("decodes");
        assert!(matches!(
            frame,
            Some(ServerFrame::Synced { position: None, .. })
        ));
    }

    #[test]
    fn protocol_members_and_ephemeral_messages_become_the_sdks() {
        let frame = decode(
            r#"{"type":"presence-sync","channel":"c","members":[{"client_id":"a","connection_id":"c_1","data":{"s":1},"timestamp":5}],"complete":true}"#,
        );
        let Ok(Some(ServerFrame::PresenceSync { mut members, .. })) = frame else {
            panic!("not a sync: {frame:?}");
        };
        let member = crate::Member::from(members.remove(0));
        assert_eq!(member.client_id.as_deref(), Some("a"));
        assert_eq!(member.connection_id, "c_1");
        assert_eq!((member.data, member.timestamp), (json!({"s": 1}), 5));
        let frame = decode(
            r#"{"type":"ephemeral","channel":"c","message":{"id":"e_1","name":"typing","data":true,"extras":{"k":1},"client_id":"alice","connection_id":"c_2","timestamp":7}}"#,
        );
        let Ok(Some(ServerFrame::Ephemeral { message, .. })) = frame else {
            panic!("not ephemeral: {frame:?}");
        };
        let message = crate::EphemeralMessage::from(message);
        assert_eq!(
            serde_json::to_value(&message).expect("json"),
            json!({"id":"e_1","name":"typing","data":true,"extras":{"k":1},"client_id":"alice","connection_id":"c_2","timestamp":7})
        );
    }

    #[test]
    fn reads_the_connected_frame() {
        let connected = |authenticated: bool, key: &str| {
            let text =
                json!({"type":"connected","protocol":1,"connection_id":"c_1","resume_key":key,
                "resume_ttl_ms":120000,"authenticated":authenticated,"heartbeat_ms":15000,
                "idle_timeout_ms":45000,"limits":{"max_frame_bytes":1,"max_message_bytes":1,
                "max_channels":1,"publish_rate_per_sec":10,"publish_burst":20}})
                .to_string();
            Opening::of(decode(&text).expect("decodes").expect("known"))
        };
        let Opening::Ready(hello) = connected(true, "k") else {
            panic!("not ready");
        };
        assert_eq!(hello.resume_key.as_deref(), Some("k"));
        assert_eq!(hello.resume_ttl_ms, 120_000);
        assert_eq!(hello.limits.publish_burst, 20);
        let Opening::Ready(hello) = connected(true, "") else {
            panic!("not ready");
        };
        assert!(hello.resume_key.is_none(), "no key: no resume");
        assert!(matches!(connected(false, "k"), Opening::NeedsCredential));
        let error = decode(r#"{"type":"error","code":40100,"message":"no"}"#)
            .expect("decodes")
            .expect("known");
        assert!(matches!(
            Opening::of(error),
            Opening::Refused(ErrorInfo { code: 40100, .. })
        ));
        let pong = decode(r#"{"type":"pong"}"#)
            .expect("decodes")
            .expect("known");
        assert!(matches!(Opening::of(pong), Opening::Unexpected));
    }
}
