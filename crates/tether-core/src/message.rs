//! The mutable message model.
//!
//! A channel log is a sequence of *operations* (create, append, update,
//! delete). Each operation gets its own serial. A message is named by the
//! serial of its create; every later operation on it produces a new
//! *version* whose version serial is the operation's serial. So message
//! serials and version serials come from one sequence and sort the same way.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::serial::Serial;

/// Longest accepted client-supplied message id, in bytes.
pub const MAX_MESSAGE_ID_LEN: usize = 128;

/// What an operation (and the event it produces) does to a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// A new message.
    Create,
    /// A string fragment concatenated onto the message's data.
    Append,
    /// A new version: name/data/extras merged into the message.
    Update,
    /// A tombstone version: data cleared, the message keeps its place.
    Delete,
}

/// Who made a version, when, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Version {
    /// The serial of the operation that produced this version. Highest wins.
    pub serial: Serial,
    /// Server time of the operation, milliseconds since the Unix epoch.
    pub timestamp: u64,
    /// The identity of the client that made this version, set by the server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// Free text given with an update or delete ("fixed a typo").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Free-form JSON given with an update or delete.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Value>,
}

/// A message as stored, returned by history and delivered to subscribers.
///
/// As an *event* on the live stream the same shape carries one operation:
/// for `append` the `data` is only the fragment and `version.serial` is the
/// append's serial; for every other action it is the whole message at that
/// version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// The serial of the message's create; its position in the channel.
    pub serial: Serial,
    /// Client-supplied (idempotent publish) or generated id.
    pub id: String,
    /// Event type chosen by the application (`"response"`, `"cancel"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// A string or any JSON value; `null` after a delete.
    #[serde(default)]
    pub data: Value,
    /// Free-form JSON object: role, run id, stream status...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extras: Option<Map<String, Value>>,
    /// Identity of the creator, set by the server from the credential.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// The connection that created the message, set by the server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_id: Option<String>,
    /// Creation time, milliseconds since the Unix epoch.
    pub timestamp: u64,
    /// The latest operation applied (for an event: the operation it carries).
    pub action: Action,
    /// The latest version.
    pub version: Version,
}

/// What a publisher supplies for a new message.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewMessage {
    /// Optional idempotency key; a repeat within the window is not stored again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Event type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Payload.
    #[serde(default)]
    pub data: Value,
    /// Free-form object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extras: Option<Map<String, Value>>,
}

/// A fragment to concatenate onto a message's string data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppendOp {
    /// The fragment.
    pub data: String,
    /// Replaces the message's name when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Replaces the message's extras when given (e.g. stream status).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extras: Option<Map<String, Value>>,
}

/// A partial new version of a message. Absent fields are left as they are;
/// `extras` keys are merged one level deep, a key set to `null` is removed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateOp {
    /// New name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// New data (replaces, does not append).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
    /// Keys to merge into extras.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extras: Option<Map<String, Value>>,
    /// Why the version was made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Extra JSON about the version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Value>,
}

/// A soft delete: the message becomes a tombstone in its original place.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeleteOp {
    /// Why it was deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Extra JSON about the deletion.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Value>,
}

/// One operation on a channel, as submitted to the engine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum Operation {
    /// Publish a new message.
    Create(NewMessage),
    /// Append to the message with `target` serial.
    Append {
        /// The message to append to.
        target: Serial,
        /// The fragment and optional replacements.
        #[serde(flatten)]
        append: AppendOp,
    },
    /// New version of the message with `target` serial.
    Update {
        /// The message to update.
        target: Serial,
        /// The changes.
        #[serde(flatten)]
        update: UpdateOp,
    },
    /// Delete the message with `target` serial.
    Delete {
        /// The message to delete.
        target: Serial,
        /// Why.
        #[serde(flatten)]
        delete: DeleteOp,
    },
}

impl Operation {
    /// The existing message this operation changes, `None` for a create.
    pub fn target(&self) -> Option<Serial> {
        match self {
            Operation::Create(_) => None,
            Operation::Append { target, .. }
            | Operation::Update { target, .. }
            | Operation::Delete { target, .. } => Some(*target),
        }
    }
}

/// Whether `id` is acceptable as a client-supplied message id: 1-128 bytes of
/// printable ASCII. Ids are storage keys, so they are kept simple.
pub fn valid_message_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_MESSAGE_ID_LEN && id.bytes().all(|b| b.is_ascii_graphic())
}

/// Size of a message for limit checks: the bytes its payload fields take as
/// JSON (a string counts its UTF-8 length). Computed the same way everywhere
/// so the limit means one thing.
pub fn message_size(
    name: Option<&str>,
    data: &Value,
    extras: Option<&Map<String, Value>>,
) -> usize {
    let data_len = match data {
        Value::String(s) => s.len(),
        Value::Null => 0,
        other => json_len(other),
    };
    name.map_or(0, str::len) + data_len + extras.map_or(0, json_len)
}

/// Length of `value` as compact JSON, without building the string.
fn json_len<T: Serialize + ?Sized>(value: &T) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    // Serializing a JSON value into a counter cannot fail.
    let _ = serde_json::to_writer(&mut count, value);
    count.0
}
