//! Capabilities: which operations a credential may perform on which
//! channels. Deny by default.
//!
//! A capability set maps channel *patterns* to operations. A pattern is an
//! exact channel name, or a prefix ending in `*` (`conversation:*`,
//! `conversation:user-7*`, `*`). A token's capabilities only ever narrow
//! its key's: a request is allowed only if both the token and the key allow
//! it (see [`Capabilities::allows`] used twice by the server), and minting
//! refuses a token asking for more than its key has ([`Capabilities::within`]).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::channel::ChannelName;

/// One thing a credential may do on a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Operation {
    /// Attach / stream a channel's messages.
    Subscribe,
    /// Publish new messages.
    Publish,
    /// Read history, single messages and versions.
    History,
    /// Enter, update and leave presence.
    Presence,
    /// Receive presence events and read the member list.
    PresenceSubscribe,
    /// Append to and update messages this client created.
    MessageUpdateOwn,
    /// Append to and update any message.
    MessageUpdateAny,
    /// Delete messages this client created.
    MessageDeleteOwn,
    /// Delete any message.
    MessageDeleteAny,
    /// Act as an operator: claim a conversation from its agent.
    Operator,
    /// Read server statistics and metrics.
    Stats,
}

impl Operation {
    /// Every operation, in wire-name order for documentation.
    pub const ALL: [Operation; 11] = [
        Operation::Subscribe,
        Operation::Publish,
        Operation::History,
        Operation::Presence,
        Operation::PresenceSubscribe,
        Operation::MessageUpdateOwn,
        Operation::MessageUpdateAny,
        Operation::MessageDeleteOwn,
        Operation::MessageDeleteAny,
        Operation::Operator,
        Operation::Stats,
    ];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Subscribe => "subscribe",
            Operation::Publish => "publish",
            Operation::History => "history",
            Operation::Presence => "presence",
            Operation::PresenceSubscribe => "presence-subscribe",
            Operation::MessageUpdateOwn => "message-update-own",
            Operation::MessageUpdateAny => "message-update-any",
            Operation::MessageDeleteOwn => "message-delete-own",
            Operation::MessageDeleteAny => "message-delete-any",
            Operation::Operator => "operator",
            Operation::Stats => "stats",
        }
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An operation name that is not one of ours.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown capability {0:?}")]
pub struct UnknownOperation(pub String);

impl FromStr for Operation {
    type Err = UnknownOperation;

    fn from_str(s: &str) -> Result<Operation, UnknownOperation> {
        Operation::ALL
            .into_iter()
            .find(|op| op.as_str() == s)
            .ok_or_else(|| UnknownOperation(s.chars().take(40).collect()))
    }
}

/// Operations granted on one pattern: a set, or everything (`"*"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Grant {
    /// Every operation.
    All,
    /// These operations.
    Some(BTreeSet<Operation>),
}

impl Grant {
    fn contains(&self, op: Operation) -> bool {
        match self {
            Grant::All => true,
            Grant::Some(ops) => ops.contains(&op),
        }
    }
}

impl Serialize for Grant {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Grant::All => vec!["*"].serialize(serializer),
            Grant::Some(ops) => ops
                .iter()
                .map(|op| op.as_str())
                .collect::<Vec<_>>()
                .serialize(serializer),
        }
    }
}

impl<'de> Deserialize<'de> for Grant {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Grant, D::Error> {
        let names = Vec::<String>::deserialize(deserializer)?;
        if names.iter().any(|n| n == "*") {
            return Ok(Grant::All);
        }
        names
            .iter()
            .map(|n| n.parse())
            .collect::<Result<BTreeSet<_>, _>>()
            .map(Grant::Some)
            .map_err(serde::de::Error::custom)
    }
}

/// A channel pattern: exact, or a prefix when it ends with `*`.
fn pattern_matches(pattern: &str, channel: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => channel.starts_with(prefix),
        None => pattern == channel,
    }
}

/// Whether every channel `inner` matches is also matched by `outer`.
fn pattern_covers(outer: &str, inner: &str) -> bool {
    match (outer.strip_suffix('*'), inner.strip_suffix('*')) {
        (Some(outer), Some(inner)) => inner.starts_with(outer),
        (Some(outer), None) => inner.starts_with(outer),
        (None, Some(_)) => false,
        (None, None) => outer == inner,
    }
}

/// A capability set: pattern → operations.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Capabilities(pub BTreeMap<String, Grant>);

impl Capabilities {
    /// Everything on every channel: what `--dev` and a bare `--key` grant.
    pub fn all() -> Capabilities {
        Capabilities(BTreeMap::from([("*".to_owned(), Grant::All)]))
    }

    /// Whether `op` is allowed on `channel`.
    pub fn allows(&self, channel: &ChannelName, op: Operation) -> bool {
        self.0.iter().any(|(pattern, grant)| {
            pattern_matches(pattern, channel.as_str()) && grant.contains(op)
        })
    }

    /// Whether `op` is allowed on some channel (for channel-less operations
    /// such as reading metrics).
    pub fn allows_anywhere(&self, op: Operation) -> bool {
        self.0.values().any(|grant| grant.contains(op))
    }

    /// Checks that every grant of `self` is covered by `outer`; returns the
    /// first one that is not, as `(pattern, operation name)`.
    pub fn within(&self, outer: &Capabilities) -> Result<(), (String, String)> {
        for (pattern, grant) in &self.0 {
            let ops: Vec<Option<Operation>> = match grant {
                Grant::All => vec![None],
                Grant::Some(ops) => ops.iter().copied().map(Some).collect(),
            };
            for op in ops {
                let covered = outer.0.iter().any(|(outer_pattern, outer_grant)| {
                    pattern_covers(outer_pattern, pattern)
                        && match op {
                            Some(op) => outer_grant.contains(op),
                            None => *outer_grant == Grant::All,
                        }
                });
                if !covered {
                    let name = op.map_or("*", Operation::as_str);
                    return Err((pattern.clone(), name.to_owned()));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps(json: &str) -> Capabilities {
        serde_json::from_str(json).unwrap()
    }

    fn ch(name: &str) -> ChannelName {
        ChannelName::new(name).unwrap()
    }

    #[test]
    fn patterns() {
        assert!(pattern_matches("*", "a"));
        assert!(pattern_matches("conversation:*", "conversation:1"));
        assert!(!pattern_matches("conversation:*", "conversations"));
        assert!(pattern_matches("conversation:u7*", "conversation:u7:x"));
        assert!(pattern_matches("a", "a"));
        assert!(!pattern_matches("a", "ab"));
    }

    #[test]
    fn allows_is_deny_by_default() {
        let c = caps(r#"{"conversation:u1":["subscribe","publish"],"agent:*":["*"]}"#);
        assert!(c.allows(&ch("conversation:u1"), Operation::Subscribe));
        assert!(!c.allows(&ch("conversation:u1"), Operation::History));
        assert!(!c.allows(&ch("conversation:u2"), Operation::Subscribe));
        for op in Operation::ALL {
            assert!(c.allows(&ch("agent:x"), op));
        }
        assert!(!Capabilities::default().allows(&ch("a"), Operation::Subscribe));
        assert!(c.allows_anywhere(Operation::Stats));
        assert!(!caps(r#"{"a":["publish"]}"#).allows_anywhere(Operation::Stats));
    }

    #[test]
    fn narrowing() {
        let key = caps(r#"{"conversation:*":["subscribe","publish","history"],"lobby":["*"]}"#);
        assert!(
            caps(r#"{"conversation:u1":["subscribe"]}"#)
                .within(&key)
                .is_ok()
        );
        assert!(
            caps(r#"{"conversation:u*":["publish"]}"#)
                .within(&key)
                .is_ok()
        );
        assert!(caps(r#"{"lobby":["*"]}"#).within(&key).is_ok());
        assert_eq!(
            caps(r#"{"conversation:u1":["message-delete-any"]}"#).within(&key),
            Err(("conversation:u1".into(), "message-delete-any".into()))
        );
        assert!(caps(r#"{"*":["subscribe"]}"#).within(&key).is_err());
        assert!(caps(r#"{"conversation:*":["*"]}"#).within(&key).is_err());
        assert!(caps(r#"{"lobby2":["subscribe"]}"#).within(&key).is_err());
    }

    #[test]
    fn wire_format() {
        assert!(serde_json::from_str::<Capabilities>(r#"{"a":["fly"]}"#).is_err());
        let c = caps(r#"{"a":["publish","subscribe"],"b":["*","publish"]}"#);
        assert_eq!(
            serde_json::to_string(&c).unwrap(),
            r#"{"a":["subscribe","publish"],"b":["*"]}"#
        );
        for op in Operation::ALL {
            assert_eq!(op.as_str().parse::<Operation>(), Ok(op));
        }
    }
}
