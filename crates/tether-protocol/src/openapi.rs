//! OpenAPI schemas (feature `openapi`) of the `tether-core` shapes that
//! the REST bodies carry: serials, channel names, messages, the four
//! operations' bodies, capabilities and the error.
//!
//! The protocol's own body types derive `utoipa::ToSchema` where they are
//! defined (`rest.rs`, `llm.rs`, `error.rs`, `presence.rs`). The core's
//! types cannot: `tether-core` takes serde only, and neither this crate nor
//! the server may implement utoipa's trait on a foreign type. So each core
//! shape has a schema-only twin here, named like the original, which the
//! protocol's fields point at with `#[schema(value_type = ...)]`. The twins
//! are never built; they carry the same serde attributes as the originals
//! so the derive reads the same optional fields and unknown-field rules.
//! Where the core lists its values (`ErrorCode::ALL`, `Operation::ALL`)
//! the schema's enum is computed from that list, not copied.
//!
//! Drift is caught by `tether-server/tests/openapi.rs`, which compares
//! these schemas with what the real types serialize and accept.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Map, Value};
use tether_core::ErrorCode;
use tether_core::capability::Operation;
use utoipa::openapi::schema::{Schema, Type};
use utoipa::openapi::{RefOr, schema};
use utoipa::{PartialSchema, ToSchema};

/// A position in a channel's log, `EPOCH-SEQUENCE` (13 and 16 zero-padded
/// decimal digits), so string order is log order. A message is named by
/// the serial of its create.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(
    example = "1733318400000-0000000000000042",
    pattern = "^[0-9]{13}-[0-9]{16}$"
)]
pub struct Serial(pub String);

/// A channel name: 1-200 characters from `A-Z a-z 0-9 - _ : . @ = + , ~ !`;
/// the part before the first `:` is the namespace whose settings apply.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = "conversation:42")]
pub struct ChannelName(pub String);

/// What a publisher supplies for a new message (`POST .../messages`).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewMessage {
    /// Idempotency key: a repeat within the namespace's window is not
    /// stored again (1-128 printable ASCII characters).
    #[serde(default)]
    pub id: Option<String>,
    /// Event type chosen by the application (`response`, `prompt`).
    #[serde(default)]
    pub name: Option<String>,
    /// A string or any JSON value.
    #[serde(default)]
    pub data: Value,
    /// Free-form object: role, run id, stream status
    /// (`{"stream": "streaming"}` starts a streamed response).
    #[serde(default)]
    pub extras: Option<Map<String, Value>>,
}

/// A fragment to concatenate onto a message's string data.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AppendOp {
    /// The fragment.
    pub data: String,
    /// Replaces the message's name when given.
    #[serde(default)]
    pub name: Option<String>,
    /// Replaces the message's extras when given (e.g. `{"stream":
    /// "complete"}` ends a streamed response).
    #[serde(default)]
    pub extras: Option<Map<String, Value>>,
}

/// A partial new version of a message: absent fields stay as they are;
/// `extras` keys are merged one level deep, a key set to `null` is removed.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateOp {
    /// New name.
    #[serde(default)]
    pub name: Option<String>,
    /// New data (replaces, does not append).
    #[serde(default)]
    pub data: Option<Value>,
    /// Keys to merge into extras.
    #[serde(default)]
    pub extras: Option<Map<String, Value>>,
    /// Why the version was made.
    #[serde(default)]
    pub description: Option<String>,
    /// Extra JSON about the version.
    #[serde(default)]
    pub metadata: Option<Value>,
}

/// A soft delete: the message becomes a tombstone in its original place.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeleteOp {
    /// Why it was deleted.
    #[serde(default)]
    pub description: Option<String>,
    /// Extra JSON about the deletion.
    #[serde(default)]
    pub metadata: Option<Value>,
}

/// The latest operation applied to a message.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// A new message.
    Create,
    /// A fragment concatenated onto the data.
    Append,
    /// A new version.
    Update,
    /// A tombstone.
    Delete,
}

/// Who made a version, when, and why.
#[derive(Debug, Deserialize, ToSchema)]
pub struct Version {
    /// The serial of the operation that produced this version.
    pub serial: Serial,
    /// Server time of the operation, ms since the Unix epoch.
    pub timestamp: u64,
    /// The identity that made this version, set by the server.
    #[serde(default)]
    pub client_id: Option<String>,
    /// Free text given with an update or delete.
    #[serde(default)]
    pub description: Option<String>,
    /// Free-form JSON given with an update or delete.
    #[serde(default)]
    pub metadata: Option<Value>,
}

/// A message as stored: its current version, appends folded in.
#[derive(Debug, Deserialize, ToSchema)]
pub struct Message {
    /// The serial of the message's create; its position in the channel.
    pub serial: Serial,
    /// Client-supplied (idempotent publish) or generated id.
    pub id: String,
    /// Event type chosen by the application.
    #[serde(default)]
    pub name: Option<String>,
    /// A string or any JSON value; `null` after a delete.
    #[serde(default)]
    pub data: Value,
    /// Free-form object: role, run id, stream status.
    #[serde(default)]
    pub extras: Option<Map<String, Value>>,
    /// Identity of the creator, set by the server from the credential.
    #[serde(default)]
    pub client_id: Option<String>,
    /// The connection that created the message, set by the server.
    #[serde(default)]
    pub connection_id: Option<String>,
    /// Creation time, ms since the Unix epoch.
    pub timestamp: u64,
    /// The latest operation applied.
    pub action: Action,
    /// The latest version.
    pub version: Version,
}

/// An error: a stable numeric code (its first three digits are the HTTP
/// status) and a message for people, never parsed by programs.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ErrorInfo {
    /// The code (`docs/errors.md`).
    pub code: Code,
    /// What went wrong.
    pub message: String,
}

/// Every error code Tether answers with, from `ErrorCode::ALL`.
#[derive(Debug, Deserialize)]
pub struct Code(pub u32);

impl PartialSchema for Code {
    fn schema() -> RefOr<Schema> {
        let mut codes: Vec<u32> = ErrorCode::ALL.iter().map(|c| c.code()).collect();
        codes.sort_unstable();
        schema::Object::builder()
            .schema_type(Type::Integer)
            .description(Some(
                "A stable error code; its first three digits are the HTTP status.",
            ))
            .enum_values(Some(codes))
            .into()
    }
}

impl ToSchema for Code {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("ErrorCode")
    }
}

/// A capability set: channel pattern (exact, or a prefix ending in `*`)
/// → the operations granted there (`*`: all of them).
#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({"conversation:user-42": ["subscribe", "publish", "history"]}))]
pub struct Capabilities(pub BTreeMap<String, Vec<CapabilityName>>);

/// One operation a capability grants, from `Operation::ALL`, or `*`.
#[derive(Debug, Deserialize)]
pub struct CapabilityName(pub String);

impl PartialSchema for CapabilityName {
    fn schema() -> RefOr<Schema> {
        let names: Vec<&str> = std::iter::once("*")
            .chain(Operation::ALL.iter().map(|op| op.as_str()))
            .collect();
        schema::Object::builder()
            .schema_type(Type::String)
            .enum_values(Some(names))
            .into()
    }
}

impl ToSchema for CapabilityName {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Capability")
    }
}
