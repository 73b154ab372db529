//! Appends as fragments, the folded state as a lazy checkpoint.
//!
//! Rewriting a streamed message's whole state on every group commit made
//! the bytes written per append grow with the message (quadratic in its
//! length). Instead an append writes its event once more, small, to the
//! `fragments` keyspace (`channel 0x00 message-seq version-seq`), and the
//! state in `states` is a *checkpoint*: the message as of some version.
//! Its current state is the checkpoint with the fragments after it folded
//! in ([`tether_core::fold::fold_fragment`], the same rule clients use).
//!
//! A checkpoint is written with every create, update and delete, and after
//! appends once the fragment bytes since the last checkpoint reach that
//! checkpoint's size (at least [`MIN_LAG`]); the fragments it covers are
//! removed in the same atomic batch. Checkpoint sizes so grow
//! geometrically: all checkpoints of a message together stay under twice
//! its final size, and a reader folds at most about one checkpoint's worth
//! of fragments.

use tether_core::fold::fold_fragment;
use tether_core::{ChannelName, Message};

use super::keys::{seq_key, trailing_seq, version_key};
use super::message_codec::decode_message;
use super::storage;
use crate::StoreError;

/// Fragment bytes a message may gather before its first checkpoint after
/// a small state: below this, rewriting the state would cost more pages
/// than the fragments it replaces.
pub(crate) const MIN_LAG: usize = 4096;

/// What a message owes its next checkpoint: the fragments written since
/// the last one (their version sequences, to remove them with it), their
/// bytes, and the size of the last checkpoint.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Debt {
    /// Version sequences of the fragments after the checkpoint, in order.
    pub(crate) fragments: Vec<u64>,
    /// Their encoded bytes.
    pub(crate) bytes: usize,
    /// Encoded bytes of the checkpoint.
    pub(crate) checkpoint_bytes: usize,
}

impl Debt {
    /// A debt starting at a checkpoint of `checkpoint_bytes`.
    pub(crate) fn after_checkpoint(checkpoint_bytes: usize) -> Debt {
        Debt {
            fragments: Vec::new(),
            bytes: 0,
            checkpoint_bytes,
        }
    }

    /// Records one more fragment of `bytes` at version `seq`.
    pub(crate) fn add(&mut self, seq: u64, bytes: usize) {
        self.fragments.push(seq);
        self.bytes = self.bytes.saturating_add(bytes);
    }

    /// Whether the fragments, with one more of `extra` bytes, would
    /// outweigh the checkpoint: then the checkpoint is written instead.
    pub(crate) fn due_with(&self, extra: usize) -> bool {
        self.bytes.saturating_add(extra) >= self.checkpoint_bytes.max(MIN_LAG)
    }

    /// Memory the debt holds, for the state cache's byte bound.
    pub(crate) fn memory(&self) -> usize {
        self.fragments.capacity() * std::mem::size_of::<u64>()
    }
}

/// The key of the fragment of message `message_seq` at `version_seq`.
pub(crate) fn fragment_key(channel: &ChannelName, message_seq: u64, version_seq: u64) -> Vec<u8> {
    version_key(channel, message_seq, version_seq)
}

/// The prefix of every fragment of message `message_seq`.
pub(crate) fn fragments_prefix(channel: &ChannelName, message_seq: u64) -> Vec<u8> {
    seq_key(channel, message_seq)
}

/// Decodes a checkpoint and folds the fragments after it (as `(key,
/// value)` pairs in key order, from one consistent view of the store):
/// the message's current state and what it owes its next checkpoint.
/// Fragments at or before the checkpoint's version are skipped, so a
/// fragment left over by an interrupted clean-up changes nothing.
pub(crate) fn current_state<I>(
    checkpoint: &[u8],
    fragments: I,
) -> Result<(Message, Debt), StoreError>
where
    I: IntoIterator<Item = Result<(fjall::UserKey, fjall::UserValue), fjall::Error>>,
{
    let mut state = decode_message("message state", checkpoint)?;
    let mut debt = Debt::after_checkpoint(checkpoint.len());
    for item in fragments {
        let (key, value) = item.map_err(storage)?;
        let version = trailing_seq(&key)?;
        if version <= state.version.serial.seq() {
            continue;
        }
        let fragment = decode_message("message fragment", &value)?;
        fold_fragment(&mut state, &fragment);
        debt.add(version, value.len());
    }
    Ok((state, debt))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn debt_is_due_once_fragments_outweigh_the_checkpoint() {
        let mut debt = Debt::after_checkpoint(10_000);
        assert!(!debt.due_with(6_000));
        debt.add(2, 6_000);
        assert!(!debt.due_with(3_999));
        assert!(debt.due_with(4_000));
        assert_eq!(debt.fragments, vec![2]);
    }

    #[test]
    fn small_states_wait_for_the_minimum_lag() {
        let mut debt = Debt::after_checkpoint(100);
        assert!(
            !debt.due_with(200),
            "a 300-byte rewrite is not worth a checkpoint yet"
        );
        debt.add(2, 200);
        assert!(debt.due_with(MIN_LAG - 200));
    }

    #[test]
    fn fragment_keys_sort_by_version_inside_their_message() {
        let channel = ChannelName::new("c").unwrap();
        let a = fragment_key(&channel, 5, 9);
        let b = fragment_key(&channel, 5, 10);
        let other = fragment_key(&channel, 6, 1);
        assert!(a < b && b < other);
        assert!(a.starts_with(&fragments_prefix(&channel, 5)));
        assert!(!other.starts_with(&fragments_prefix(&channel, 5)));
    }
}
