//! Channel names and their namespaces.
//!
//! Channels are named by the application (`conversation:42`). The part before
//! the first `:` is the namespace; it selects the settings (retention, limits,
//! mutability) that apply to the channel.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Longest accepted channel name, in bytes. Names are keys in the store and
/// appear in URLs, so they stay short.
pub const MAX_CHANNEL_NAME_LEN: usize = 200;

/// A validated channel name: 1 to 200 bytes of ASCII letters, digits and
/// `-_:.@=+,~!`, not only dots. No `/`, spaces or control characters, so a
/// name can be put in a URL path segment and a storage key without escaping.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ChannelName(String);

/// Why a string is not a channel name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid channel name {0:?}: use 1-200 characters from A-Z a-z 0-9 - _ : . @ = + , ~ !")]
pub struct InvalidChannelName(pub String);

impl ChannelName {
    /// Validates `name`.
    pub fn new(name: impl Into<String>) -> Result<ChannelName, InvalidChannelName> {
        let name = name.into();
        // `.` and `..` would be normalised away in URL paths.
        let valid = !name.is_empty()
            && !name.bytes().all(|b| b == b'.')
            && name.len() <= MAX_CHANNEL_NAME_LEN
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_:.@=+,~!".contains(&b));
        if valid {
            Ok(ChannelName(name))
        } else {
            Err(InvalidChannelName(name.chars().take(64).collect()))
        }
    }

    /// The name as given.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The namespace: the part before the first `:`, or `None` for a name
    /// without one (which then gets the default settings).
    pub fn namespace(&self) -> Option<&str> {
        self.0.split_once(':').map(|(ns, _)| ns)
    }
}

impl fmt::Display for ChannelName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for ChannelName {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for ChannelName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<ChannelName, D::Error> {
        ChannelName::new(String::deserialize(deserializer)?).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces() {
        let c = ChannelName::new("conversation:42:x").unwrap();
        assert_eq!(c.namespace(), Some("conversation"));
        assert_eq!(ChannelName::new("lobby").unwrap().namespace(), None);
        assert_eq!(ChannelName::new(":x").unwrap().namespace(), Some(""));
    }

    #[test]
    fn validation() {
        for ok in ["a", "agent:planner", "user@example.com", "a-b_c.d=e+f,g~h!"] {
            assert!(ChannelName::new(ok).is_ok(), "{ok}");
        }
        let long = "x".repeat(MAX_CHANNEL_NAME_LEN + 1);
        for bad in [
            "",
            ".",
            "..",
            "...",
            "a b",
            "a/b",
            "a\u{0}",
            "é",
            "a?b",
            "a#b",
            long.as_str(),
        ] {
            assert!(ChannelName::new(bad).is_err(), "{bad:?}");
        }
        assert!(ChannelName::new("x".repeat(MAX_CHANNEL_NAME_LEN)).is_ok());
    }
}
