//! Retention: dropping whole old messages, and forgetting old idempotency ids.
//!
//! Runs on the writer thread (so it never races serial assignment), after a
//! group that took a channel over its `max_messages`, and on every sweep.
//!
//! Trimming a channel drops the oldest messages' states, versions and index
//! entries, raises `first_seq` to the create of the oldest kept message, and
//! deletes the log entries below it. The first fjall batch carries the new
//! `first_seq`; a very long purge continues in further batches of
//! [`CHUNK`] deletions. Readers never look below `first_seq`, so a chunked
//! (or crash-interrupted) purge is invisible to them, and the metadata's
//! `log_floor` lets the next trim finish it without rescanning. Trims are
//! not fsynced: a trim lost in a power cut is simply done again.

use tether_core::ChannelName;

use super::keys::{seq_key, split_id_time_key, trailing_seq};
use super::records::{IdRecord, decode, decode_ts, encode};
use super::storage;
use super::writer::Writer;
use crate::StoreError;

/// Deletions per fjall batch when purging many keys.
const CHUNK: usize = 4096;

/// Decides, walking a channel's messages oldest first, which ones retention
/// drops: the same answer as [`tether_core::settings::retention_cut`], but
/// without collecting every message first (it stops at the first kept one).
pub(crate) struct Cut {
    by_count: u64,
    oldest_allowed: u64,
    seen: u64,
    all_too_old: bool,
}

impl Cut {
    /// A cut for a channel holding `messages` messages under `max_messages`
    /// and `retention_secs`, at `now_ms`.
    pub(crate) fn new(messages: u64, max_messages: u64, retention_secs: u64, now_ms: u64) -> Cut {
        Cut {
            by_count: messages.saturating_sub(max_messages),
            oldest_allowed: now_ms.saturating_sub(retention_secs.saturating_mul(1000)),
            seen: 0,
            all_too_old: true,
        }
    }

    /// Whether the next message (created at `created_ms`) goes. Once this
    /// says `false`, no later message goes either.
    pub(crate) fn drops(&mut self, created_ms: u64) -> bool {
        self.all_too_old &= created_ms < self.oldest_allowed;
        let drop = self.seen < self.by_count || self.all_too_old;
        self.seen += 1;
        drop
    }
}

impl Writer {
    /// Trims every channel and expires idempotency ids. Also retires idle
    /// cached states, which otherwise happens only on a commit, so a store
    /// that stopped taking writes lets go of them too.
    pub(super) fn sweep(&mut self) -> Result<(), StoreError> {
        self.states.expire(std::time::Instant::now());
        let now = self.now();
        for channel in self.h.channels() {
            match channel {
                Ok(channel) => self.trim(&channel, now)?,
                Err(e) => tracing::warn!(error = %e, "skipping unreadable channel metadata"),
            }
        }
        self.expire_ids(now)
    }

    /// Applies retention to one channel.
    pub(super) fn trim(&mut self, channel: &ChannelName, now: u64) -> Result<(), StoreError> {
        let Some(mut meta) = self.load_meta(channel)? else {
            return Ok(());
        };
        let settings = self.namespaces.for_channel(channel);
        let mut cut = Cut::new(
            meta.messages,
            settings.max_messages,
            settings.retention_secs,
            now,
        );
        let mut dropped = Vec::new();
        let mut new_first = meta.last_seq.saturating_add(1);
        // Messages below `first_seq` are gone: start there, not at the
        // tombstones of earlier trims.
        let kept = seq_key(channel, meta.first_seq)..=seq_key(channel, u64::MAX);
        for item in self.h.created.range(kept) {
            let (key, value) = item.into_inner().map_err(storage)?;
            let seq = trailing_seq(&key)?;
            if !cut.drops(decode_ts(&value)?) {
                new_first = seq;
                break;
            }
            dropped.push(seq);
        }
        let mut batch = self.h.db.batch();
        for &seq in &dropped {
            batch.remove(&self.h.states, seq_key(channel, seq));
            batch.remove(&self.h.created, seq_key(channel, seq));
            for version in self.h.versions.prefix(seq_key(channel, seq)) {
                batch.remove(&self.h.versions, version.key().map_err(storage)?);
            }
            for fragment in self.h.fragments.prefix(seq_key(channel, seq)) {
                batch.remove(&self.h.fragments, fragment.key().map_err(storage)?);
            }
            self.states.remove(&(channel.clone(), seq));
        }
        if !dropped.is_empty() {
            meta.first_seq = meta.first_seq.max(new_first);
            meta.messages = meta.messages.saturating_sub(dropped.len() as u64);
        }
        if dropped.is_empty() && meta.log_floor >= meta.first_seq {
            return Ok(());
        }
        // Log entries below the new `first_seq`, in chunks; every chunk
        // carries the metadata so the first one already publishes the cut.
        let log = self
            .h
            .log
            .range(seq_key(channel, meta.log_floor)..seq_key(channel, meta.first_seq));
        for item in log {
            batch.remove(&self.h.log, item.key().map_err(storage)?);
            if batch.len() >= CHUNK {
                batch.insert(&self.h.meta, channel.as_str(), encode(&meta)?);
                std::mem::replace(&mut batch, self.h.db.batch())
                    .commit()
                    .map_err(storage)?;
            }
        }
        meta.log_floor = meta.first_seq;
        batch.insert(&self.h.meta, channel.as_str(), encode(&meta)?);
        batch.commit().map_err(storage)?;
        self.metas.insert(channel.clone(), meta, 1);
        if !dropped.is_empty() {
            tracing::debug!(%channel, dropped = dropped.len(), first_seq = meta.first_seq, "trimmed");
        }
        Ok(())
    }

    /// Forgets idempotency ids older than their namespace's window, oldest
    /// first, stopping where no namespace's window can have expired yet.
    fn expire_ids(&mut self, now: u64) -> Result<(), StoreError> {
        let ns = &self.namespaces;
        let min_window = ns
            .namespaces
            .values()
            .map(|s| s.idempotency_window_secs)
            .fold(ns.default.idempotency_window_secs, u64::min);
        let horizon = now.saturating_sub(min_window.saturating_mul(1000));
        let mut batch = self.h.db.batch();
        for item in self.h.id_times.range(..horizon.to_be_bytes().to_vec()) {
            let key = item.key().map_err(storage)?;
            let (ts, channel, id_key) = match split_id_time_key(&key) {
                Ok(parts) => parts,
                Err(e) => {
                    tracing::warn!(error = %e, "dropping unreadable idempotency index entry");
                    batch.remove(&self.h.id_times, key);
                    continue;
                }
            };
            let window = ns
                .for_channel(&channel)
                .idempotency_window_secs
                .saturating_mul(1000);
            if now.saturating_sub(ts) <= window {
                continue;
            }
            batch.remove(&self.h.id_times, key);
            // The id may have been published again since; keep that record.
            if let Some(bytes) = self.h.ids.get(&id_key).map_err(storage)? {
                let record: IdRecord = decode("idempotency record", &bytes)?;
                if record.timestamp == ts {
                    batch.remove(&self.h.ids, id_key);
                }
            }
            if batch.len() >= CHUNK {
                std::mem::replace(&mut batch, self.h.db.batch())
                    .commit()
                    .map_err(storage)?;
            }
        }
        batch.commit().map_err(storage)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use tether_core::NamespaceSettings;
    use tether_core::settings::retention_cut;

    proptest! {
        #[test]
        fn cut_matches_core(
            mut times in proptest::collection::vec(0_u64..100, 0..20),
            max_messages in 0_u64..25,
            retention_secs in 0_u64..3,
            now in 0_u64..4000,
            sorted in any::<bool>(),
        ) {
            if sorted {
                times.sort_unstable();
            }
            let creates: Vec<(u64, u64)> =
                times.iter().enumerate().map(|(i, &t)| (i as u64 + 1, t * 30)).collect();
            let settings = NamespaceSettings { max_messages, retention_secs, ..Default::default() };
            let expected = retention_cut(&creates, &settings, now).unwrap_or(0);
            let mut cut = Cut::new(creates.len() as u64, max_messages, retention_secs, now);
            let drops = creates.iter().take_while(|&&(_, ts)| cut.drops(ts)).count();
            prop_assert_eq!(drops, expected);
        }
    }
}
