//! One group commit: stage every submission, write one fjall batch, persist
//! once, then hand the events to the sink and complete the receipts.
//!
//! Everything a group changes is staged in a [`Staged`] first and reaches
//! the writer's caches only after the commit succeeded, so the caches never
//! hold anything uncommitted (a failed commit at worst empties some of them).

use std::collections::HashMap;
use std::sync::Arc;

use fjall::{OwnedWriteBatch, PersistMode};
use serde_json::Value;
use tether_core::fold::fold_fragment;
use tether_core::message::message_size;
use tether_core::{Action, ChannelName, Message, Operation, Serial, Stamp, apply_in_place};
use tokio::sync::oneshot;

use super::fragments::{Debt, current_state, fragment_key, fragments_prefix};
use super::keys::{id_key, id_time_key, seq_key, version_key};
use super::message_codec::encode_message;
use super::records::{ChannelMeta, IdRecord, decode, encode, encode_ts};
use super::recover::OPS_KEY;
use super::writer::{Broken, Writer};
use super::{FsyncMode, space, storage};
use crate::{Ack, Committed, StoreError, Submission};

type Reply = oneshot::Sender<Result<Ack, StoreError>>;
type StateKey = (ChannelName, u64);

/// What one group changes, before it is committed.
struct Staged {
    batch: OwnedWriteBatch,
    /// Working metadata of every channel the group wrote to.
    metas: HashMap<ChannelName, ChannelMeta>,
    /// Latest state of every message the group read or wrote, with its
    /// checkpoint debt and what the group did to it.
    states: HashMap<StateKey, StagedState>,
    /// Ids published in this group (by their `ids` key: channel, id,
    /// publisher), for duplicates within it.
    ids: HashMap<Vec<u8>, IdRecord>,
    events: Vec<Arc<Committed>>,
    replies: Vec<(Reply, Result<Ack, StoreError>)>,
}

/// A message's state in a group.
struct StagedState {
    message: Message,
    debt: Debt,
    written: Written,
    /// The group's appends to it merged into one fragment (with the
    /// version sequence of the last), written at commit unless a
    /// checkpoint makes it unnecessary: a burst of appends in one group
    /// costs one fragment record, not one per append.
    fragment: Option<(u64, Message)>,
}

/// What a group did to a message, which decides whether its checkpoint is
/// written at commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Written {
    /// Only read (the target of a refused operation).
    Nothing,
    /// Appended to: fragments were written; a checkpoint only when due.
    Fragments,
    /// Created, updated or deleted: the checkpoint is written.
    Checkpoint,
}

/// Per-entry memory of a cached state beyond its strings: the `Message`
/// itself, its key and the hash map slot, serials and small fields.
const STATE_OVERHEAD: usize = 256;

/// Readies a committed state for the cache and returns what it costs
/// there (bytes, approximately, for the byte bound).
///
/// Folding an append grows the text by doubling, so a streamed state
/// typically holds up to twice its length in capacity; counting length
/// only let the cache hold twice its bound (measured: 38.7 MiB of text for
/// 17.7 MiB counted). The spare capacity is released here (an in-place
/// shrink; the next append copies the text anyway), and what is counted is
/// the capacity that remains.
fn cacheable(m: &mut Message) -> usize {
    let data = match &mut m.data {
        Value::String(text) => {
            text.shrink_to_fit();
            text.capacity()
        }
        _ => message_size(None, &m.data, None),
    };
    let strings = m.id.capacity()
        + m.name.as_ref().map_or(0, String::capacity)
        + m.client_id.as_ref().map_or(0, String::capacity)
        + m.connection_id.as_ref().map_or(0, String::capacity);
    let extras = message_size(None, &Value::Null, m.extras.as_ref());
    data.saturating_add(strings)
        .saturating_add(extras)
        .saturating_add(STATE_OVERHEAD)
}

impl Writer {
    /// Processes one group. Refused operations get their refusal; when the
    /// disk is short of space or the write fails, every other operation of
    /// the group is refused with that failure and nothing of the group is
    /// acknowledged, delivered or kept in the caches (a failed write also
    /// marks the writer broken, see `writer.rs`).
    pub(super) fn process(&mut self, subs: Vec<(Submission, Reply)>) {
        // Checked before anything reaches fjall, which would poison itself
        // on a failed write.
        let config = &self.shared.config;
        if let Err(e) = space::check(&config.path, config.min_free_bytes) {
            self.shared.health.fail(&e);
            let refusal = Broken::new(&e);
            for (_, reply) in subs {
                let _ = reply.send(Err(refusal.error()));
            }
            return;
        }
        let now = self.now();
        let mut st = Staged {
            batch: self.h.db.batch(),
            metas: HashMap::new(),
            states: HashMap::new(),
            ids: HashMap::new(),
            events: Vec::with_capacity(subs.len()),
            replies: Vec::with_capacity(subs.len()),
        };
        for (mut sub, reply) in subs {
            let sequence = sub.sequence.take();
            let result = self.stage(&mut st, sub, now);
            if let Some(sequence) = &sequence {
                self.stage_outcome(&mut st.batch, sequence, &result);
            }
            st.replies.push((reply, result));
        }
        let ops = self.ops.saturating_add(st.events.len() as u64);
        // The high-water mark is durable before any operation it covers.
        // A failed reservation wrote nothing: the group is refused. A
        // failed commit may have reached the journal anyway (fjall can
        // recover a batch whose write reported an error), so its outcome is
        // unknown and the client is told so (50300, retry with the same
        // message id) rather than that nothing was applied.
        let committed = match self.marks.reserve(ops) {
            Err(e) => {
                let refusal = Broken::new(&e);
                Err((
                    Box::new(move || refusal.error()) as Box<dyn Fn() -> StoreError>,
                    e,
                ))
            }
            Ok(()) => self.commit(&mut st, ops).map_err(|e| {
                let unknown = format!(
                    "the write failed ({e}); it may or may not have been applied: \
                     retry with the same message id"
                );
                (
                    Box::new(move || StoreError::Storage(unknown.clone()))
                        as Box<dyn Fn() -> StoreError>,
                    e,
                )
            }),
        };
        if let Err((told, e)) = committed {
            for (reply, result) in st.replies {
                // Refusals by the folding rules stand.
                let result = match result {
                    Err(StoreError::Rejected(r)) => Err(StoreError::Rejected(r)),
                    _ => Err(told()),
                };
                let _ = reply.send(result);
            }
            self.note_failure(&e);
            return;
        }
        self.ops = ops;
        // Before any acknowledgement (see `marks.rs`).
        if let Err(e) = self.marks.record(ops) {
            tracing::warn!(error = %e, "cannot record the operation count");
        }
        self.shared.health.recover();
        self.bound_memtables();
        let mut over_limit = Vec::new();
        for (channel, meta) in st.metas {
            if meta.messages > self.namespaces.for_channel(&channel).max_messages {
                over_limit.push(channel.clone());
            }
            self.metas.insert(channel, meta, 1);
        }
        for (key, staged) in st.states {
            let StagedState {
                mut message, debt, ..
            } = staged;
            let size = cacheable(&mut message).saturating_add(debt.memory());
            self.states.insert(key, (message, debt), size);
        }
        self.states.expire(std::time::Instant::now());
        self.report_memory();
        if !st.events.is_empty() {
            self.sink.deliver(st.events);
        }
        // Before the acknowledgements, so a publisher that reads after its
        // acknowledged create already finds the channel trimmed.
        for channel in over_limit {
            if let Err(e) = self.trim(&channel, now) {
                tracing::warn!(%channel, error = %e, "trimming by count failed");
                self.note_failure(&e);
                break;
            }
        }
        for (reply, result) in st.replies {
            let _ = reply.send(result);
        }
    }

    /// Writes the staged states, metadata and the operation count `ops`,
    /// commits and persists.
    fn commit(&mut self, st: &mut Staged, ops: u64) -> Result<(), StoreError> {
        for ((channel, seq), staged) in &mut st.states {
            let checkpoint = match staged.written {
                Written::Nothing => continue,
                Written::Checkpoint => true,
                Written::Fragments => match staged.fragment.take() {
                    Some((version, fragment)) => {
                        let bytes = encode_message(&fragment);
                        if staged.debt.due_with(bytes.len()) {
                            true
                        } else {
                            staged.debt.add(version, bytes.len());
                            st.batch.insert(
                                &self.h.fragments,
                                fragment_key(channel, *seq, version),
                                bytes,
                            );
                            false
                        }
                    }
                    None => false,
                },
            };
            if !checkpoint {
                continue;
            }
            let bytes = encode_message(&staged.message);
            // The fragments of earlier groups; this group's own was never
            // written, the checkpoint holds it.
            for version in staged.debt.fragments.drain(..) {
                st.batch
                    .remove(&self.h.fragments, fragment_key(channel, *seq, version));
            }
            staged.debt = Debt::after_checkpoint(bytes.len());
            st.batch
                .insert(&self.h.states, seq_key(channel, *seq), bytes);
        }
        for (channel, meta) in &st.metas {
            st.batch
                .insert(&self.h.meta, channel.as_str(), encode(meta)?);
        }
        if ops > self.ops {
            // In both keyspaces that hold positions (see `recover.rs`).
            st.batch
                .insert(&self.h.meta, OPS_KEY, ops.to_be_bytes().to_vec());
            st.batch
                .insert(&self.h.log, OPS_KEY, ops.to_be_bytes().to_vec());
        }
        let mode = match self.fsync {
            FsyncMode::Batch | FsyncMode::Always => PersistMode::SyncData,
            FsyncMode::Never => PersistMode::Buffer,
        };
        let batch = std::mem::replace(&mut st.batch, self.h.db.batch());
        batch
            .durability(Some(mode))
            .commit()
            .map_err(|e| space::write_error(&e))
    }

    /// Applies one submission to the staged group.
    fn stage(&mut self, st: &mut Staged, sub: Submission, now: u64) -> Result<Ack, StoreError> {
        let Submission {
            channel,
            op,
            client_id,
            connection_id,
            own_only,
            authority,
            publisher,
            ..
        } = sub;
        let settings = self.namespaces.for_channel(&channel).clone();
        let mut meta = match st.metas.get(&channel) {
            Some(meta) => *meta,
            None => self
                .load_meta(&channel)?
                .unwrap_or_else(|| ChannelMeta::new(now)),
        };
        let idempotency_key = match &op {
            Operation::Create(new) => new.id.as_deref().map(|id| id_key(&channel, id, &publisher)),
            _ => None,
        };
        if let Some(key) = &idempotency_key {
            let window_ms = settings.idempotency_window_secs.saturating_mul(1000);
            if let Some(original) = self.seen_id(st, key, now, window_ms)? {
                return Ok(Ack {
                    serial: original,
                    version_serial: original,
                    duplicate: true,
                });
            }
        }
        let seq = meta.last_seq.saturating_add(1);
        let serial = Serial::new(meta.epoch, seq)
            .ok_or_else(|| StoreError::Storage(format!("{channel}: sequence space exhausted")))?;
        let timestamp = now.max(meta.last_ts);
        let target = match op.target() {
            Some(target) if target.epoch() == meta.epoch && target.seq() < seq => {
                self.stage_state(st, &channel, target.seq())?;
                Some((channel.clone(), target.seq()))
            }
            _ => None,
        };
        // The target's staged state, taken out to be folded in place and
        // put back (changed or, after a refusal, as it was).
        let previous = target.as_ref().and_then(|k| st.states.remove(k));
        let (mut slot, kept) = match previous {
            Some(p) => (Some(p.message), Some((p.debt, p.written, p.fragment))),
            None => (None, None),
        };
        let stamp = Stamp {
            serial,
            timestamp,
            client_id: client_id.as_deref(),
            connection_id: connection_id.as_deref(),
            own_only,
            authority,
        };
        let folded = apply_in_place(&mut slot, op, &stamp, &settings.fold_limits());
        let event = match folded {
            Ok(event) => event,
            Err(refusal) => {
                if let (Some(key), Some(message), Some((debt, written, fragment))) =
                    (target, slot, kept)
                {
                    st.states.insert(
                        key,
                        StagedState {
                            message,
                            debt,
                            written,
                            fragment,
                        },
                    );
                }
                return Err(refusal.into());
            }
        };
        let Some(state) = slot else {
            return Err(StoreError::Storage("folding left no state".into()));
        };
        let message_seq = state.serial.seq();
        // Encode everything before touching the batch, so a failure cannot
        // leave half an operation in it. (Encoding these types to JSON
        // cannot fail: every map key is a string.)
        let event_bytes = encode_message(&event);
        let version_bytes = match event.action {
            Action::Append => None,
            Action::Create | Action::Update | Action::Delete => Some(encode_message(&state)),
        };
        let id_record = IdRecord { serial, timestamp };
        let id_bytes = idempotency_key
            .as_ref()
            .map(|_| encode(&id_record))
            .transpose()?;

        let is_append = event.action == Action::Append;
        st.batch
            .insert(&self.h.log, seq_key(&channel, seq), event_bytes);
        if let Some(bytes) = version_bytes {
            st.batch.insert(
                &self.h.versions,
                version_key(&channel, message_seq, seq),
                bytes,
            );
        }
        if event.action == Action::Create {
            st.batch.insert(
                &self.h.created,
                seq_key(&channel, seq),
                encode_ts(timestamp).to_vec(),
            );
            meta.messages = meta.messages.saturating_add(1);
        }
        if let (Some(key), Some(bytes)) = (idempotency_key, id_bytes) {
            st.batch.insert(&self.h.ids, key.clone(), bytes);
            st.batch
                .insert(&self.h.id_times, id_time_key(timestamp, &key), Vec::new());
            st.ids.insert(key, id_record);
        }
        meta.last_seq = seq;
        meta.last_ts = timestamp;
        st.metas.insert(channel.clone(), meta);
        let ack = Ack {
            serial: state.serial,
            version_serial: serial,
            duplicate: false,
        };
        let key = (channel.clone(), message_seq);
        let staged = if is_append {
            let (debt, written, fragment) = match kept {
                Some((debt, written, fragment)) => {
                    (debt, written.max(Written::Fragments), fragment)
                }
                // An append always targets a staged state.
                None => (Debt::default(), Written::Fragments, None),
            };
            let fragment = match fragment {
                Some((_, mut merged)) => {
                    fold_fragment(&mut merged, &event);
                    merged.action = Action::Append;
                    merged
                }
                None => event.clone(),
            };
            StagedState {
                message: state,
                debt,
                written,
                fragment: Some((seq, fragment)),
            }
        } else {
            // A create, update or delete: checkpointed at commit, which
            // also covers any fragment of this group.
            StagedState {
                message: state,
                debt: kept.map(|(debt, ..)| debt).unwrap_or_default(),
                written: Written::Checkpoint,
                fragment: None,
            }
        };
        st.states.insert(key, staged);
        st.events.push(Arc::new(Committed { channel, event }));
        Ok(ack)
    }

    /// Makes sure the current state of message `seq` (if it exists) is in
    /// the staged group, taking it from the cache or the disk.
    fn stage_state(
        &mut self,
        st: &mut Staged,
        channel: &ChannelName,
        seq: u64,
    ) -> Result<(), StoreError> {
        let key = (channel.clone(), seq);
        if st.states.contains_key(&key) {
            return Ok(());
        }
        let state = match self.states.take(&key) {
            Some(state) => Some(state),
            None => match self.h.states.get(seq_key(channel, seq)).map_err(storage)? {
                Some(checkpoint) => Some(current_state(
                    &checkpoint,
                    self.h
                        .fragments
                        .prefix(fragments_prefix(channel, seq))
                        .map(fjall::Guard::into_inner),
                )?),
                None => None,
            },
        };
        if let Some((message, debt)) = state {
            st.states.insert(
                key,
                StagedState {
                    message,
                    debt,
                    written: Written::Nothing,
                    fragment: None,
                },
            );
        }
        Ok(())
    }

    /// The serial first published under idempotency key `key` (channel,
    /// id, publisher), if that was within the idempotency window (in this
    /// group or a committed one).
    fn seen_id(
        &self,
        st: &Staged,
        key: &[u8],
        now: u64,
        window_ms: u64,
    ) -> Result<Option<Serial>, StoreError> {
        let record = match st.ids.get(key) {
            Some(record) => Some(*record),
            None => self
                .h
                .ids
                .get(key)
                .map_err(storage)?
                .map(|bytes| decode::<IdRecord>("idempotency record", &bytes))
                .transpose()?,
        };
        Ok(record
            .filter(|r| now.saturating_sub(r.timestamp) <= window_ms)
            .map(|r| r.serial))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use tether_core::Version;

    fn state(data: Value) -> Message {
        let serial = Serial::new(1, 1).unwrap();
        Message {
            serial,
            id: "m".into(),
            name: Some("response".into()),
            data,
            extras: None,
            client_id: None,
            connection_id: None,
            timestamp: 0,
            action: Action::Update,
            version: Version {
                serial,
                timestamp: 0,
                client_id: None,
                description: None,
                metadata: None,
            },
        }
    }

    #[test]
    fn cached_text_keeps_no_spare_capacity_and_is_counted_whole() {
        // What folding an append leaves: a text grown by doubling.
        let mut text = "x".repeat(10_000);
        text.push('y');
        assert!(text.capacity() >= 2 * 10_000);
        let mut m = state(Value::String(text));
        let size = cacheable(&mut m);
        let Value::String(text) = &m.data else {
            panic!("data changed type")
        };
        assert_eq!(text.len(), 10_001);
        assert!(text.capacity() < 10_001 + 64, "spare capacity kept");
        assert!((10_001 + STATE_OVERHEAD..10_001 + 2 * STATE_OVERHEAD).contains(&size));
    }

    #[test]
    fn non_text_data_is_counted_by_its_json_size() {
        let mut m = state(serde_json::json!({ "k": "v".repeat(1_000) }));
        assert!(cacheable(&mut m) >= 1_000 + STATE_OVERHEAD);
    }
}
