//! Wire types: every JSON frame and body Tether sends or accepts, in one
//! place. Front doors decode into these, convert to core types, and encode
//! deliveries through the functions here; nothing else builds JSON frames.

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tether_core::{
    AppendOp, ChannelName, DeleteOp, ErrorCode, ErrorInfo, Message, NewMessage, Operation, Serial,
    UpdateOp,
};
use tether_store::Ack;

use crate::engine::{Delivery, subscription::EventRef};
use crate::fanout::{CodecId, EphemeralMessage};
use crate::presence::{Member, PresenceEvent};

/// The protocol version in the `connected` frame.
pub const PROTOCOL_VERSION: u32 = 1;

/// Most messages a fresh attach may ask to rewind.
pub const MAX_REWIND: usize = 1000;

/// A frame from a WebSocket client.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum ClientFrame {
    /// Subscribe to a channel.
    Attach {
        #[serde(default)]
        req: Option<u64>,
        channel: String,
        #[serde(default)]
        from: Option<String>,
        #[serde(default)]
        rewind: Option<usize>,
        /// Also receive presence (needs `presence-subscribe`).
        #[serde(default)]
        presence: bool,
    },
    /// Stop a subscription.
    Detach {
        #[serde(default)]
        req: Option<u64>,
        channel: String,
    },
    /// Publish a new message.
    Publish {
        #[serde(default)]
        req: Option<u64>,
        /// Per-connection sequence number for exactly-once re-sends.
        #[serde(default)]
        seq: Option<u64>,
        channel: String,
        message: NewMessage,
        /// Deliver live only; never stored or replayed.
        #[serde(default)]
        ephemeral: bool,
    },
    /// Append to a message.
    Append {
        #[serde(default)]
        req: Option<u64>,
        #[serde(default)]
        seq: Option<u64>,
        channel: String,
        serial: String,
        #[serde(flatten)]
        append: AppendOp,
    },
    /// Update a message.
    Update {
        #[serde(default)]
        req: Option<u64>,
        #[serde(default)]
        seq: Option<u64>,
        channel: String,
        serial: String,
        #[serde(flatten)]
        update: UpdateOp,
    },
    /// Delete a message.
    Delete {
        #[serde(default)]
        req: Option<u64>,
        #[serde(default)]
        seq: Option<u64>,
        channel: String,
        serial: String,
        #[serde(flatten)]
        delete: DeleteOp,
    },
    /// Authenticate (first frame, when no credential came with the
    /// upgrade) or renew a token on a live connection.
    Auth {
        #[serde(default)]
        req: Option<u64>,
        #[serde(default)]
        token: Option<String>,
        #[serde(default)]
        key: Option<String>,
        #[serde(default)]
        client_id: Option<String>,
    },
    /// Enter, update or leave presence.
    Presence {
        #[serde(default)]
        req: Option<u64>,
        channel: String,
        action: PresenceVerb,
        #[serde(default)]
        data: Value,
    },
    /// Carry on as a connection that vanished (see docs/protocol.md).
    Resume {
        #[serde(default)]
        req: Option<u64>,
        connection_id: String,
        resume_key: String,
        /// Last position per channel, so each attachment continues exactly.
        #[serde(default)]
        positions: std::collections::HashMap<String, String>,
    },
    /// Liveness check.
    Ping {
        #[serde(default)]
        req: Option<u64>,
    },
}

impl ClientFrame {
    /// Whether the frame publishes or changes a message.
    pub fn is_mutation(&self) -> bool {
        matches!(
            self,
            ClientFrame::Publish { .. }
                | ClientFrame::Append { .. }
                | ClientFrame::Update { .. }
                | ClientFrame::Delete { .. }
        )
    }
}

/// A presence request's verb.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PresenceVerb {
    /// Join (or update if already present).
    Enter,
    /// Change data.
    Update,
    /// Leave.
    Leave,
}

/// A decoded mutation frame.
pub struct Mutation {
    /// The channel as given.
    pub channel: String,
    /// Echoed in the reply.
    pub req: Option<u64>,
    /// Per-connection sequence number, if the client uses them.
    pub seq: Option<u64>,
    /// What to do.
    pub op: Operation,
    /// Deliver live only.
    pub ephemeral: bool,
}

/// Reads the `req` of a frame that failed to decode, so the error reply can
/// still be matched to the request.
pub fn salvage_req(text: &str) -> Option<u64> {
    serde_json::from_str::<Value>(text)
        .ok()?
        .get("req")?
        .as_u64()
}

/// Decodes a client frame, with an error naming what is wrong.
pub fn decode_client_frame(text: &str) -> Result<ClientFrame, ErrorInfo> {
    serde_json::from_str(text).map_err(|err| {
        let unknown_type = err.to_string().contains("unknown variant");
        let code = if unknown_type {
            ErrorCode::UnknownFrameType
        } else {
            ErrorCode::BadRequest
        };
        ErrorInfo::new(
            code,
            format!(
                "invalid frame: {}",
                crate::http::wording::user_facing(&err.to_string())
            ),
        )
    })
}

/// Parses a channel name from a client.
pub fn channel(name: &str) -> Result<ChannelName, ErrorInfo> {
    ChannelName::new(name).map_err(|e| ErrorInfo::new(ErrorCode::InvalidChannelName, e.to_string()))
}

/// Parses a serial from a client.
pub fn serial(text: &str) -> Result<Serial, ErrorInfo> {
    text.parse().map_err(|e: tether_core::InvalidSerial| {
        ErrorInfo::new(ErrorCode::InvalidSerial, e.to_string())
    })
}

/// The mutation a frame asks for; `None` for other frames. A bad serial
/// is reported with the frame's `req`.
pub fn mutation(frame: ClientFrame) -> Option<Result<Mutation, (Option<u64>, ErrorInfo)>> {
    let (channel, req, seq, op, ephemeral) = match frame {
        ClientFrame::Publish {
            req,
            seq,
            channel,
            message,
            ephemeral,
        } => (channel, req, seq, Ok(Operation::Create(message)), ephemeral),
        ClientFrame::Append {
            req,
            seq,
            channel,
            serial: s,
            append,
        } => {
            let op = serial(&s).map(|target| Operation::Append { target, append });
            (channel, req, seq, op, false)
        }
        ClientFrame::Update {
            req,
            seq,
            channel,
            serial: s,
            update,
        } => {
            let op = serial(&s).map(|target| Operation::Update { target, update });
            (channel, req, seq, op, false)
        }
        ClientFrame::Delete {
            req,
            seq,
            channel,
            serial: s,
            delete,
        } => {
            let op = serial(&s).map(|target| Operation::Delete { target, delete });
            (channel, req, seq, op, false)
        }
        _ => return None,
    };
    Some(match op {
        Ok(op) => Ok(Mutation {
            channel,
            req,
            seq,
            op,
            ephemeral,
        }),
        Err(err) => Err((req, err)),
    })
}

/// A channel re-attached by a resume.
#[derive(Debug, Clone, Serialize)]
pub struct ResumedAttachment {
    /// The channel.
    pub channel: String,
    /// Where it continues from (`null`: fresh).
    pub position: Option<Serial>,
    /// Whether presence is delivered on it. `false` for a channel attached
    /// only because `positions` named it (the server does not know the
    /// options of an attach the old socket never processed), so a client
    /// that wants presence there attaches again with it.
    pub presence: bool,
}

/// Limits announced in the `connected` frame.
#[derive(Debug, Clone, Serialize)]
pub struct AnnouncedLimits {
    /// Largest frame accepted.
    pub max_frame_bytes: usize,
    /// Largest message (default namespace).
    pub max_message_bytes: usize,
    /// Most attached channels.
    pub max_channels: usize,
    /// Sustained mutations per second this connection's credential may
    /// send, over all its connections and REST requests together (one
    /// budget per credential, see `engine::rate`).
    pub publish_rate_per_sec: u32,
    /// Largest burst of mutations, shared the same way.
    pub publish_burst: u32,
}

/// A frame to a WebSocket client (except `message`, see [`ws_delivery`]).
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ServerFrame<'a> {
    /// First frame of a connection.
    Connected {
        protocol: u32,
        connection_id: &'a str,
        /// Present it with `connection_id` in a `resume` frame to carry on
        /// as this connection after a drop.
        resume_key: &'a str,
        resume_ttl_ms: u64,
        #[serde(skip_serializing_if = "Option::is_none")]
        client_id: Option<&'a str>,
        /// False when the connection must send an `auth` frame first.
        authenticated: bool,
        heartbeat_ms: u64,
        idle_timeout_ms: u64,
        limits: AnnouncedLimits,
    },
    /// A channel was detached.
    Detached {
        #[serde(skip_serializing_if = "Option::is_none")]
        req: Option<u64>,
        channel: &'a str,
    },
    /// A mutation was applied and is durable.
    Ack {
        #[serde(skip_serializing_if = "Option::is_none")]
        req: Option<u64>,
        serial: Serial,
        version_serial: Serial,
        duplicate: bool,
    },
    /// Something failed.
    Error {
        #[serde(skip_serializing_if = "Option::is_none")]
        req: Option<u64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        channel: Option<&'a str>,
        code: u32,
        message: &'a str,
    },
    /// A credential was accepted (first auth or renewal).
    Authorized {
        #[serde(skip_serializing_if = "Option::is_none")]
        req: Option<u64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        client_id: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        expires_at: Option<u64>,
    },
    /// Reply to a request with nothing else to say (presence, ephemeral).
    Ok {
        #[serde(skip_serializing_if = "Option::is_none")]
        req: Option<u64>,
    },
    /// A `resume` succeeded: this is now the old connection.
    Resumed {
        #[serde(skip_serializing_if = "Option::is_none")]
        req: Option<u64>,
        connection_id: &'a str,
        resume_key: &'a str,
        /// The channels re-attached, each with the position it continues from.
        attachments: Vec<ResumedAttachment>,
    },
    /// Reply to a ping.
    Pong {
        #[serde(skip_serializing_if = "Option::is_none")]
        req: Option<u64>,
    },
    /// The server is alive.
    Heartbeat,
}

impl ServerFrame<'_> {
    /// The frame as JSON text.
    pub fn encode(&self) -> Bytes {
        encode(self)
    }
}

/// An error frame.
pub fn error_frame(req: Option<u64>, channel: Option<&str>, err: &ErrorInfo) -> Bytes {
    ServerFrame::Error {
        req,
        channel,
        code: err.code,
        message: &err.message,
    }
    .encode()
}

/// An ack frame.
pub fn ack_frame(req: Option<u64>, ack: &Ack) -> Bytes {
    ServerFrame::Ack {
        req,
        serial: ack.serial,
        version_serial: ack.version_serial,
        duplicate: ack.duplicate,
    }
    .encode()
}

/// The JSON body of an acknowledgement over REST.
#[derive(Debug, Serialize, Deserialize)]
pub struct AckBody {
    /// The message's serial.
    pub serial: Serial,
    /// The operation's serial.
    pub version_serial: Serial,
    /// Whether this was a repeat of an idempotent publish.
    pub duplicate: bool,
}

impl From<Ack> for AckBody {
    fn from(ack: Ack) -> AckBody {
        AckBody {
            serial: ack.serial,
            version_serial: ack.version_serial,
            duplicate: ack.duplicate,
        }
    }
}

/// The `{"error": {...}}` body of a failed HTTP request.
#[derive(Debug, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorInfo,
}

#[derive(Serialize)]
struct MessageFrame<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    channel: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    position: Option<Serial>,
    message: &'a Message,
}

#[derive(Serialize)]
struct AttachedFrame<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    req: Option<u64>,
    channel: &'a str,
    continuity: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a ErrorInfo>,
}

#[derive(Serialize)]
struct EphemeralFrame<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    channel: &'a str,
    message: &'a EphemeralMessage,
}

#[derive(Serialize)]
struct PresenceFrame<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    channel: &'a str,
    #[serde(flatten)]
    event: &'a PresenceEvent,
}

#[derive(Serialize)]
struct PresenceSyncFrame<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    channel: &'a str,
    members: &'a [Member],
    complete: bool,
}

#[derive(Serialize)]
struct SyncedFrame<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    channel: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    position: Option<Serial>,
}

/// Encodes a delivery as a WebSocket frame. A live event whose position is
/// its own serial is encoded once and shared by every subscriber.
pub fn ws_delivery(channel: &ChannelName, req: Option<u64>, delivery: &Delivery) -> Bytes {
    match delivery {
        Delivery::Attached { continuity, error } => encode(&AttachedFrame {
            kind: "attached",
            req,
            channel: channel.as_str(),
            continuity: continuity.as_str(),
            error: error.as_ref(),
        }),
        Delivery::Synced { position } => encode(&SyncedFrame {
            kind: "synced",
            channel: channel.as_str(),
            position: *position,
        }),
        Delivery::Ephemeral(message) => encode(&EphemeralFrame {
            kind: "ephemeral",
            channel: channel.as_str(),
            message,
        }),
        Delivery::Presence(event) => encode(&PresenceFrame {
            kind: "presence",
            channel: channel.as_str(),
            event,
        }),
        Delivery::PresenceSync { members, complete } => encode(&PresenceSyncFrame {
            kind: "presence-sync",
            channel: channel.as_str(),
            members,
            complete: *complete,
        }),
        Delivery::Event { event, position } => {
            let build = || {
                encode(&MessageFrame {
                    kind: "message",
                    channel: channel.as_str(),
                    position: *position,
                    message: event.message(),
                })
            };
            match event {
                EventRef::Live(live) if *position == Some(live.position()) => {
                    live.encodings.get_or_init(WS_CODEC, build)
                }
                _ => build(),
            }
        }
    }
}

/// The cache slot of a live event's WebSocket `message` frame.
const WS_CODEC: CodecId = CodecId::new(0);
/// The cache slot of a live event's SSE `message` event.
const SSE_CODEC: CodecId = CodecId::new(1);

/// One Server-Sent Event: its `event:` name, optional `id:` and JSON data,
/// already framed.
pub fn sse_delivery(channel: &ChannelName, delivery: &Delivery) -> Bytes {
    match delivery {
        Delivery::Attached { continuity, error } => {
            let data = encode(&AttachedFrame {
                kind: "attached",
                req: None,
                channel: channel.as_str(),
                continuity: continuity.as_str(),
                error: error.as_ref(),
            });
            sse_frame("attached", None, &data)
        }
        Delivery::Synced { position } => sse_frame("synced", *position, b"{}"),
        Delivery::Ephemeral(message) => sse_frame("ephemeral", None, &encode(message.as_ref())),
        Delivery::Presence(event) => sse_frame("presence", None, &encode(event.as_ref())),
        Delivery::PresenceSync { members, complete } => sse_frame(
            "presence-sync",
            None,
            &encode(&serde_json::json!({ "members": members, "complete": complete })),
        ),
        Delivery::Event { event, position } => {
            let build = || sse_frame("message", *position, &encode(event.message()));
            match event {
                EventRef::Live(live) if *position == Some(live.position()) => {
                    live.encodings.get_or_init(SSE_CODEC, build)
                }
                _ => build(),
            }
        }
    }
}

fn sse_frame(event: &str, id: Option<Serial>, data: &[u8]) -> Bytes {
    // JSON encoded by serde_json never contains a raw newline, so one
    // `data:` line is enough.
    let mut out = Vec::with_capacity(data.len() + 64);
    if let Some(id) = id {
        out.extend_from_slice(format!("id: {id}\n").as_bytes());
    }
    out.extend_from_slice(format!("event: {event}\ndata: ").as_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(b"\n\n");
    Bytes::from(out)
}

fn encode<T: Serialize + ?Sized>(value: &T) -> Bytes {
    match serde_json::to_vec(value) {
        Ok(bytes) => Bytes::from(bytes),
        // Our frame types always serialize; keep the connection usable if
        // that ever changes.
        Err(err) => Bytes::from(format!(
            r#"{{"type":"error","code":{},"message":"encoding failed: {}"}}"#,
            ErrorCode::Internal.code(),
            err.to_string().replace('"', "'")
        )),
    }
}
