//! The WebSocket frames this SDK sends and understands (protocol version 1,
//! see docs/protocol.md), and the frame-shaped public types (presence
//! members, ephemeral messages). The only place the SDK knows frame JSON:
//! the rest of the crate works with these types and `tether_core`'s, so
//! swapping this module for a shared protocol crate is mechanical.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tether_core::{ErrorInfo, Message, NewMessage, Operation, Serial};

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
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        presence: bool,
    },
    Detach {
        req: u64,
        channel: &'a str,
    },
    Publish {
        req: u64,
        #[serde(skip_serializing_if = "Option::is_none")]
        seq: Option<u64>,
        channel: &'a str,
        message: &'a NewMessage,
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        ephemeral: bool,
    },
    Append {
        req: u64,
        #[serde(skip_serializing_if = "Option::is_none")]
        seq: Option<u64>,
        channel: &'a str,
        serial: Serial,
        #[serde(flatten)]
        append: &'a tether_core::AppendOp,
    },
    Update {
        req: u64,
        #[serde(skip_serializing_if = "Option::is_none")]
        seq: Option<u64>,
        channel: &'a str,
        serial: Serial,
        #[serde(flatten)]
        update: &'a tether_core::UpdateOp,
    },
    Delete {
        req: u64,
        #[serde(skip_serializing_if = "Option::is_none")]
        seq: Option<u64>,
        channel: &'a str,
        serial: Serial,
        #[serde(flatten)]
        delete: &'a tether_core::DeleteOp,
    },
    Presence {
        req: u64,
        channel: &'a str,
        action: PresenceAction,
        #[serde(skip_serializing_if = "Value::is_null")]
        data: &'a Value,
    },
    Auth {
        req: u64,
        token: &'a str,
    },
    Resume {
        req: u64,
        connection_id: &'a str,
        resume_key: &'a str,
        positions: BTreeMap<&'a str, Serial>,
    },
}

impl<'a> Outgoing<'a> {
    /// The frame carrying `op`, with its exactly-once `seq`.
    pub(crate) fn operation(
        req: u64,
        seq: Option<u64>,
        channel: &'a str,
        op: &'a Operation,
    ) -> Outgoing<'a> {
        match op {
            Operation::Create(message) => Outgoing::Publish {
                req,
                seq,
                channel,
                message,
                ephemeral: false,
            },
            Operation::Append { target, append } => Outgoing::Append {
                req,
                seq,
                channel,
                serial: *target,
                append,
            },
            Operation::Update { target, update } => Outgoing::Update {
                req,
                seq,
                channel,
                serial: *target,
                update,
            },
            Operation::Delete { target, delete } => Outgoing::Delete {
                req,
                seq,
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
    /// Proves a later `resume` of this connection comes from us.
    #[serde(default)]
    pub(crate) resume_key: Option<String>,
    /// How long after a drop the connection can be resumed.
    #[serde(default)]
    pub(crate) resume_ttl_ms: Option<u64>,
    /// `false`: the server wants an `auth` frame first (the upgrade
    /// carried no credential).
    #[serde(default)]
    pub(crate) authenticated: Option<bool>,
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

/// A channel the server re-attached by itself after a `resume`.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct ResumedAttachment {
    pub(crate) channel: String,
    #[serde(default)]
    pub(crate) position: Option<Serial>,
    #[serde(default)]
    pub(crate) presence: bool,
}

/// What happened to a presence member.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PresenceAction {
    /// Joined the channel (or, as a request, join or update).
    Enter,
    /// Changed its data.
    Update,
    /// Left: explicitly, by closing, or after the server's grace period.
    Leave,
}

/// One member of a channel's presence set: one connection of one client
/// (a user on two devices is two members with the same `client_id`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Member {
    /// The client's identity, from its credential.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// The member's connection: what tells two members apart.
    pub connection_id: String,
    /// Free-form state, by convention `{"role": .., "status": ..}`.
    #[serde(default)]
    pub data: Value,
    /// When it entered or last updated (ms since the Unix epoch).
    #[serde(default)]
    pub timestamp: u64,
}

/// A live-only message (typing indicators, "calling a tool" ticks): no
/// serial, never stored, never replayed, so a subscriber that is
/// disconnected when it is sent never sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct EphemeralMessage {
    /// The publisher's id, or one the server generated.
    pub id: String,
    /// The event type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The payload.
    #[serde(default)]
    pub data: Value,
    /// Free-form object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extras: Option<Map<String, Value>>,
    /// The sender's identity, set by the server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// The sender's connection, set by the server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_id: Option<String>,
    /// Server time, ms since the Unix epoch.
    #[serde(default)]
    pub timestamp: u64,
}

/// A frame from the server. Unknown frame types are tolerated so an older
/// SDK keeps working against a newer server.
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
    Detached {
        #[serde(default)]
        req: Option<u64>,
    },
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
    /// Reply to a presence request or an ephemeral publish.
    Ok {
        #[serde(default)]
        req: Option<u64>,
    },
    /// A credential was accepted (here: a renewal).
    Authorized {
        #[serde(default)]
        req: Option<u64>,
        /// When the credential expires (seconds since the Unix epoch).
        #[serde(default)]
        expires_at: Option<u64>,
    },
    /// A `resume` succeeded: the socket is the old connection again.
    Resumed {
        #[serde(default)]
        req: Option<u64>,
        connection_id: String,
        resume_key: String,
        #[serde(default)]
        attachments: Vec<ResumedAttachment>,
    },
    #[serde(rename = "presence-sync")]
    PresenceSync {
        channel: String,
        #[serde(default)]
        members: Vec<Member>,
        #[serde(default)]
        complete: bool,
    },
    Presence {
        channel: String,
        action: PresenceAction,
        member: Member,
    },
    Ephemeral {
        channel: String,
        message: EphemeralMessage,
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

    /// The `req` this frame answers, if it is a reply.
    pub(crate) fn req(&self) -> Option<u64> {
        match self {
            Incoming::Attached { req, .. }
            | Incoming::Detached { req }
            | Incoming::Ack { req, .. }
            | Incoming::Error { req, .. }
            | Incoming::Ok { req }
            | Incoming::Authorized { req, .. }
            | Incoming::Resumed { req, .. } => *req,
            _ => None,
        }
    }
}

/// The body of `GET /channels/{channel}/presence`.
#[derive(Debug, Deserialize)]
pub(crate) struct MembersBody {
    pub(crate) members: Vec<Member>,
}

/// The `{"error": {...}}` body of a refused HTTP request (REST, and the
/// WebSocket upgrade).
#[derive(Debug, Deserialize)]
pub(crate) struct ErrorBody {
    pub(crate) error: ErrorInfo,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use tether_core::{AppendOp, NewMessage};

    fn serial(n: u64) -> Serial {
        Serial::new(1_764_151_200_000, n).expect("fits")
    }

    fn value(frame: &Outgoing<'_>) -> Value {
        serde_json::from_str(&frame.encode()).expect("json")
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
            value(&Outgoing::operation(4, Some(9), "chat:1", &append)),
            json!({"type":"append","req":4,"seq":9,"channel":"chat:1","serial":serial(7),"data":"Hel"})
        );
        let publish = Operation::Create(NewMessage {
            id: Some("m-1".into()),
            data: json!("hi"),
            ..NewMessage::default()
        });
        assert_eq!(
            value(&Outgoing::operation(3, None, "c", &publish)),
            json!({"type":"publish","req":3,"channel":"c","message":{"id":"m-1","data":"hi"}})
        );
        let attach = Outgoing::Attach {
            req: 1,
            channel: "c",
            from: None,
            rewind: Some(5),
            presence: false,
        };
        assert_eq!(
            attach.encode(),
            r#"{"type":"attach","req":1,"channel":"c","rewind":5}"#
        );
    }

    #[test]
    fn encodes_presence_ephemeral_auth_and_resume() {
        let data = json!({"status": "idle"});
        assert_eq!(
            value(&Outgoing::Presence {
                req: 2,
                channel: "c",
                action: PresenceAction::Enter,
                data: &data
            }),
            json!({"type":"presence","req":2,"channel":"c","action":"enter","data":{"status":"idle"}})
        );
        assert_eq!(
            value(&Outgoing::Presence {
                req: 3,
                channel: "c",
                action: PresenceAction::Leave,
                data: &Value::Null
            }),
            json!({"type":"presence","req":3,"channel":"c","action":"leave"})
        );
        let typing = NewMessage {
            name: Some("typing".into()),
            data: json!(true),
            ..NewMessage::default()
        };
        assert_eq!(
            value(&Outgoing::Publish {
                req: 4,
                seq: None,
                channel: "c",
                message: &typing,
                ephemeral: true
            }),
            json!({"type":"publish","req":4,"channel":"c","message":{"name":"typing","data":true},"ephemeral":true})
        );
        assert_eq!(
            value(&Outgoing::Auth { req: 5, token: "t" }),
            json!({"type":"auth","req":5,"token":"t"})
        );
        let positions = BTreeMap::from([("chat:1", serial(3))]);
        assert_eq!(
            value(&Outgoing::Resume {
                req: 1,
                connection_id: "c_1",
                resume_key: "k",
                positions
            }),
            json!({"type":"resume","req":1,"connection_id":"c_1","resume_key":"k","positions":{"chat:1":serial(3)}})
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
        let frame = Incoming::decode(r#"{"type":"surprise","channel":"c"}"#)
            .expect("unknown types are tolerated");
        assert!(matches!(frame, Incoming::Unknown));
        let frame = Incoming::decode(r#"{"type":"pong","req":5}"#).expect("decodes");
        assert!(matches!(frame, Incoming::Pong {}));
        let frame = Incoming::decode(
            r#"{"type":"connected","protocol":1,"connection_id":"c_1","resume_key":"k","resume_ttl_ms":120000,"heartbeat_ms":15000,"idle_timeout_ms":45000,"limits":{}}"#,
        )
        .expect("decodes");
        let Incoming::Connected(hello) = frame else {
            panic!("not connected: {frame:?}");
        };
        assert_eq!(hello.resume_key.as_deref(), Some("k"));
        assert_eq!(hello.resume_ttl_ms, Some(120_000));
        assert!(Incoming::decode(r#"{"type":"ack","req":1}"#).is_err());
    }

    #[test]
    fn decodes_resume_presence_ephemeral_and_auth_replies() {
        let frame = Incoming::decode(
            r#"{"type":"resumed","req":1,"connection_id":"c_1","resume_key":"k","attachments":[{"channel":"chat:1","position":null,"presence":true}]}"#,
        )
        .expect("decodes");
        assert_eq!(frame.req(), Some(1));
        let Incoming::Resumed { attachments, .. } = frame else {
            panic!("not resumed");
        };
        assert_eq!(attachments.len(), 1);
        assert!(attachments[0].presence && attachments[0].position.is_none());
        let frame = Incoming::decode(
            r#"{"type":"presence-sync","channel":"c","members":[{"client_id":"a","connection_id":"c_1","data":{"s":1},"timestamp":5}],"complete":true}"#,
        )
        .expect("decodes");
        assert!(
            matches!(frame, Incoming::PresenceSync { complete: true, ref members, .. } if members.len() == 1)
        );
        let frame = Incoming::decode(
            r#"{"type":"presence","channel":"c","action":"leave","member":{"connection_id":"c_2","data":null,"timestamp":6}}"#,
        )
        .expect("decodes");
        assert!(matches!(
            frame,
            Incoming::Presence {
                action: PresenceAction::Leave,
                ..
            }
        ));
        let frame = Incoming::decode(
            r#"{"type":"ephemeral","channel":"c","message":{"id":"e_1","name":"typing","data":true,"client_id":"alice","timestamp":7}}"#,
        )
        .expect("decodes");
        assert!(
            matches!(frame, Incoming::Ephemeral { ref message, .. } if message.name.as_deref() == Some("typing"))
        );
        let frame =
            Incoming::decode(r#"{"type":"authorized","req":9,"client_id":"a","expires_at":17}"#)
                .expect("decodes");
        assert!(matches!(
            frame,
            Incoming::Authorized {
                req: Some(9),
                expires_at: Some(17)
            }
        ));
        let frame = Incoming::decode(r#"{"type":"ok","req":8}"#).expect("decodes");
        assert_eq!(frame.req(), Some(8));
        let frame =
            Incoming::decode(r#"{"type":"detached","req":2,"channel":"c"}"#).expect("decodes");
        assert_eq!(frame.req(), Some(2));
    }
}
