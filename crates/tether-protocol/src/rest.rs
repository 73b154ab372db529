//! REST request and response bodies (`/channels/...`, `/keys/.../tokens`).
//! The operation bodies themselves (a new message, an append, an update, a
//! delete) are `tether-core`'s types, re-exported here, because the
//! WebSocket frames carry the very same shapes.

use serde::{Deserialize, Serialize};
use tether_core::{Capabilities, ChannelName, Message, Serial};

pub use tether_core::{AppendOp, DeleteOp, NewMessage, UpdateOp};

use crate::error::ErrorBody;
use crate::presence::Member;

/// Body of `POST /channels/{channel}/messages`: one message or an array of
/// them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum PublishBody {
    /// Several messages, applied in order (not atomically).
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<crate::openapi::NewMessage>))]
    Many(Vec<NewMessage>),
    /// One message.
    #[cfg_attr(feature = "openapi", schema(value_type = crate::openapi::NewMessage))]
    One(NewMessage),
}

/// The acknowledgement of a publish or mutation over REST (the WebSocket
/// `ack` frame carries the same fields).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AckBody {
    /// The message's serial.
    #[cfg_attr(feature = "openapi", schema(value_type = crate::openapi::Serial))]
    pub serial: Serial,
    /// The operation's serial.
    #[cfg_attr(feature = "openapi", schema(value_type = crate::openapi::Serial))]
    pub version_serial: Serial,
    /// Whether this was a repeat of an idempotent publish.
    pub duplicate: bool,
}

/// One element of an array publish's reply: an ack or an error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum PublishResult {
    /// Applied.
    Ok(AckBody),
    /// Refused.
    Err(ErrorBody),
}

/// Reply to an array publish: one result per element, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PublishResults {
    /// The results.
    pub results: Vec<PublishResult>,
}

/// Reply to `GET /channels/{channel}/messages/{serial}/versions`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Versions {
    /// Oldest first: create, each update and delete, and the current
    /// version if appends followed.
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<crate::openapi::Message>))]
    pub versions: Vec<Message>,
}

/// Reply to `GET /channels/{channel}/messages`: one page of history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HistoryPage {
    /// Current version of each message, in the requested direction.
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<crate::openapi::Message>))]
    pub messages: Vec<Message>,
    /// Cursor for the next page, `null` on the last one.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<crate::openapi::Serial>))]
    pub next: Option<Serial>,
}

/// Reply to `GET /channels/{channel}/presence`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Members<'a> {
    /// The current members.
    pub members: Vec<Member<'a>>,
}

/// Reply to `GET /channels/{channel}`: the log's bounds, `null`s for a
/// channel never written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ChannelInfo {
    /// The channel.
    #[cfg_attr(feature = "openapi", schema(value_type = crate::openapi::ChannelName))]
    pub channel: ChannelName,
    /// The log's epoch.
    pub epoch: Option<u64>,
    /// The oldest serial retained.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<crate::openapi::Serial>))]
    pub first: Option<Serial>,
    /// The head: the position a subscriber that has everything holds.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<crate::openapi::Serial>))]
    pub position: Option<Serial>,
}

/// Body of `POST /keys/{key}/tokens`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TokenRequest {
    /// Identity of the user or device the token is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// Capabilities; the key's own when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<crate::openapi::Capabilities>))]
    pub capabilities: Option<Capabilities>,
    /// Lifetime in seconds (default one hour, at most one day).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_secs: Option<u64>,
}

/// Reply to `POST /keys/{key}/tokens` (201).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TokenResponse {
    /// The JWT.
    pub token: String,
    /// When it expires, seconds since the Unix epoch.
    pub expires_at: u64,
    /// The identity it carries (`null`: none).
    pub client_id: Option<String>,
}
