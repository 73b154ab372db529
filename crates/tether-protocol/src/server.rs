//! Frames the server sends on a WebSocket.
//!
//! [`ServerFrame`] borrows what it carries (`Cow`), so the server builds a
//! frame around its own records and serializes it without a clone: that
//! matters for `message`, encoded once per delivered event. A client
//! decodes into `ServerFrame<'static>` (owned values).

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use tether_core::{ErrorInfo, Message, Serial};

use crate::ephemeral::EphemeralMessage;
use crate::limits::AnnouncedLimits;
use crate::presence::{Member, PresenceAction};

/// A frame to a WebSocket client. The `type` tag is always the first key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ServerFrame<'a> {
    /// First frame of a connection.
    Connected {
        /// [`crate::PROTOCOL_VERSION`].
        protocol: u32,
        /// This connection's id (stamped on what it publishes).
        connection_id: Cow<'a, str>,
        /// Present it with `connection_id` in a `resume` frame to carry on
        /// as this connection after a drop.
        resume_key: Cow<'a, str>,
        /// How long after a drop the connection can be resumed.
        resume_ttl_ms: u64,
        /// The identity the credential carries.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client_id: Option<Cow<'a, str>>,
        /// False when the connection must send an `auth` frame first.
        authenticated: bool,
        /// How often the server sends `heartbeat`.
        heartbeat_ms: u64,
        /// A connection silent for this long is closed.
        idle_timeout_ms: u64,
        /// What the server enforces.
        limits: AnnouncedLimits,
    },
    /// Reply to an attach (and again if continuity is lost later): how the
    /// position was honoured. Comes before any of the attach's events.
    Attached {
        /// The attach's `req`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        req: Option<u64>,
        /// The channel.
        channel: Cow<'a, str>,
        /// How the position was honoured.
        continuity: Continuity,
        /// Why continuity was lost (`41000`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<Cow<'a, ErrorInfo>>,
    },
    /// One event of an attached channel.
    Message {
        /// The channel.
        channel: Cow<'a, str>,
        /// Present when the client can resume exactly from here.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        position: Option<Serial>,
        /// The event (an `append` carries only its fragment).
        message: Cow<'a, Message>,
    },
    /// The attach's catch-up is done; what follows is live.
    Synced {
        /// The channel.
        channel: Cow<'a, str>,
        /// Present when exact, so a quiet channel still has a position.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        position: Option<Serial>,
    },
    /// A channel was detached: the reply to a `detach` (with its `req`),
    /// or, without `req`, the server ending an attachment itself (a
    /// renewed credential no longer grants `subscribe`), right after an
    /// `error` frame naming the channel and saying why.
    Detached {
        /// The detach's `req`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        req: Option<u64>,
        /// The channel.
        channel: Cow<'a, str>,
    },
    /// A mutation was applied and is durable.
    Ack {
        /// The mutation's `req`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        req: Option<u64>,
        /// The message's serial.
        serial: Serial,
        /// The serial of the version this operation made.
        version_serial: Serial,
        /// A repeat of an idempotent publish: nothing new was stored.
        duplicate: bool,
    },
    /// Something failed. Without `req` it concerns the connection (or,
    /// with `channel`, one channel) as a whole.
    Error {
        /// The failed request's `req`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        req: Option<u64>,
        /// The channel concerned.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        channel: Option<Cow<'a, str>>,
        /// The stable error code (docs/errors.md).
        code: u32,
        /// What went wrong, for people.
        message: Cow<'a, str>,
    },
    /// A credential was accepted (first auth or renewal).
    Authorized {
        /// The auth's `req`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        req: Option<u64>,
        /// The identity it carries.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client_id: Option<Cow<'a, str>>,
        /// When a token expires (seconds since the Unix epoch).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        expires_at: Option<u64>,
    },
    /// Reply to a request with nothing else to say (presence, ephemeral).
    Ok {
        /// The request's `req`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        req: Option<u64>,
    },
    /// A `resume` succeeded: this is now the old connection.
    Resumed {
        /// The resume's `req`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        req: Option<u64>,
        /// The old (now this) connection's id.
        connection_id: Cow<'a, str>,
        /// The key for the next resume.
        resume_key: Cow<'a, str>,
        /// The channels re-attached, each with the position it continues from.
        attachments: Vec<ResumedAttachment>,
    },
    /// Reply to a ping.
    Pong {
        /// The ping's `req`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        req: Option<u64>,
    },
    /// A page of the channel's presence members; replace your set with the
    /// pages up to the one marked `complete`.
    #[serde(rename = "presence-sync")]
    PresenceSync {
        /// The channel.
        channel: Cow<'a, str>,
        /// Members on this page.
        members: Vec<Member<'a>>,
        /// Whether this is the last page.
        complete: bool,
    },
    /// A presence change after the sync.
    Presence {
        /// The channel.
        channel: Cow<'a, str>,
        /// What happened.
        action: PresenceAction,
        /// The member after the change.
        member: Member<'a>,
    },
    /// A live-only message.
    Ephemeral {
        /// The channel.
        channel: Cow<'a, str>,
        /// The message.
        message: EphemeralMessage<'a>,
    },
    /// The server is alive.
    Heartbeat,
}

impl ServerFrame<'_> {
    /// Every `type` the server sends, in the order of the variants.
    pub const TYPES: [&'static str; 15] = [
        "connected",
        "attached",
        "message",
        "synced",
        "detached",
        "ack",
        "error",
        "authorized",
        "ok",
        "resumed",
        "pong",
        "presence-sync",
        "presence",
        "ephemeral",
        "heartbeat",
    ];

    /// The frame's `type` on the wire.
    pub fn type_name(&self) -> &'static str {
        let index = match self {
            ServerFrame::Connected { .. } => 0,
            ServerFrame::Attached { .. } => 1,
            ServerFrame::Message { .. } => 2,
            ServerFrame::Synced { .. } => 3,
            ServerFrame::Detached { .. } => 4,
            ServerFrame::Ack { .. } => 5,
            ServerFrame::Error { .. } => 6,
            ServerFrame::Authorized { .. } => 7,
            ServerFrame::Ok { .. } => 8,
            ServerFrame::Resumed { .. } => 9,
            ServerFrame::Pong { .. } => 10,
            ServerFrame::PresenceSync { .. } => 11,
            ServerFrame::Presence { .. } => 12,
            ServerFrame::Ephemeral { .. } => 13,
            ServerFrame::Heartbeat => 14,
        };
        Self::TYPES[index]
    }

    /// The `req` this frame answers, if it is a reply.
    pub fn req(&self) -> Option<u64> {
        match self {
            ServerFrame::Attached { req, .. }
            | ServerFrame::Detached { req, .. }
            | ServerFrame::Ack { req, .. }
            | ServerFrame::Error { req, .. }
            | ServerFrame::Authorized { req, .. }
            | ServerFrame::Ok { req }
            | ServerFrame::Resumed { req, .. }
            | ServerFrame::Pong { req } => *req,
            _ => None,
        }
    }

    /// Decodes a frame from the server into owned values.
    pub fn decode(text: &str) -> serde_json::Result<ServerFrame<'static>> {
        serde_json::from_str(text)
    }

    /// The frame as JSON bytes.
    pub fn to_vec(&self) -> serde_json::Result<Vec<u8>> {
        serde_json::to_vec(self)
    }
}

/// How an attach honoured the requested position. `Hash` so clients can
/// key on it (the Rust SDK re-exports this type as its own).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Continuity {
    /// No position was given.
    New,
    /// Everything after the position follows, exactly.
    Resumed,
    /// The position could not be served; current state follows. The
    /// client must drop what it holds for the channel.
    Lost,
}

/// A channel re-attached by a resume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResumedAttachment {
    /// The channel.
    pub channel: String,
    /// Where it continues from (`null`: fresh).
    pub position: Option<Serial>,
    /// Whether presence is delivered on it. `false` for a channel attached
    /// only because `positions` named it (the server does not know the
    /// options of an attach the old socket never processed), so a client
    /// that wants presence there attaches again with it.
    #[serde(default)]
    pub presence: bool,
}
