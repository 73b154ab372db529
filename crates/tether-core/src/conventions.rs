//! The message conventions Tether gives meaning to: interrupting a streamed
//! response and handing a conversation to a human. One definition here, used
//! by the server, the LLM bridge and the SDKs.
//!
//! - **cancel**: a message named [`CANCEL`] whose `extras.target` (or string
//!   `data`) is the serial of a streamed response asks its producer to stop.
//! - **handoff**: a message named [`HANDOFF`] with `extras.action` `claim` or
//!   `release`; publishing one needs the `operator` capability.
//!
//! Both carry authority (one ends someone's response, the other takes a
//! conversation from an agent), so [`check`] decides who may create or
//! change such messages. The rule looks at the message's name before and
//! after the change, so renaming a message into (or out of) a convention
//! needs the same right as publishing one. The server establishes the
//! caller's [`Authority`] from its capabilities; folding calls [`check`] in
//! the store's writer, atomically with the write, because only there is
//! the target's current name known for certain.

use serde_json::{Map, Value};

use crate::serial::Serial;

/// Name of a cancel request.
pub const CANCEL: &str = "cancel";

/// Name of a steer request (same targeting as cancel; a convention only).
pub const STEER: &str = "steer";

/// Name of a handoff message (claim / release).
pub const HANDOFF: &str = "handoff";

/// The rights a caller holds on a channel that conventions care about,
/// established by the server from the caller's capabilities.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Authority {
    /// May publish on the channel (needed for `cancel`).
    pub publish: bool,
    /// Holds the `operator` capability (needed for `handoff`).
    pub operator: bool,
}

impl Authority {
    /// Every right: the server's own writes (marking a response
    /// `cancelled`, the LLM bridge streaming into the message it created).
    pub const ALL: Authority = Authority {
        publish: true,
        operator: true,
    };

    /// Whether `right` is held.
    pub fn holds(self, right: Right) -> bool {
        match right {
            Right::Publish => self.publish,
            Right::Operator => self.operator,
        }
    }
}

/// A right a convention message needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Right {
    /// The `publish` capability.
    Publish,
    /// The `operator` capability.
    Operator,
}

impl Right {
    /// The capability's name as written in capability maps.
    pub fn as_str(self) -> &'static str {
        match self {
            Right::Publish => "publish",
            Right::Operator => "operator",
        }
    }
}

impl std::fmt::Display for Right {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The right needed to create, or change in any way, a message named
/// `name`; `None` for names without a convention.
///
/// - `handoff` needs `operator`: it claims or releases a conversation.
/// - `cancel` needs `publish` on the channel. It may target any response
///   on that channel, whoever streams it: being allowed to publish in a
///   conversation is being a participant in it, and a participant may stop
///   a response in it (a user stops the agent's answer). It never reaches
///   another channel: the target is a serial of the same channel, and only
///   a response still `streaming` is marked `cancelled`.
pub fn right_for(name: Option<&str>) -> Option<Right> {
    match name? {
        HANDOFF => Some(Right::Operator),
        CANCEL => Some(Right::Publish),
        _ => None,
    }
}

/// Why a change was refused: it creates, renames or changes a convention
/// message without the right that convention needs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{name} messages need the {right} capability to be published, renamed or changed")]
pub struct Denied {
    /// The convention's name (`handoff`, `cancel`).
    pub name: &'static str,
    /// What is missing.
    pub right: Right,
}

/// Checks a change that turns a message named `before` (`None` for a
/// create or an unnamed message) into one named `after`. A message that is
/// a convention message before or after the change needs that
/// convention's right.
pub fn check(
    before: Option<&str>,
    after: Option<&str>,
    authority: Authority,
) -> Result<(), Denied> {
    for name in [before, after] {
        if let Some(right) = right_for(name)
            && !authority.holds(right)
        {
            let name = if name == Some(HANDOFF) {
                HANDOFF
            } else {
                CANCEL
            };
            return Err(Denied { name, right });
        }
    }
    Ok(())
}

/// The serial text a cancel request targets, from its name, extras and data;
/// `None` if it is not a cancel request.
pub fn cancel_target<'a>(
    name: Option<&str>,
    extras: Option<&'a Map<String, Value>>,
    data: &'a Value,
) -> Option<&'a str> {
    if name != Some(CANCEL) {
        return None;
    }
    extras
        .and_then(|e| e.get("target"))
        .and_then(Value::as_str)
        .or_else(|| data.as_str())
}

/// The response serial a cancel request targets, parsed.
pub fn cancel_serial(
    name: Option<&str>,
    extras: Option<&Map<String, Value>>,
    data: &Value,
) -> Option<Serial> {
    cancel_target(name, extras, data)?.parse().ok()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn extras(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    const USER: Authority = Authority {
        publish: true,
        operator: false,
    };
    const READER: Authority = Authority {
        publish: false,
        operator: false,
    };

    #[test]
    fn handoff_needs_operator_whichever_way_it_is_made() {
        // Created.
        let denied = check(None, Some("handoff"), USER).unwrap_err();
        assert_eq!((denied.name, denied.right), (HANDOFF, Right::Operator));
        // Renamed into and out of.
        assert!(check(Some("chat"), Some("handoff"), USER).is_err());
        assert!(check(Some("handoff"), Some("chat"), USER).is_err());
        // Changed in place (a claim turned into a release).
        assert!(check(Some("handoff"), Some("handoff"), USER).is_err());
        assert!(check(Some("handoff"), Some("chat"), Authority::ALL).is_ok());
        let operator = Authority {
            publish: false,
            operator: true,
        };
        assert!(check(None, Some("handoff"), operator).is_ok());
    }

    #[test]
    fn cancel_needs_publish_and_other_names_need_nothing() {
        assert!(check(None, Some("cancel"), USER).is_ok());
        let denied = check(Some("note"), Some("cancel"), READER).unwrap_err();
        assert_eq!((denied.name, denied.right), (CANCEL, Right::Publish));
        assert!(check(Some("cancel"), None, READER).is_err());
        assert!(check(None, Some("response"), READER).is_ok());
        assert!(check(None, None, READER).is_ok());
        // Names are exact: no case folding, no prefixes.
        assert!(check(None, Some("Handoff"), READER).is_ok());
        assert!(check(None, Some("handoff2"), READER).is_ok());
        assert_eq!(
            denied.to_string(),
            "cancel messages need the publish capability to be published, renamed or changed"
        );
    }

    /// Folding enforces the rule against the target's current name, so a
    /// message renamed by someone else in between cannot slip past.
    #[test]
    fn folding_checks_the_name_before_and_after() {
        use crate::fold::{FoldError, FoldLimits, Stamp, apply};
        use crate::message::{DeleteOp, NewMessage, Operation, UpdateOp};
        let limits = FoldLimits {
            max_message_bytes: 4096,
            mutable: true,
        };
        let stamp = |seq, authority| Stamp {
            serial: Serial::new(1, seq).unwrap(),
            timestamp: seq,
            client_id: Some("c"),
            connection_id: None,
            own_only: false,
            authority,
        };
        let create = |name: &str| {
            Operation::Create(NewMessage {
                name: Some(name.into()),
                ..NewMessage::default()
            })
        };
        let claim = apply(None, create("handoff"), &stamp(1, Authority::ALL), &limits)
            .unwrap()
            .state;
        let target = claim.serial;
        let rename = Operation::Update {
            target,
            update: UpdateOp {
                name: Some("chat".into()),
                ..UpdateOp::default()
            },
        };
        let err = apply(Some(&claim), rename.clone(), &stamp(2, USER), &limits).unwrap_err();
        assert!(matches!(
            err,
            FoldError::Convention(Denied { name: HANDOFF, .. })
        ));
        assert_eq!(err.code(), crate::ErrorCode::Forbidden);
        let delete = Operation::Delete {
            target,
            delete: DeleteOp::default(),
        };
        assert!(apply(Some(&claim), delete, &stamp(2, USER), &limits).is_err());
        assert!(apply(None, create("handoff"), &stamp(1, USER), &limits).is_err());
        assert!(apply(Some(&claim), rename, &stamp(2, Authority::ALL), &limits).is_ok());
    }

    #[test]
    fn targets() {
        let s = "1764151200000-0000000000000042";
        let e = extras(json!({"target": s}));
        assert_eq!(
            cancel_target(Some("cancel"), Some(&e), &Value::Null),
            Some(s)
        );
        assert_eq!(cancel_target(Some("cancel"), None, &json!(s)), Some(s));
        assert_eq!(cancel_target(Some("steer"), Some(&e), &Value::Null), None);
        assert_eq!(cancel_target(None, Some(&e), &Value::Null), None);
        assert!(cancel_serial(Some("cancel"), Some(&e), &Value::Null).is_some());
        assert!(cancel_serial(Some("cancel"), None, &json!("nope")).is_none());
    }
}
