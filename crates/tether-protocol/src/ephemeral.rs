//! The live-only message: delivered to whoever is attached now, never
//! stored, never replayed (typing indicators, "calling a tool" ticks).

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// An ephemeral message as delivered (WebSocket `ephemeral` frame, SSE
/// `ephemeral` event). Borrows so the server encodes its shared copy
/// without cloning it per subscriber.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EphemeralMessage<'a> {
    /// Client-chosen or generated id.
    pub id: Cow<'a, str>,
    /// Event type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<Cow<'a, str>>,
    /// Payload.
    #[serde(default)]
    pub data: Cow<'a, Value>,
    /// Free-form object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extras: Option<Cow<'a, Map<String, Value>>>,
    /// The sender's identity, set by the server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<Cow<'a, str>>,
    /// The sender's connection, set by the server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_id: Option<Cow<'a, str>>,
    /// Server time, ms since the Unix epoch.
    pub timestamp: u64,
}
