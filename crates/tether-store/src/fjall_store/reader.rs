//! The read side: point reads and range scans against one fjall snapshot.
//!
//! Each call opens a snapshot first and reads metadata and entries from it,
//! so it sees whole committed batches only, and bounds and entries always
//! agree with each other even while the writer and retention keep going.

use std::cmp::Ordering;

use fjall::{Readable, Snapshot};
use tether_core::{ChannelName, ContinuityLost, LogBounds, Message, ORIGIN, Serial, check_resume};

use super::fragments::{current_state, fragments_prefix};
use super::keys::{channel_prefix, seq_key, trailing_seq};
use super::message_codec::decode_message;
use super::records::{ChannelMeta, decode, decode_ts};
use super::{Handles, storage};
use crate::{Direction, HistoryPage, HistoryQuery, StoreError};

impl Handles {
    /// A channel's metadata as of `snap`.
    fn meta_in(
        &self,
        snap: &Snapshot,
        channel: &ChannelName,
    ) -> Result<Option<ChannelMeta>, StoreError> {
        snap.get(&self.meta, channel.as_str())
            .map_err(storage)?
            .map(|bytes| decode("channel metadata", &bytes))
            .transpose()
    }

    /// See [`crate::LogStore::bounds`].
    pub(crate) fn bounds(&self, channel: &ChannelName) -> Result<Option<LogBounds>, StoreError> {
        let snap = self.db.snapshot();
        Ok(self.meta_in(&snap, channel)?.map(|m| m.bounds()))
    }

    /// See [`crate::LogStore::read_log`].
    pub(crate) fn read_log(
        &self,
        channel: &ChannelName,
        after: Serial,
        limit: usize,
    ) -> Result<Vec<Message>, StoreError> {
        let snap = self.db.snapshot();
        let meta = self.meta_in(&snap, channel)?;
        if let Some(m) = &meta
            && m.resume_floor > 0
            && (after == ORIGIN || (after.epoch() == m.epoch && after.seq() < m.resume_floor))
        {
            // Entries after `after` may have been lost (see `recover.rs`).
            return Err(ContinuityLost::Damaged.into());
        }
        check_resume(after, meta.map(|m| m.bounds()).as_ref())?;
        let Some(meta) = meta else {
            return Ok(Vec::new());
        };
        // `check_resume` passed, so `after` is ORIGIN or in this epoch.
        let start = after.seq().saturating_add(1);
        if limit == 0 || start > meta.last_seq {
            return Ok(Vec::new());
        }
        let range = seq_key(channel, start)..=seq_key(channel, meta.last_seq);
        let mut events = Vec::with_capacity(limit.min(1024));
        for item in snap.range(&self.log, range).take(limit) {
            let (key, value) = item.into_inner().map_err(storage)?;
            let seq = trailing_seq(&key)?;
            let expected = start.saturating_add(events.len() as u64);
            if seq != expected {
                return Err(if events.is_empty() {
                    // Retention removed the start of the range.
                    ContinuityLost::Expired.into()
                } else {
                    StoreError::Corrupt {
                        what: "log",
                        detail: format!("{channel}: entry {expected} missing before {seq}"),
                    }
                });
            }
            events.push(decode_message("log entry", &value)?);
        }
        if events.is_empty() {
            // Entries up to `last_seq` exist by construction; none means they
            // were trimmed under us.
            return Err(ContinuityLost::Expired.into());
        }
        Ok(events)
    }

    /// See [`crate::LogStore::message`].
    pub(crate) fn message(
        &self,
        channel: &ChannelName,
        serial: Serial,
    ) -> Result<Option<Message>, StoreError> {
        let snap = self.db.snapshot();
        self.current_in(&snap, channel, serial)
    }

    fn current_in(
        &self,
        snap: &Snapshot,
        channel: &ChannelName,
        serial: Serial,
    ) -> Result<Option<Message>, StoreError> {
        match self.meta_in(snap, channel)? {
            Some(meta) if meta.epoch == serial.epoch() => {
                match snap
                    .get(&self.states, seq_key(channel, serial.seq()))
                    .map_err(storage)?
                {
                    Some(checkpoint) => self
                        .state_in(snap, channel, serial.seq(), &checkpoint)
                        .map(Some),
                    None => Ok(None),
                }
            }
            _ => Ok(None),
        }
    }

    /// A message's current state in `snap`: its checkpoint with the
    /// fragments after it folded in (see `fragments.rs`).
    fn state_in(
        &self,
        snap: &Snapshot,
        channel: &ChannelName,
        seq: u64,
        checkpoint: &[u8],
    ) -> Result<Message, StoreError> {
        let fragments = snap
            .prefix(&self.fragments, fragments_prefix(channel, seq))
            .map(fjall::Guard::into_inner);
        current_state(checkpoint, fragments).map(|(message, _)| message)
    }

    /// See [`crate::LogStore::versions`].
    pub(crate) fn versions(
        &self,
        channel: &ChannelName,
        serial: Serial,
    ) -> Result<Vec<Message>, StoreError> {
        let snap = self.db.snapshot();
        let Some(current) = self.current_in(&snap, channel, serial)? else {
            return Ok(Vec::new());
        };
        let mut versions: Vec<Message> = Vec::new();
        for item in snap.prefix(&self.versions, seq_key(channel, serial.seq())) {
            let value = item.value().map_err(storage)?;
            versions.push(decode_message("message version", &value)?);
        }
        let newer = versions
            .last()
            .is_none_or(|last| current.version.serial > last.version.serial);
        if newer {
            versions.push(current);
        }
        Ok(versions)
    }

    /// See [`crate::LogStore::history`]. Walks the creation-time index (small
    /// values, so time bounds are checked without decoding messages) and
    /// reads each matching message's current state.
    pub(crate) fn history(
        &self,
        channel: &ChannelName,
        q: &HistoryQuery,
    ) -> Result<HistoryPage, StoreError> {
        let snap = self.db.snapshot();
        let Some(meta) = self.meta_in(&snap, channel)? else {
            return Ok(HistoryPage::default());
        };
        let Some((lo, hi)) = seq_window(meta.epoch, q).filter(|_| q.limit > 0) else {
            return Ok(HistoryPage::default());
        };
        let from = q.from_time.unwrap_or(0);
        let to = q.to_time.unwrap_or(u64::MAX);
        let range = snap.range(&self.created, seq_key(channel, lo)..=seq_key(channel, hi));
        let iter: Box<dyn Iterator<Item = fjall::Guard>> = match q.direction {
            Direction::Forwards => Box::new(range),
            Direction::Backwards => Box::new(range.rev()),
        };
        let mut messages = Vec::new();
        for item in iter {
            let (key, value) = item.into_inner().map_err(storage)?;
            let ts = decode_ts(&value)?;
            // Creation times never decrease along a channel, so once past the
            // time range in the walking direction nothing later matches.
            match q.direction {
                Direction::Forwards if ts > to => break,
                Direction::Backwards if ts < from => break,
                _ if ts < from || ts > to => continue,
                _ => {}
            }
            let state = snap
                .get(&self.states, &key)
                .map_err(storage)?
                .ok_or_else(|| StoreError::Corrupt {
                    what: "message state",
                    detail: format!(
                        "{channel}: indexed message {} missing",
                        trailing_seq(&key).unwrap_or(0)
                    ),
                })?;
            messages.push(self.state_in(&snap, channel, trailing_seq(&key)?, &state)?);
            if messages.len() == q.limit {
                break;
            }
        }
        let next = (messages.len() == q.limit)
            .then(|| messages.last().map(|m| m.serial))
            .flatten();
        Ok(HistoryPage { messages, next })
    }

    /// Every channel's metadata record in `snapshot`, as (channel, value).
    /// The one way to walk `meta`: it skips the store-wide operation count
    /// that shares the keyspace (see `recover::OPS_KEY`).
    pub(crate) fn channel_metas<'a>(
        &'a self,
        snapshot: &'a Snapshot,
    ) -> impl Iterator<Item = Result<(ChannelName, fjall::UserValue), StoreError>> + 'a {
        snapshot.iter(&self.meta).filter_map(|item| {
            let (key, value) = match item.into_inner() {
                Ok(pair) => pair,
                Err(e) => return Some(Err(storage(e))),
            };
            if super::recover::is_ops_key(&key) {
                return None;
            }
            Some(super::keys::channel_of_meta_key(&key).map(|channel| (channel, value)))
        })
    }

    /// All metadata, for the sweep.
    pub(crate) fn channels(&self) -> Vec<Result<ChannelName, StoreError>> {
        let snapshot = self.db.snapshot();
        self.channel_metas(&snapshot)
            .map(|item| item.map(|(channel, _)| channel))
            .collect()
    }

    /// Whether the channel has any log entry (used to refuse to overwrite a
    /// log whose metadata went missing).
    pub(crate) fn has_log(&self, channel: &ChannelName) -> bool {
        self.log.prefix(channel_prefix(channel)).next().is_some()
    }
}

/// The inclusive range of message sequences a history query can match in a
/// log of `epoch`, or `None` if it matches nothing.
fn seq_window(epoch: u64, q: &HistoryQuery) -> Option<(u64, u64)> {
    let (mut lo, mut hi) = (1_u64, u64::MAX);
    if let Some(start) = q.start {
        match start.epoch().cmp(&epoch) {
            Ordering::Less => {}
            Ordering::Greater => return None,
            Ordering::Equal => lo = lo.max(start.seq()),
        }
    }
    if let Some(end) = q.end {
        match end.epoch().cmp(&epoch) {
            Ordering::Greater => {}
            Ordering::Less => return None,
            Ordering::Equal => hi = hi.min(end.seq()),
        }
    }
    if let Some(cursor) = q.cursor {
        match (q.direction, cursor.epoch().cmp(&epoch)) {
            (Direction::Forwards, Ordering::Less) | (Direction::Backwards, Ordering::Greater) => {}
            (Direction::Forwards, Ordering::Greater) | (Direction::Backwards, Ordering::Less) => {
                return None;
            }
            (Direction::Forwards, Ordering::Equal) => lo = lo.max(cursor.seq().checked_add(1)?),
            (Direction::Backwards, Ordering::Equal) => hi = hi.min(cursor.seq().checked_sub(1)?),
        }
    }
    (lo <= hi).then_some((lo, hi))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn s(epoch: u64, seq: u64) -> Option<Serial> {
        Serial::new(epoch, seq)
    }

    #[test]
    fn window_from_bounds_and_cursor() {
        let q = |direction, cursor, start, end| HistoryQuery {
            direction,
            limit: 10,
            cursor,
            start,
            end,
            ..HistoryQuery::default()
        };
        use Direction::*;
        assert_eq!(
            seq_window(5, &q(Forwards, None, None, None)),
            Some((1, u64::MAX))
        );
        assert_eq!(
            seq_window(5, &q(Forwards, s(5, 3), s(5, 2), s(5, 9))),
            Some((4, 9))
        );
        assert_eq!(
            seq_window(5, &q(Backwards, s(5, 3), s(5, 2), s(5, 9))),
            Some((2, 2))
        );
        assert_eq!(seq_window(5, &q(Backwards, s(5, 1), None, None)), None);
        assert_eq!(
            seq_window(5, &q(Forwards, s(4, 8), s(4, 1), s(6, 1))),
            Some((1, u64::MAX))
        );
        assert_eq!(seq_window(5, &q(Forwards, s(6, 0), None, None)), None);
        assert_eq!(seq_window(5, &q(Backwards, s(4, 9), None, None)), None);
        assert_eq!(seq_window(5, &q(Forwards, None, s(6, 1), None)), None);
        assert_eq!(seq_window(5, &q(Forwards, None, None, s(4, 1))), None);
    }
}
