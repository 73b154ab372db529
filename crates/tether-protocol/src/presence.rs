//! Presence on the wire: a member, and a change of the member set. Fields
//! borrow (`Cow`) so the server encodes its own member records without
//! copying them; decoding yields owned values.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One member: a connection of a client on a channel (a user on two
/// devices is two members).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Member<'a> {
    /// The client's identity (from its credential).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub client_id: Option<Cow<'a, str>>,
    /// The connection: the key of a member.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub connection_id: Cow<'a, str>,
    /// Free-form state: role, status (`thinking`, `streaming`, `handed-off`).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Value))]
    pub data: Cow<'a, Value>,
    /// When the member entered or last updated (ms since the Unix epoch).
    pub timestamp: u64,
}

/// What happened to a member. `Hash` so clients can key on it (the Rust
/// SDK re-exports this type as its own).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PresenceAction {
    /// Joined the channel.
    Enter,
    /// Changed its data.
    Update,
    /// Left (explicitly, by closing, or after the grace period).
    Leave,
}

/// A change of a channel's member set: the `presence` frame's fields and
/// the data of the SSE `presence` event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PresenceChange<'a> {
    /// What happened.
    pub action: PresenceAction,
    /// The member after the change (its last state for a leave).
    pub member: Member<'a>,
}

/// A page of the member set: the data of the SSE `presence-sync` event
/// (the WebSocket frame carries the same fields plus the channel).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PresenceSync<'a> {
    /// Members on this page.
    pub members: Vec<Member<'a>>,
    /// Whether this is the last page.
    pub complete: bool,
}
