//! Frames a WebSocket client sends. The server decodes them (strictly:
//! unknown fields are refused, so a typo is an error rather than silently
//! ignored); SDKs and tools encode them.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tether_core::{AppendOp, DeleteOp, NewMessage, UpdateOp};

/// A frame from a WebSocket client. `req`, when given, is echoed by the
/// server's reply so a client can match replies to requests.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum ClientFrame {
    /// Subscribe to a channel.
    Attach {
        /// Echoed in the reply.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        req: Option<u64>,
        /// The channel.
        channel: String,
        /// Resume after this position (exact).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        from: Option<String>,
        /// On a fresh attach, first deliver the last N messages (0-1000).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rewind: Option<usize>,
        /// Also receive presence (needs `presence-subscribe`).
        #[serde(default, skip_serializing_if = "is_false")]
        presence: bool,
    },
    /// Stop a subscription.
    Detach {
        /// Echoed in the reply.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        req: Option<u64>,
        /// The channel.
        channel: String,
    },
    /// Publish a new message.
    Publish {
        /// Echoed in the reply.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        req: Option<u64>,
        /// Per-connection sequence number for exactly-once re-sends.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        seq: Option<u64>,
        /// The channel.
        channel: String,
        /// The message.
        message: NewMessage,
        /// Deliver live only; never stored or replayed.
        #[serde(default, skip_serializing_if = "is_false")]
        ephemeral: bool,
    },
    /// Append to a message.
    Append {
        /// Echoed in the reply.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        req: Option<u64>,
        /// Per-connection sequence number for exactly-once re-sends.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        seq: Option<u64>,
        /// The channel.
        channel: String,
        /// The message appended to.
        serial: String,
        /// The fragment and optional replacements.
        #[serde(flatten)]
        append: AppendOp,
    },
    /// Update a message.
    Update {
        /// Echoed in the reply.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        req: Option<u64>,
        /// Per-connection sequence number for exactly-once re-sends.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        seq: Option<u64>,
        /// The channel.
        channel: String,
        /// The message updated.
        serial: String,
        /// The changes.
        #[serde(flatten)]
        update: UpdateOp,
    },
    /// Delete a message.
    Delete {
        /// Echoed in the reply.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        req: Option<u64>,
        /// Per-connection sequence number for exactly-once re-sends.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        seq: Option<u64>,
        /// The channel.
        channel: String,
        /// The message deleted.
        serial: String,
        /// Why.
        #[serde(flatten)]
        delete: DeleteOp,
    },
    /// Authenticate (first frame, when no credential came with the
    /// upgrade) or renew a token on a live connection.
    Auth {
        /// Echoed in the reply.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        req: Option<u64>,
        /// A JWT.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        token: Option<String>,
        /// An API key, `name:secret`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        key: Option<String>,
        /// With a key: the identity to act as.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client_id: Option<String>,
    },
    /// Enter, update or leave presence.
    Presence {
        /// Echoed in the reply.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        req: Option<u64>,
        /// The channel.
        channel: String,
        /// What to do.
        action: PresenceVerb,
        /// The member's data (absent: `null`).
        #[serde(default, skip_serializing_if = "Value::is_null")]
        data: Value,
    },
    /// Carry on as a connection that vanished (see docs/protocol.md).
    Resume {
        /// Echoed in the reply.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        req: Option<u64>,
        /// The old connection's id, from its `connected` frame.
        connection_id: String,
        /// The old connection's resume key, from its `connected` frame.
        resume_key: String,
        /// Last position per channel, so each attachment continues exactly.
        #[serde(default, skip_serializing_if = "HashMap::is_empty")]
        positions: HashMap<String, String>,
    },
    /// Liveness check.
    Ping {
        /// Echoed in the reply.
        #[serde(default, skip_serializing_if = "Option::is_none")]
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

    /// The frame's `type` on the wire.
    pub fn type_name(&self) -> &'static str {
        match self {
            ClientFrame::Attach { .. } => "attach",
            ClientFrame::Detach { .. } => "detach",
            ClientFrame::Publish { .. } => "publish",
            ClientFrame::Append { .. } => "append",
            ClientFrame::Update { .. } => "update",
            ClientFrame::Delete { .. } => "delete",
            ClientFrame::Auth { .. } => "auth",
            ClientFrame::Presence { .. } => "presence",
            ClientFrame::Resume { .. } => "resume",
            ClientFrame::Ping { .. } => "ping",
        }
    }

    /// The frame as JSON text.
    pub fn to_json(&self) -> String {
        // A frame of strings, numbers and JSON values always serializes.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// A presence request's verb.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PresenceVerb {
    /// Join (or update if already present).
    Enter,
    /// Change data.
    Update,
    /// Leave.
    Leave,
}

// serde's `skip_serializing_if` takes a reference.
#[allow(clippy::trivially_copy_pass_by_ref)]
fn is_false(value: &bool) -> bool {
    !*value
}
