//! Value encoding: a format-version byte followed by JSON (messages use
//! the binary format 2 of `message_codec.rs`).
//!
//! JSON keeps stored records debuggable with any key-value dump tool and
//! reuses the serde shapes `tether-core` already defines; the leading byte
//! lets a later format coexist with this one. The creation-time index is the
//! exception: its value is a bare big-endian `u64`, read in bulk by
//! retention.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tether_core::{LogBounds, Serial};

use crate::StoreError;

/// The JSON record format (every record but messages, which are
/// written in format 2 since; format-1 messages are still read).
pub(crate) const FORMAT_V1: u8 = 1;

/// Encodes `value` as a versioned record.
pub(crate) fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, StoreError> {
    let mut out = vec![FORMAT_V1];
    serde_json::to_writer(&mut out, value).map_err(|e| StoreError::Corrupt {
        what: "record being written",
        detail: e.to_string(),
    })?;
    Ok(out)
}

/// Decodes a versioned record; `what` names it in the error.
pub(crate) fn decode<T: DeserializeOwned>(
    what: &'static str,
    bytes: &[u8],
) -> Result<T, StoreError> {
    match bytes.split_first() {
        Some((&FORMAT_V1, json)) => serde_json::from_slice(json).map_err(|e| StoreError::Corrupt {
            what,
            detail: e.to_string(),
        }),
        Some((v, _)) => Err(StoreError::Corrupt {
            what,
            detail: format!("unknown format version {v}"),
        }),
        None => Err(StoreError::Corrupt {
            what,
            detail: "empty record".into(),
        }),
    }
}

/// A creation-time index value.
pub(crate) fn encode_ts(ts: u64) -> [u8; 8] {
    ts.to_be_bytes()
}

/// Reads a creation-time index value.
pub(crate) fn decode_ts(bytes: &[u8]) -> Result<u64, StoreError> {
    <[u8; 8]>::try_from(bytes)
        .map(u64::from_be_bytes)
        .map_err(|_| StoreError::Corrupt {
            what: "creation-time index",
            detail: format!("{} bytes, expected 8", bytes.len()),
        })
}

/// What the store keeps about a channel besides its entries. Written in the
/// same atomic batch as the entries it describes, so it never lags them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ChannelMeta {
    /// The log's generation, fixed when the channel was first written.
    pub epoch: u64,
    /// Oldest kept sequence (`last_seq + 1` when nothing is kept).
    pub first_seq: u64,
    /// Newest sequence.
    pub last_seq: u64,
    /// How many messages are kept, for retention by count without a scan.
    pub messages: u64,
    /// Time of the newest operation, so timestamps never go backwards within
    /// a channel even if the wall clock does (history time ranges rely on it).
    pub last_ts: u64,
    /// Log entries below this are known to be deleted, so retention's purge
    /// starts here instead of walking the tombstones of earlier purges.
    #[serde(default)]
    pub log_floor: u64,
    /// Set when the journal lost acknowledged data (see `recover.rs`): the
    /// lowest position a resume may start from. Positions before it in this
    /// epoch may name entries that were lost, so they get continuity lost.
    /// 0 when nothing was ever lost.
    #[serde(default)]
    pub resume_floor: u64,
}

impl ChannelMeta {
    /// Metadata of a channel about to be written for the first time.
    pub(crate) fn new(epoch: u64) -> ChannelMeta {
        ChannelMeta {
            epoch,
            first_seq: 1,
            last_seq: 0,
            messages: 0,
            last_ts: 0,
            log_floor: 1,
            resume_floor: 0,
        }
    }

    /// The part readers are told.
    /// Entries before a resume floor cannot be replayed exactly, so the
    /// floor counts as the start of the log.
    pub(crate) fn bounds(&self) -> LogBounds {
        let first_seq = if self.resume_floor > 0 {
            self.first_seq.max(self.resume_floor.saturating_add(1))
        } else {
            self.first_seq
        };
        LogBounds {
            epoch: self.epoch,
            first_seq,
            last_seq: self.last_seq,
        }
    }
}

/// A remembered client-supplied message id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct IdRecord {
    /// The serial of the message first published with the id.
    pub serial: Serial,
    /// When it was published (ms); the id is forgotten a window after.
    pub timestamp: u64,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_reject_garbage() {
        let meta = ChannelMeta::new(7);
        let bytes = encode(&meta).unwrap();
        assert_eq!(bytes[0], FORMAT_V1);
        assert_eq!(decode::<ChannelMeta>("meta", &bytes).unwrap(), meta);
        assert!(decode::<ChannelMeta>("meta", &[]).is_err());
        assert!(decode::<ChannelMeta>("meta", &[9, b'{', b'}']).is_err());
        assert!(decode::<ChannelMeta>("meta", &[FORMAT_V1, b'x']).is_err());
        assert_eq!(decode_ts(&encode_ts(99)).unwrap(), 99);
        assert!(decode_ts(&[1, 2]).is_err());
    }
}
