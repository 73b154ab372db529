//! Wire types: every JSON frame and body Tether sends or accepts, in one
//! place. Front doors decode into these, convert to core types, and encode
//! deliveries through the functions here; nothing else builds JSON frames.

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tether_core::{
    AppendOp, ChannelName, DeleteOp, ErrorCode, ErrorInfo, Message, NewMessage, Operation, Serial,
    UpdateOp,
};
use tether_store::Ack;

use crate::engine::{Delivery, subscription::EventRef};

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
        channel: String,
        message: NewMessage,
    },
    /// Append to a message.
    Append {
        #[serde(default)]
        req: Option<u64>,
        channel: String,
        serial: String,
        #[serde(flatten)]
        append: AppendOp,
    },
    /// Update a message.
    Update {
        #[serde(default)]
        req: Option<u64>,
        channel: String,
        serial: String,
        #[serde(flatten)]
        update: UpdateOp,
    },
    /// Delete a message.
    Delete {
        #[serde(default)]
        req: Option<u64>,
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
    /// Liveness check.
    Ping {
        #[serde(default)]
        req: Option<u64>,
    },
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
        ErrorInfo::new(code, format!("invalid frame: {err}"))
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

/// The operation a mutation frame asks for.
pub fn operation(frame: ClientFrame) -> Result<(String, Option<u64>, Operation), ErrorInfo> {
    Ok(match frame {
        ClientFrame::Publish {
            req,
            channel,
            message,
        } => (channel, req, Operation::Create(message)),
        ClientFrame::Append {
            req,
            channel,
            serial: s,
            append,
        } => (
            channel,
            req,
            Operation::Append {
                target: serial(&s)?,
                append,
            },
        ),
        ClientFrame::Update {
            req,
            channel,
            serial: s,
            update,
        } => (
            channel,
            req,
            Operation::Update {
                target: serial(&s)?,
                update,
            },
        ),
        ClientFrame::Delete {
            req,
            channel,
            serial: s,
            delete,
        } => (
            channel,
            req,
            Operation::Delete {
                target: serial(&s)?,
                delete,
            },
        ),
        _ => {
            return Err(ErrorInfo::new(ErrorCode::Internal, "not a mutation frame"));
        }
    })
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
}

/// A frame to a WebSocket client (except `message`, see [`ws_delivery`]).
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ServerFrame<'a> {
    /// First frame of a connection.
    Connected {
        protocol: u32,
        connection_id: &'a str,
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
                    live.ws_frame.get_or_init(build).clone()
                }
                _ => build(),
            }
        }
    }
}

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
        Delivery::Event { event, position } => {
            let build = || sse_frame("message", *position, &encode(event.message()));
            match event {
                EventRef::Live(live) if *position == Some(live.position()) => {
                    live.sse_frame.get_or_init(build).clone()
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

/// Extras as given over the wire (must be an object).
pub type Extras = Map<String, Value>;
