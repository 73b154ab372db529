//! Per-namespace settings: retention, limits and mutability.
//!
//! A channel's namespace is the part of its name before the first `:`;
//! channels without one, and namespaces without their own entry, use the
//! defaults.

use std::collections::HashMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::channel::ChannelName;
use crate::fold::FoldLimits;

/// Settings for the channels of one namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NamespaceSettings {
    /// Messages older than this are dropped from the log (seconds).
    pub retention_secs: u64,
    /// At most this many messages are kept per channel; the oldest go first.
    pub max_messages: u64,
    /// Largest message after folding appends, in bytes.
    pub max_message_bytes: usize,
    /// Whether messages may be appended to, updated and deleted.
    pub mutable: bool,
    /// How long a client-supplied message id is remembered for idempotent
    /// publish (seconds).
    pub idempotency_window_secs: u64,
    /// Appends to one message are rolled up into one delivery per window
    /// (ms) for each subscriber; 0 sends every fragment. A connection can
    /// choose its own window (`?rollup_ms=`).
    pub rollup_ms: u64,
    /// A response still `extras.stream: "streaming"` with no append for this
    /// long (seconds) is ended by the server with status `error` and reason
    /// `abandoned`, so a dead writer cannot leave it streaming forever.
    /// 0 never ends one.
    pub abandon_after_secs: u64,
}

impl Default for NamespaceSettings {
    fn default() -> NamespaceSettings {
        NamespaceSettings {
            retention_secs: 24 * 60 * 60,
            max_messages: 10_000,
            max_message_bytes: 64 * 1024,
            mutable: true,
            idempotency_window_secs: 120,
            rollup_ms: 40,
            abandon_after_secs: 300,
        }
    }
}

impl NamespaceSettings {
    /// Retention by age as a duration.
    pub fn retention(&self) -> Duration {
        Duration::from_secs(self.retention_secs)
    }

    /// The limits folding checks against.
    pub fn fold_limits(&self) -> FoldLimits {
        FoldLimits {
            max_message_bytes: self.max_message_bytes,
            mutable: self.mutable,
        }
    }
}

/// The settings of every namespace, with a fallback.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Namespaces {
    /// Used for channels whose namespace has no entry.
    pub default: NamespaceSettings,
    /// Settings by namespace name.
    pub namespaces: HashMap<String, NamespaceSettings>,
}

impl Namespaces {
    /// The settings that apply to `channel`.
    pub fn for_channel(&self, channel: &ChannelName) -> &NamespaceSettings {
        channel
            .namespace()
            .and_then(|ns| self.namespaces.get(ns))
            .unwrap_or(&self.default)
    }
}

/// How many of a channel's oldest messages retention drops, given
/// `(create sequence, creation time ms)` of its messages in ascending order:
/// enough to keep at most `max_messages`, and none older than
/// `retention_secs` before `now_ms`. `None` when nothing needs to go.
///
/// Pure so it can be tested without a store.
pub fn retention_cut(
    creates: &[(u64, u64)],
    settings: &NamespaceSettings,
    now_ms: u64,
) -> Option<usize> {
    let by_count = creates
        .len()
        .saturating_sub(usize::try_from(settings.max_messages).unwrap_or(usize::MAX));
    let oldest_allowed = now_ms.saturating_sub(settings.retention_secs.saturating_mul(1000));
    let by_age = creates
        .iter()
        .position(|&(_, ts)| ts >= oldest_allowed)
        .unwrap_or(creates.len());
    let drop = by_count.max(by_age);
    (drop > 0).then_some(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(max_messages: u64, retention_secs: u64) -> NamespaceSettings {
        NamespaceSettings {
            max_messages,
            retention_secs,
            ..NamespaceSettings::default()
        }
    }

    #[test]
    fn lookup_by_namespace() {
        let mut ns = Namespaces::default();
        ns.namespaces.insert(
            "tmp".into(),
            NamespaceSettings {
                mutable: false,
                ..Default::default()
            },
        );
        assert!(!ns.for_channel(&ChannelName::new("tmp:1").unwrap()).mutable);
        assert!(ns.for_channel(&ChannelName::new("tmp").unwrap()).mutable);
        assert!(
            ns.for_channel(&ChannelName::new("other:1").unwrap())
                .mutable
        );
    }

    #[test]
    fn cut_by_count_and_age() {
        let creates = [(1, 1_000), (5, 2_000), (9, 3_000), (12, 4_000)];
        assert_eq!(retention_cut(&creates, &settings(10, 100), 4_000), None);
        assert_eq!(retention_cut(&creates, &settings(3, 100), 4_000), Some(1));
        assert_eq!(retention_cut(&creates, &settings(10, 2), 4_500), Some(2));
        assert_eq!(retention_cut(&creates, &settings(1, 2), 4_500), Some(3));
        assert_eq!(retention_cut(&creates, &settings(10, 0), 9_000), Some(4));
        assert_eq!(retention_cut(&[], &settings(0, 0), 9_000), None);
    }
}
