//! The server's side of the wire: the adapter from engine types
//! ([`Delivery`], [`EventRef`], [`EphemeralMessage`], [`Member`],
//! [`PresenceEvent`], [`Ack`]) to the wire types of `tether-protocol`, and
//! their encoding. The wire types themselves, and the decoding of client
//! input, live in that crate (re-exported here); nothing else in the
//! server builds JSON frames.
//!
//! Every frame built here borrows from the engine's records, so encoding a
//! delivery copies nothing but the bytes it writes; a live event's frame is
//! encoded once and shared by every subscriber.

use std::borrow::Cow;

use bytes::Bytes;
use serde::Serialize;
use tether_core::{ChannelName, ErrorCode, ErrorInfo};
use tether_store::Ack;

use crate::engine::{Continuity, Delivery, subscription::EventRef};
use crate::fanout::{CodecId, EphemeralMessage};
use crate::presence::{Member, PresenceAction, PresenceEvent};

pub use tether_protocol::rest::AckBody;
pub use tether_protocol::{
    AnnouncedLimits, ClientFrame, ErrorBody, MAX_REWIND, Mutation, PROTOCOL_VERSION, PresenceVerb,
    ResumedAttachment, ServerFrame, channel, decode_client_frame, mutation, salvage_req, serial,
};
use tether_protocol::{SseEvent, presence::PresenceSync, server::Continuity as WireContinuity};

/// Encoding a server frame into the bytes a WebSocket text frame carries.
pub trait EncodeFrame {
    /// The frame as JSON text.
    fn encode(&self) -> Bytes;
}

impl EncodeFrame for ServerFrame<'_> {
    fn encode(&self) -> Bytes {
        encode(self)
    }
}

/// An error frame.
pub fn error_frame(req: Option<u64>, channel: Option<&str>, err: &ErrorInfo) -> Bytes {
    ServerFrame::Error {
        req,
        channel: channel.map(Cow::Borrowed),
        code: err.code,
        message: Cow::Borrowed(&err.message),
    }
    .encode()
}

/// An ack frame.
pub fn ack_frame(req: Option<u64>, ack: &Ack) -> Bytes {
    Bytes::from(tether_protocol::hot::ack_frame(
        req,
        ack.serial,
        ack.version_serial,
        ack.duplicate,
    ))
}

/// The REST body of an acknowledgement.
pub fn ack_body(ack: Ack) -> AckBody {
    AckBody {
        serial: ack.serial,
        version_serial: ack.version_serial,
        duplicate: ack.duplicate,
    }
}

/// A presence member on the wire, borrowing the engine's record.
pub fn wire_member(member: &Member) -> tether_protocol::Member<'_> {
    tether_protocol::Member {
        client_id: member.client_id.as_deref().map(Cow::Borrowed),
        connection_id: Cow::Borrowed(&member.connection_id),
        data: Cow::Borrowed(&member.data),
        timestamp: member.timestamp,
    }
}

fn wire_members(members: &[Member]) -> Vec<tether_protocol::Member<'_>> {
    members.iter().map(wire_member).collect()
}

fn wire_action(action: PresenceAction) -> tether_protocol::PresenceAction {
    match action {
        PresenceAction::Enter => tether_protocol::PresenceAction::Enter,
        PresenceAction::Update => tether_protocol::PresenceAction::Update,
        PresenceAction::Leave => tether_protocol::PresenceAction::Leave,
    }
}

fn wire_change(event: &PresenceEvent) -> tether_protocol::PresenceChange<'_> {
    tether_protocol::PresenceChange {
        action: wire_action(event.action),
        member: wire_member(&event.member),
    }
}

fn wire_ephemeral(message: &EphemeralMessage) -> tether_protocol::EphemeralMessage<'_> {
    tether_protocol::EphemeralMessage {
        id: Cow::Borrowed(&message.id),
        name: message.name.as_deref().map(Cow::Borrowed),
        data: Cow::Borrowed(&message.data),
        extras: message.extras.as_ref().map(Cow::Borrowed),
        client_id: message.client_id.as_deref().map(Cow::Borrowed),
        connection_id: message.connection_id.as_deref().map(Cow::Borrowed),
        timestamp: message.timestamp,
    }
}

fn wire_continuity(continuity: Continuity) -> WireContinuity {
    match continuity {
        Continuity::New => WireContinuity::New,
        Continuity::Resumed => WireContinuity::Resumed,
        Continuity::Lost => WireContinuity::Lost,
    }
}

/// Encodes a delivery as a WebSocket frame. A live event whose position is
/// its own serial is encoded once and shared by every subscriber.
pub fn ws_delivery(channel: &ChannelName, req: Option<u64>, delivery: &Delivery) -> Bytes {
    let name = Cow::Borrowed(channel.as_str());
    match delivery {
        Delivery::Attached { continuity, error } => ServerFrame::Attached {
            req,
            channel: name,
            continuity: wire_continuity(*continuity),
            error: error.clone().map(|e| Cow::Owned(ErrorInfo::from(e))),
        }
        .encode(),
        Delivery::Synced { position } => ServerFrame::Synced {
            channel: name,
            position: *position,
        }
        .encode(),
        Delivery::Ephemeral(message) => ServerFrame::Ephemeral {
            channel: name,
            message: wire_ephemeral(message),
        }
        .encode(),
        Delivery::Presence(event) => ServerFrame::Presence {
            channel: name,
            action: wire_action(event.action),
            member: wire_member(&event.member),
        }
        .encode(),
        Delivery::PresenceSync { members, complete } => ServerFrame::PresenceSync {
            channel: name,
            members: wire_members(members),
            complete: *complete,
        }
        .encode(),
        Delivery::Event { event, position } => {
            // The frame of every append: written by hand (the same JSON as
            // `ServerFrame::Message`, see `tether_protocol::hot`).
            let build = || {
                Bytes::from(tether_protocol::hot::message_frame(
                    channel.as_str(),
                    *position,
                    event.message(),
                ))
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
        Delivery::Attached { continuity, error } => sse(&SseEvent::Attached {
            channel: Cow::Borrowed(channel.as_str()),
            continuity: wire_continuity(*continuity),
            error: error.clone().map(|e| Cow::Owned(ErrorInfo::from(e))),
        }),
        Delivery::Synced { position } => sse(&SseEvent::Synced { id: *position }),
        Delivery::Ephemeral(message) => sse(&SseEvent::Ephemeral(wire_ephemeral(message))),
        Delivery::Presence(event) => sse(&SseEvent::Presence(wire_change(event))),
        Delivery::PresenceSync { members, complete } => {
            sse(&SseEvent::PresenceSync(PresenceSync {
                members: wire_members(members),
                complete: *complete,
            }))
        }
        Delivery::Event { event, position } => {
            let build = || {
                sse(&SseEvent::Message {
                    id: *position,
                    message: Cow::Borrowed(event.message()),
                })
            };
            match event {
                EventRef::Live(live) if *position == Some(live.position()) => {
                    live.encodings.get_or_init(SSE_CODEC, build)
                }
                _ => build(),
            }
        }
    }
}

/// The SSE `error` event that ends a stream.
pub fn sse_error(err: &ErrorInfo) -> Bytes {
    sse(&SseEvent::Error(Cow::Borrowed(err)))
}

fn sse(event: &SseEvent<'_>) -> Bytes {
    match event.encode() {
        Ok(bytes) => Bytes::from(bytes),
        // As for WebSocket frames: never happens, but end the stream
        // readably if it ever does.
        Err(err) => Bytes::from(format!(
            "event: error\ndata: {{\"code\":{},\"message\":\"encoding failed: {}\"}}\n\n",
            ErrorCode::Internal.code(),
            err.to_string().replace('"', "'")
        )),
    }
}

fn encode<T: Serialize + ?Sized>(value: &T) -> Bytes {
    let mut out = Vec::with_capacity(256);
    match serde_json::to_writer(&mut out, value) {
        Ok(()) => Bytes::from(out),
        // Our frame types always serialize; keep the connection usable if
        // that ever changes.
        Err(err) => Bytes::from(format!(
            r#"{{"type":"error","code":{},"message":"encoding failed: {}"}}"#,
            ErrorCode::Internal.code(),
            err.to_string().replace('"', "'")
        )),
    }
}
