//! Key encoding for every keyspace.
//!
//! A key starts with the channel name and a `0x00` separator, then big-endian
//! integers, so that a prefix scan stays inside one channel and byte order is
//! sequence order. Channel names never contain `0x00` (see
//! [`ChannelName::new`]), so no channel's keys can fall inside another's
//! range.

use tether_core::ChannelName;

use crate::StoreError;

/// Separates the channel name from what follows; sorts before every byte a
/// channel name may hold.
const SEP: u8 = 0x00;

/// `channel 0x00`: the prefix every per-channel key starts with.
pub(crate) fn channel_prefix(channel: &ChannelName) -> Vec<u8> {
    let mut key = Vec::with_capacity(channel.as_str().len() + 1 + 16);
    key.extend_from_slice(channel.as_str().as_bytes());
    key.push(SEP);
    key
}

/// `channel 0x00 seq`: a log entry, a message's current state, or a message's
/// creation-time index entry (each in its own keyspace).
pub(crate) fn seq_key(channel: &ChannelName, seq: u64) -> Vec<u8> {
    let mut key = channel_prefix(channel);
    key.extend_from_slice(&seq.to_be_bytes());
    key
}

/// `channel 0x00 message-seq version-seq`: one stored version of a message.
pub(crate) fn version_key(channel: &ChannelName, message_seq: u64, version_seq: u64) -> Vec<u8> {
    let mut key = seq_key(channel, message_seq);
    key.extend_from_slice(&version_seq.to_be_bytes());
    key
}

/// `channel 0x00 id`: the idempotency record of a client-supplied message id.
pub(crate) fn id_key(channel: &ChannelName, id: &str) -> Vec<u8> {
    let mut key = channel_prefix(channel);
    key.extend_from_slice(id.as_bytes());
    key
}

/// `timestamp channel 0x00 id`: the same id indexed by the time it was
/// recorded, so expiry scans only the oldest ids instead of all of them.
pub(crate) fn id_time_key(timestamp: u64, channel: &ChannelName, id: &str) -> Vec<u8> {
    let mut key = timestamp.to_be_bytes().to_vec();
    key.extend_from_slice(&id_key(channel, id));
    key
}

/// The sequence number a key ends with (`seq_key`, or the version part of
/// `version_key`).
pub(crate) fn trailing_seq(key: &[u8]) -> Result<u64, StoreError> {
    key.len()
        .checked_sub(8)
        .and_then(|start| key.get(start..))
        .and_then(|tail| <[u8; 8]>::try_from(tail).ok())
        .map(u64::from_be_bytes)
        .ok_or_else(|| StoreError::Corrupt {
            what: "key",
            detail: format!("{} bytes is too short for a sequence", key.len()),
        })
}

/// Splits an [`id_time_key`] into its timestamp, channel and id.
pub(crate) fn split_id_time_key(key: &[u8]) -> Result<(u64, ChannelName, String), StoreError> {
    let corrupt = |detail: &str| StoreError::Corrupt {
        what: "idempotency index key",
        detail: detail.to_owned(),
    };
    let (ts, rest) = key
        .split_at_checked(8)
        .ok_or_else(|| corrupt("too short"))?;
    let ts = <[u8; 8]>::try_from(ts).map_err(|_| corrupt("bad timestamp"))?;
    let sep = rest
        .iter()
        .position(|&b| b == SEP)
        .ok_or_else(|| corrupt("no separator"))?;
    let (channel, id) = rest.split_at(sep);
    let channel = std::str::from_utf8(channel)
        .ok()
        .and_then(|c| ChannelName::new(c).ok())
        .ok_or_else(|| corrupt("bad channel name"))?;
    let id = std::str::from_utf8(id.get(1..).unwrap_or_default())
        .map_err(|_| corrupt("bad id"))?
        .to_owned();
    Ok((u64::from_be_bytes(ts), channel, id))
}

/// The channel a metadata key names (metadata keys are the bare name).
pub(crate) fn channel_of_meta_key(key: &[u8]) -> Result<ChannelName, StoreError> {
    std::str::from_utf8(key)
        .ok()
        .and_then(|c| ChannelName::new(c).ok())
        .ok_or_else(|| StoreError::Corrupt {
            what: "channel metadata key",
            detail: String::from_utf8_lossy(key).into_owned(),
        })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn ch(name: &str) -> ChannelName {
        ChannelName::new(name).unwrap()
    }

    #[test]
    fn keys_sort_by_sequence_within_a_channel() {
        let c = ch("a");
        assert!(seq_key(&c, 1) < seq_key(&c, 2));
        assert!(seq_key(&c, 255) < seq_key(&c, 256));
        assert!(seq_key(&c, u64::MAX) < seq_key(&ch("a0"), 0));
        assert!(version_key(&c, 3, 9) < version_key(&c, 4, 0));
        assert!(version_key(&c, 3, 9).starts_with(&seq_key(&c, 3)));
        assert_eq!(trailing_seq(&version_key(&c, 3, 9)).unwrap(), 9);
        assert_eq!(trailing_seq(&seq_key(&c, 77)).unwrap(), 77);
        assert!(trailing_seq(b"short").is_err());
    }

    #[test]
    fn id_time_key_round_trips() {
        let key = id_time_key(42, &ch("x:y"), "msg-1");
        let (ts, c, id) = split_id_time_key(&key).unwrap();
        assert_eq!((ts, c.as_str(), id.as_str()), (42, "x:y", "msg-1"));
        assert!(id_time_key(1, &ch("z"), "a") < id_time_key(2, &ch("a"), "a"));
        assert!(split_id_time_key(b"1234").is_err());
    }
}
