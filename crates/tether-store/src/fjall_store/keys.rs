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

/// `channel 0x00 id 0x00 publisher`: the idempotency record of a
/// client-supplied message id, scoped by who published it.
///
/// Ids are printable ASCII (never `0x00`), so the second separator is
/// unambiguous whatever bytes the publisher holds, and a key written before
/// ids were scoped (`channel 0x00 id`, no second separator) can never equal
/// a scoped one: such records simply stop matching and expire as before.
pub(crate) fn id_key(channel: &ChannelName, id: &str, publisher: &str) -> Vec<u8> {
    let mut key = channel_prefix(channel);
    key.extend_from_slice(id.as_bytes());
    key.push(SEP);
    key.extend_from_slice(publisher.as_bytes());
    key
}

/// `timestamp` followed by the [`id_key`]: the same id indexed by the time
/// it was recorded, so expiry scans only the oldest ids instead of all of
/// them.
pub(crate) fn id_time_key(timestamp: u64, id_key: &[u8]) -> Vec<u8> {
    let mut key = timestamp.to_be_bytes().to_vec();
    key.extend_from_slice(id_key);
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

/// Splits an [`id_time_key`] into its timestamp, channel and the
/// [`id_key`] it indexes (old unscoped entries included).
pub(crate) fn split_id_time_key(key: &[u8]) -> Result<(u64, ChannelName, Vec<u8>), StoreError> {
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
    let channel = rest.get(..sep).unwrap_or_default();
    let channel = std::str::from_utf8(channel)
        .ok()
        .and_then(|c| ChannelName::new(c).ok())
        .ok_or_else(|| corrupt("bad channel name"))?;
    Ok((u64::from_be_bytes(ts), channel, rest.to_vec()))
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
        let key = id_time_key(42, &id_key(&ch("x:y"), "msg-1", "c:user\0x"));
        let (ts, c, id_key_bytes) = split_id_time_key(&key).unwrap();
        assert_eq!((ts, c.as_str()), (42, "x:y"));
        assert_eq!(id_key_bytes, id_key(&ch("x:y"), "msg-1", "c:user\0x"));
        assert!(
            id_time_key(1, &id_key(&ch("z"), "a", "p"))
                < id_time_key(2, &id_key(&ch("a"), "a", "p"))
        );
        assert!(split_id_time_key(b"1234").is_err());
        // An entry from before ids were scoped still splits (so it expires).
        let mut old = 7u64.to_be_bytes().to_vec();
        old.extend_from_slice(b"chan\0msg-1");
        let (ts, c, old_id_key) = split_id_time_key(&old).unwrap();
        assert_eq!(
            (ts, c.as_str(), old_id_key.as_slice()),
            (7, "chan", &b"chan\0msg-1"[..])
        );
    }

    #[test]
    fn id_keys_are_scoped_by_publisher() {
        let c = ch("room");
        assert_ne!(id_key(&c, "m", "c:alice"), id_key(&c, "m", "c:bob"));
        // "m" by "x" must not collide with "m\0x"-like ids: ids hold no 0x00.
        assert_ne!(id_key(&c, "m", ""), id_key(&c, "m", "x"));
        assert!(id_key(&c, "m", "p").starts_with(&channel_prefix(&c)));
    }
}
