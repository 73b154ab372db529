//! Folding: how operations turn into message versions and live events, and
//! how a stream of events folds back into the current messages.
//!
//! The server uses [`apply`] to compute the new stored state of a message
//! and the event to fan out. Clients (the Rust SDK, tests) use [`View`] to
//! fold events into "current messages in order". Both live here so the two
//! sides can never disagree.
//!
//! Folding is idempotent: an event whose version serial is not newer than
//! what the view holds is ignored. That is what lets a snapshot (the whole
//! message so far) be followed by fragments that overlap it.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::conventions::{Authority, Denied};
use crate::error::ErrorCode;
use crate::message::{
    Action, AppendOp, Message, Operation, Version, message_size, valid_message_id,
};
use crate::serial::Serial;

/// The namespace rules an operation is checked against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FoldLimits {
    /// Largest allowed message (see [`message_size`]), after folding.
    pub max_message_bytes: usize,
    /// Whether append/update/delete are allowed at all.
    pub mutable: bool,
}

/// Server-assigned facts about an operation.
#[derive(Debug, Clone, Copy)]
pub struct Stamp<'a> {
    /// The serial assigned to this operation.
    pub serial: Serial,
    /// Server time, milliseconds since the Unix epoch.
    pub timestamp: u64,
    /// The caller's identity from its credential.
    pub client_id: Option<&'a str>,
    /// The caller's connection, if it came over a connection.
    pub connection_id: Option<&'a str>,
    /// The caller may only append to, update or delete messages it created
    /// (its capability is `message-*-own`, not `-any`). Checked here, in the
    /// same step as the write, so ownership cannot change in between.
    pub own_only: bool,
    /// The caller's rights for the message conventions (`handoff`,
    /// `cancel`): checked here against the target's current name, in the
    /// same step as the write, so a rename cannot slip in between.
    pub authority: Authority,
}

/// Why an operation was refused. Nothing is written when this happens.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FoldError {
    /// The target serial names no message.
    #[error("no message with serial {0}")]
    NotFound(Serial),
    /// The target was deleted.
    #[error("message {0} was deleted")]
    Deleted(Serial),
    /// An append onto non-string data.
    #[error("cannot append a string to message {0}: its data is not a string")]
    AppendTypeMismatch(Serial),
    /// The folded message is over the limit.
    #[error("message would be {size} bytes, over the limit of {limit}")]
    TooLarge {
        /// Size after folding.
        size: usize,
        /// The namespace limit.
        limit: usize,
    },
    /// The namespace forbids mutations.
    #[error("messages on this channel cannot be appended to, updated or deleted")]
    MutationNotAllowed,
    /// A client-supplied id is not acceptable.
    #[error("message id must be 1-128 printable ASCII characters")]
    InvalidId,
    /// A create was applied to an existing message (an engine bug, not a
    /// client error, but reported rather than panicking).
    #[error("message {0} already exists")]
    AlreadyExists(Serial),
    /// `extras` must be a JSON object.
    #[error("extras must be a JSON object")]
    ExtrasNotObject,
    /// The streamed response has a terminal status.
    #[error("the response {0} has ended ({1}); it takes no more appends or status changes")]
    StreamEnded(Serial, String),
    /// The caller may only change its own messages, and this is not one.
    #[error("message {0} was created by another client; you may only change your own")]
    NotOwner(Serial),
    /// A convention message (`handoff`, `cancel`) created, renamed or
    /// changed without the right it needs.
    #[error(transparent)]
    Convention(#[from] Denied),
}

impl FoldError {
    /// The stable code clients see.
    pub fn code(&self) -> ErrorCode {
        match self {
            FoldError::NotFound(_) => ErrorCode::MessageNotFound,
            FoldError::Deleted(_) => ErrorCode::MessageDeleted,
            FoldError::AppendTypeMismatch(_) => ErrorCode::AppendTypeMismatch,
            FoldError::TooLarge { .. } => ErrorCode::MessageTooLarge,
            FoldError::MutationNotAllowed => ErrorCode::MutationNotAllowed,
            FoldError::InvalidId => ErrorCode::InvalidMessageId,
            FoldError::AlreadyExists(_) => ErrorCode::Internal,
            FoldError::ExtrasNotObject => ErrorCode::BadRequest,
            FoldError::NotOwner(_) | FoldError::Convention(_) => ErrorCode::Forbidden,
            FoldError::StreamEnded(..) => ErrorCode::StreamEnded,
        }
    }
}

/// The outcome of one operation.
#[derive(Debug, Clone, PartialEq)]
pub struct Applied {
    /// The message's new current version, to store.
    pub state: Message,
    /// What live subscribers receive.
    pub event: Message,
}

/// Applies `op` to `current` (the message it targets, if any).
///
/// Pure: the caller assigns the serial and time in `stamp`, looks up
/// `current`, and stores `state` and `event` only if this returns `Ok`.
pub fn apply(
    current: Option<&Message>,
    op: Operation,
    stamp: &Stamp<'_>,
    limits: &FoldLimits,
) -> Result<Applied, FoldError> {
    let version = Version {
        serial: stamp.serial,
        timestamp: stamp.timestamp,
        client_id: stamp.client_id.map(str::to_owned),
        description: None,
        metadata: None,
    };
    if let Some(target) = op.target() {
        if !limits.mutable {
            return Err(FoldError::MutationNotAllowed);
        }
        match current {
            None => return Err(FoldError::NotFound(target)),
            Some(m) if m.action == Action::Delete => return Err(FoldError::Deleted(target)),
            Some(m)
                if stamp.own_only
                    && (m.client_id.is_none() || m.client_id.as_deref() != stamp.client_id) =>
            {
                return Err(FoldError::NotOwner(target));
            }
            Some(_) => {}
        }
    }
    let (before, after) = match (&op, current) {
        (Operation::Create(new), _) => (None, new.name.as_deref()),
        (Operation::Append { append, .. }, Some(m)) => {
            let before = m.name.as_deref();
            (before, append.name.as_deref().or(before))
        }
        (Operation::Update { update, .. }, Some(m)) => {
            let before = m.name.as_deref();
            (before, update.name.as_deref().or(before))
        }
        (Operation::Delete { .. }, Some(m)) => (m.name.as_deref(), m.name.as_deref()),
        _ => (None, None),
    };
    crate::conventions::check(before, after, stamp.authority)?;
    let check_size = |m: &Message| {
        let size = message_size(m.name.as_deref(), &m.data, m.extras.as_ref());
        if size > limits.max_message_bytes {
            Err(FoldError::TooLarge {
                size,
                limit: limits.max_message_bytes,
            })
        } else {
            Ok(())
        }
    };
    match (op, current) {
        (Operation::Create(new), None) => {
            let id = match new.id {
                Some(id) if !valid_message_id(&id) => return Err(FoldError::InvalidId),
                Some(id) => id,
                // A serial is unique in its channel, so it makes a fine id.
                None => stamp.serial.to_string(),
            };
            let state = Message {
                serial: stamp.serial,
                id,
                name: new.name,
                data: new.data,
                extras: new.extras,
                client_id: stamp.client_id.map(str::to_owned),
                connection_id: stamp.connection_id.map(str::to_owned),
                timestamp: stamp.timestamp,
                action: Action::Create,
                version,
            };
            check_size(&state)?;
            Ok(Applied {
                event: state.clone(),
                state,
            })
        }
        (Operation::Create(_), Some(existing)) => Err(FoldError::AlreadyExists(existing.serial)),
        (Operation::Append { target, append }, Some(existing)) => {
            if let Some(status) = ended(existing) {
                return Err(FoldError::StreamEnded(target, status.to_owned()));
            }
            let mut state = existing.clone();
            let mut joined = match &existing.data {
                Value::Null => String::new(),
                Value::String(s) => s.clone(),
                _ => return Err(FoldError::AppendTypeMismatch(target)),
            };
            joined.push_str(&append.data);
            state.data = Value::String(joined);
            if let Some(name) = &append.name {
                state.name = Some(name.clone());
            }
            if let Some(extras) = &append.extras {
                state.extras = Some(extras.clone());
            }
            state.action = Action::Update;
            state.version = version.clone();
            check_size(&state)?;
            let event = Message {
                name: append.name,
                data: Value::String(append.data),
                extras: append.extras,
                action: Action::Append,
                version,
                ..existing.clone()
            };
            Ok(Applied { state, event })
        }
        (Operation::Update { target, update }, Some(existing)) => {
            let changes_status = update
                .extras
                .as_ref()
                .is_some_and(|patch| patch.contains_key(STREAM_STATUS));
            if let Some(status) = ended(existing).filter(|_| changes_status) {
                return Err(FoldError::StreamEnded(target, status.to_owned()));
            }
            let mut state = existing.clone();
            if let Some(name) = update.name {
                state.name = Some(name);
            }
            if let Some(data) = update.data {
                state.data = data;
            }
            if let Some(patch) = update.extras {
                state.extras = merge_extras(state.extras.take(), patch);
            }
            state.action = Action::Update;
            state.version = Version {
                description: update.description,
                metadata: update.metadata,
                ..version
            };
            check_size(&state)?;
            Ok(Applied {
                event: state.clone(),
                state,
            })
        }
        (Operation::Delete { delete, .. }, Some(existing)) => {
            let mut state = existing.clone();
            state.data = Value::Null;
            state.action = Action::Delete;
            state.version = Version {
                description: delete.description,
                metadata: delete.metadata,
                ..version
            };
            Ok(Applied {
                event: state.clone(),
                state,
            })
        }
        (op, None) => Err(FoldError::NotFound(op.target().unwrap_or(stamp.serial))),
    }
}

/// Folds an append's event (a fragment) into the message's state, in
/// place: the text grows, the name and extras are replaced when the
/// fragment carries them, the version becomes the fragment's. The one
/// definition of what an append event means, shared by [`View`] and by
/// stores that keep fragments after a checkpoint of the state and fold
/// them on read. The caller checks the fragment is newer than the state.
pub fn fold_fragment(state: &mut Message, fragment: &Message) {
    let text = fragment.data.as_str().unwrap_or_default();
    match &mut state.data {
        Value::String(s) => s.push_str(text),
        other => *other = Value::String(text.to_owned()),
    }
    if fragment.name.is_some() {
        state.name.clone_from(&fragment.name);
    }
    if fragment.extras.is_some() {
        state.extras.clone_from(&fragment.extras);
    }
    state.action = Action::Update;
    state.version = fragment.version.clone();
}

/// Like [`apply`], changing the state in `slot` in place and returning
/// only the event; `slot` is unchanged when it returns an error.
///
/// The store's hot path: an append grows the text where it is instead of
/// cloning the whole message (twice) per append, which made the cost of an
/// append grow with the answer's length. Other operations go through
/// [`apply`].
pub fn apply_in_place(
    slot: &mut Option<Message>,
    op: Operation,
    stamp: &Stamp<'_>,
    limits: &FoldLimits,
) -> Result<Message, FoldError> {
    match (op, slot.as_mut()) {
        (Operation::Append { target, append }, Some(existing)) => {
            admit(
                Some(existing),
                target,
                append.name.as_deref(),
                stamp,
                limits,
            )?;
            append_in_place(existing, target, append, version_of(stamp), limits)
        }
        (op, _) => {
            let applied = apply(slot.as_ref(), op, stamp, limits)?;
            *slot = Some(applied.state);
            Ok(applied.event)
        }
    }
}

/// The version an operation creates.
fn version_of(stamp: &Stamp<'_>) -> Version {
    Version {
        serial: stamp.serial,
        timestamp: stamp.timestamp,
        client_id: stamp.client_id.map(str::to_owned),
        description: None,
        metadata: None,
    }
}

/// The checks every operation on an existing message passes first:
/// mutability, existence, deletion, ownership, and the conventions'
/// rights for the name it ends with (`renamed_to`, or its own).
fn admit(
    current: Option<&Message>,
    target: Serial,
    renamed_to: Option<&str>,
    stamp: &Stamp<'_>,
    limits: &FoldLimits,
) -> Result<(), FoldError> {
    if !limits.mutable {
        return Err(FoldError::MutationNotAllowed);
    }
    let m = match current {
        None => return Err(FoldError::NotFound(target)),
        Some(m) if m.action == Action::Delete => return Err(FoldError::Deleted(target)),
        Some(m)
            if stamp.own_only
                && (m.client_id.is_none() || m.client_id.as_deref() != stamp.client_id) =>
        {
            return Err(FoldError::NotOwner(target));
        }
        Some(m) => m,
    };
    let before = m.name.as_deref();
    crate::conventions::check(before, renamed_to.or(before), stamp.authority)?;
    Ok(())
}

/// An append folded into `existing` in place; the event is the fragment.
fn append_in_place(
    existing: &mut Message,
    target: Serial,
    append: AppendOp,
    version: Version,
    limits: &FoldLimits,
) -> Result<Message, FoldError> {
    if let Some(status) = ended(existing) {
        return Err(FoldError::StreamEnded(target, status.to_owned()));
    }
    let text_len = match &existing.data {
        Value::Null => 0,
        Value::String(s) => s.len(),
        _ => return Err(FoldError::AppendTypeMismatch(target)),
    };
    // The size the state will have, computed before anything changes.
    let name = append.name.as_deref().or(existing.name.as_deref());
    let extras = append.extras.as_ref().or(existing.extras.as_ref());
    let size = message_size(name, &Value::Null, extras) + text_len + append.data.len();
    if size > limits.max_message_bytes {
        return Err(FoldError::TooLarge {
            size,
            limit: limits.max_message_bytes,
        });
    }
    match &mut existing.data {
        Value::String(s) => s.push_str(&append.data),
        other => *other = Value::String(append.data.clone()),
    }
    if let Some(name) = &append.name {
        existing.name = Some(name.clone());
    }
    if let Some(extras) = &append.extras {
        existing.extras = Some(extras.clone());
    }
    existing.action = Action::Update;
    existing.version = version.clone();
    Ok(Message {
        serial: existing.serial,
        id: existing.id.clone(),
        name: append.name,
        data: Value::String(append.data),
        extras: append.extras,
        client_id: existing.client_id.clone(),
        connection_id: existing.connection_id.clone(),
        timestamp: existing.timestamp,
        action: Action::Append,
        version,
    })
}

/// The `extras` key holding a streamed response's status: `streaming`,
/// then one of the terminal [`TERMINAL_STATUSES`].
pub const STREAM_STATUS: &str = "stream";

/// Statuses after which a response takes no more appends and its status is
/// fixed, so a cancel and a completion racing each other resolve to one.
pub const TERMINAL_STATUSES: [&str; 3] = ["complete", "cancelled", "error"];

/// The terminal stream status of a message, if it has one.
pub fn ended(message: &Message) -> Option<&str> {
    message
        .extras
        .as_ref()?
        .get(STREAM_STATUS)?
        .as_str()
        .filter(|s| TERMINAL_STATUSES.contains(s))
}

/// Merges `patch` into `extras` one level deep; `null` values remove keys.
fn merge_extras(
    extras: Option<Map<String, Value>>,
    patch: Map<String, Value>,
) -> Option<Map<String, Value>> {
    let mut merged = extras.unwrap_or_default();
    for (key, value) in patch {
        if value.is_null() {
            merged.remove(&key);
        } else {
            merged.insert(key, value);
        }
    }
    (!merged.is_empty()).then_some(merged)
}

/// The current messages of a channel, folded from events in any order of
/// replay: snapshots, live events, and repeats of either.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct View {
    messages: BTreeMap<Serial, Message>,
}

impl View {
    /// An empty view.
    pub fn new() -> View {
        View::default()
    }

    /// Folds one event in. Returns whether the view changed: `false` for an
    /// event already reflected (a repeat, or a fragment older than a
    /// snapshot) and for a fragment of a message the view never saw.
    pub fn apply(&mut self, event: &Message) -> bool {
        if self
            .messages
            .get(&event.serial)
            .is_some_and(|existing| existing.version.serial >= event.version.serial)
        {
            return false;
        }
        match event.action {
            Action::Append => {
                let Some(existing) = self.messages.get_mut(&event.serial) else {
                    return false;
                };
                fold_fragment(existing, event);
            }
            Action::Create | Action::Update | Action::Delete => {
                self.messages.insert(event.serial, event.clone());
            }
        }
        true
    }

    /// The message with `serial`, if the view holds it.
    pub fn get(&self, serial: Serial) -> Option<&Message> {
        self.messages.get(&serial)
    }

    /// Current messages in channel order.
    pub fn messages(&self) -> impl Iterator<Item = &Message> {
        self.messages.values()
    }

    /// How many messages the view holds.
    pub fn len(&self) -> usize {
        self.messages.len()
    }

    /// Whether the view holds no message.
    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }
}
