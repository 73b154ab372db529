//! The WebSocket frames this SDK sends and understands (protocol version 1,
//! see docs/protocol.md). The only place the SDK knows frame JSON: the rest
//! of the crate works with these types and `tether_core`'s.

use serde::{Deserialize, Serialize};
use tether_core::{ErrorInfo, Message, Operation, Serial};

use crate::channel::Continuity;

/// A frame to the server.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub(crate) enum Outgoing<'a> {
    Attach {
        req: u64,
        channel: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        from: Option<Serial>,
        #[serde(skip_serializing_if = "Option::is_none")]
        rewind: Option<usize>,
    },
    Detach {
        req: u64,
        channel: &'a str,
    },
    Publish {
        req: u64,
        channel: &'a str,
        message: &'a tether_core::NewMessage,
    },
    Append {
        req: u64,
        channel: &'a str,
        serial: Serial,
        #[serde(flatten)]
        append: &'a tether_core::AppendOp,
    },
    Update {
        req: u64,
        channel: &'a str,
        serial: Serial,
        #[serde(flatten)]
        update: &'a tether_core::UpdateOp,
    },
    Delete {
        req: u64,
        channel: &'a str,
        serial: Serial,
        #[serde(flatten)]
        delete: &'a tether_core::DeleteOp,
    },
}

impl<'a> Outgoing<'a> {
    /// The frame carrying `op`.
    pub(crate) fn operation(req: u64, channel: &'a str, op: &'a Operation) -> Outgoing<'a> {
        match op {
            Operation::Create(message) => Outgoing::Publish {
                req,
                channel,
                message,
            },
            Operation::Append { target, append } => Outgoing::Append {
                req,
                channel,
                serial: *target,
                append,
            },
            Operation::Update { target, update } => Outgoing::Update {
                req,
                channel,
                serial: *target,
                update,
            },
            Operation::Delete { target, delete } => Outgoing::Delete {
                req,
                channel,
                serial: *target,
                delete,
            },
        }
    }

    /// The frame as JSON text. Our frames contain only strings, numbers and
    /// JSON values, which always serialize.
    pub(crate) fn encode(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// What the server announces in its first frame.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Hello {
    pub(crate) connection_id: String,
    #[serde(default)]
    pub(crate) heartbeat_ms: Option<u64>,
    #[serde(default)]
    pub(crate) idle_timeout_ms: Option<u64>,
    #[serde(default)]
    pub(crate) limits: Limits,
}

/// The `limits` of the `connected` frame that the SDK acts on.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
pub(crate) struct Limits {
    /// Mutations per second the connection may send on average.
    #[serde(default)]
    pub(crate) publish_rate_per_sec: Option<u32>,
    /// The largest burst of mutations.
    #[serde(default)]
    pub(crate) publish_burst: Option<u32>,
}

/// A frame from the server. Unknown frame types (presence, added later) are
/// tolerated so an older SDK keeps working against a newer server.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub(crate) enum Incoming {
    Connected(Hello),
    Attached {
        #[serde(default)]
        req: Option<u64>,
        channel: String,
        continuity: Continuity,
        #[serde(default)]
        error: Option<ErrorInfo>,
    },
    Synced {
        channel: String,
        #[serde(default)]
        position: Option<Serial>,
    },
    Message {
        channel: String,
        #[serde(default)]
        position: Option<Serial>,
        message: Box<Message>,
    },
    Detached {},
    Ack {
        #[serde(default)]
        req: Option<u64>,
        serial: Serial,
        version_serial: Serial,
        #[serde(default)]
        duplicate: bool,
    },
    Error {
        #[serde(default)]
        req: Option<u64>,
        #[serde(default)]
        channel: Option<String>,
        code: u32,
        message: String,
    },
    Pong {},
    Heartbeat,
    #[serde(other)]
    Unknown,
}

impl Incoming {
    /// Decodes a text frame; `Err` carries a short description for logs.
    pub(crate) fn decode(text: &str) -> Result<Incoming, String> {
        serde_json::from_str(text).map_err(|e| {
            let head: String = text.chars().take(200).collect();
            format!("{e} in frame {head}")
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use tether_core::{AppendOp, NewMessage};

    fn serial(n: u64) -> Serial {
        Serial::new(1_764_151_200_000, n).expect("fits")
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
        let text = Outgoing::operation(4, "chat:1", &append).encode();
        let value: serde_json::Value = serde_json::from_str(&text).expect("json");
        assert_eq!(
            value,
            json!({"type":"append","req":4,"channel":"chat:1","serial":serial(7),"data":"Hel"})
        );
        let publish = Operation::Create(NewMessage {
            id: Some("m-1".into()),
            data: json!("hi"),
            ..NewMessage::default()
        });
        let value: serde_json::Value =
            serde_json::from_str(&Outgoing::operation(3, "c", &publish).encode()).expect("json");
        assert_eq!(
            value,
            json!({"type":"publish","req":3,"channel":"c","message":{"id":"m-1","data":"hi"}})
        );
        let attach = Outgoing::Attach {
            req: 1,
            channel: "c",
            from: None,
            rewind: Some(5),
        };
        assert_eq!(
            attach.encode(),
            r#"{"type":"attach","req":1,"channel":"c","rewind":5}"#
        );
    }

    #[test]
    fn decodes_server_frames() {
        let frame = Incoming::decode(
            r#"{"type":"attached","req":1,"channel":"c","continuity":"lost","error":{"code":41000,"message":"gone"}}"#,
        )
        .expect("decodes");
        assert!(matches!(
            frame,
            Incoming::Attached {
                req: Some(1),
                continuity: Continuity::Lost,
                error: Some(_),
                ..
            }
        ));
        let frame = Incoming::decode(r#"{"type":"synced","channel":"c"}"#).expect("decodes");
        assert!(matches!(frame, Incoming::Synced { position: None, .. }));
        let frame = Incoming::decode(r#"{"type":"presence","channel":"c","members":[]}"#)
            .expect("unknown types are tolerated");
        assert!(matches!(frame, Incoming::Unknown));
        let frame = Incoming::decode(r#"{"type":"pong","req":5}"#).expect("decodes");
        assert!(matches!(frame, Incoming::Pong {}));
        let frame = Incoming::decode(
            r#"{"type":"connected","protocol":1,"connection_id":"c_1","heartbeat_ms":15000,"idle_timeout_ms":45000,"limits":{}}"#,
        )
        .expect("decodes");
        assert!(matches!(
            frame,
            Incoming::Connected(Hello {
                heartbeat_ms: Some(15000),
                ..
            })
        ));
        assert!(Incoming::decode(r#"{"type":"ack","req":1}"#).is_err());
    }
}
