//! The embedded [`SessionStore`]: session records in `sessions`, outcomes of
//! sequenced operations in `session_ops` (see [`crate::sessions`] for why
//! this split keeps exactly-once across a crash).

use fjall::{OwnedWriteBatch, PersistMode};
use serde::{Deserialize, Serialize};
use tether_core::{ErrorInfo, Serial};

use super::records::{decode, encode};
use super::writer::Writer;
use super::{FjallStore, Handles, storage};
use crate::{Ack, SEQ_WINDOW, SeqOutcome, Sequenced, SessionStore, StoreError};

/// Prefix of session record keys in `sessions`.
const SESSION: u8 = b's';
/// The key of the last-alive time in `sessions`.
const ALIVE: &[u8] = b"alive";

/// An outcome as stored.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum OutcomeRecord {
    Ack {
        serial: Serial,
        version_serial: Serial,
        duplicate: bool,
    },
    Refused(ErrorInfo),
}

fn session_key(connection_id: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(connection_id.len() + 1);
    key.push(SESSION);
    key.extend_from_slice(connection_id.as_bytes());
    key
}

/// `connection id 0x00`: every outcome of one connection sorts under it.
/// Server-issued connection ids never contain `0x00`.
fn outcome_prefix(connection_id: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(connection_id.len() + 9);
    key.extend_from_slice(connection_id.as_bytes());
    key.push(0);
    key
}

fn outcome_key(connection_id: &str, seq: u64) -> Vec<u8> {
    let mut key = outcome_prefix(connection_id);
    key.extend_from_slice(&seq.to_be_bytes());
    key
}

impl Writer {
    /// Stages the outcome of a sequenced operation into the group's batch,
    /// so it commits (or not) together with the operation. Only outcomes
    /// that say what happened to the log are recorded: an ack, or a refusal
    /// by the folding rules. A storage failure applied nothing, so a re-send
    /// may rightly apply it.
    pub(super) fn stage_outcome(
        &self,
        batch: &mut OwnedWriteBatch,
        sequence: &Sequenced,
        result: &Result<Ack, StoreError>,
    ) {
        let record = match result {
            Ok(ack) => OutcomeRecord::Ack {
                serial: ack.serial,
                version_serial: ack.version_serial,
                duplicate: ack.duplicate,
            },
            Err(err @ StoreError::Rejected(_)) => {
                OutcomeRecord::Refused(ErrorInfo::new(err.code(), err.to_string()))
            }
            Err(_) => return,
        };
        let Ok(bytes) = encode(&record) else { return };
        let id = &sequence.connection_id;
        batch.insert(&self.h.session_ops, outcome_key(id, sequence.seq), bytes);
        if let Some(old) = sequence.seq.checked_sub(SEQ_WINDOW) {
            batch.remove(&self.h.session_ops, outcome_key(id, old));
        }
    }
}

impl Handles {
    /// Commits a small batch, handed to the OS (survives a process crash);
    /// the next operation batch's fsync makes it power-safe, being written
    /// after it to the same journal.
    fn commit_buffered(&self, fill: impl FnOnce(&mut OwnedWriteBatch)) -> Result<(), StoreError> {
        let mut batch = self.db.batch();
        fill(&mut batch);
        batch
            .durability(Some(PersistMode::Buffer))
            .commit()
            .map_err(storage)
    }
}

impl SessionStore for FjallStore {
    fn put_session(&self, connection_id: &str, record: &[u8]) -> Result<(), StoreError> {
        let mut value = Vec::with_capacity(record.len() + 1);
        value.push(1);
        value.extend_from_slice(record);
        let h = self.slot.get()?;
        h.commit_buffered(|b| b.insert(&h.sessions, session_key(connection_id), value))
    }

    fn session(&self, connection_id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let value = self
            .slot
            .get()?
            .sessions
            .get(session_key(connection_id))
            .map_err(storage)?;
        value.map(|v| unversion(&v)).transpose()
    }

    fn sessions(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let mut out = Vec::new();
        for item in self.slot.get()?.sessions.prefix([SESSION]) {
            let (key, value) = item.into_inner().map_err(storage)?;
            let id = String::from_utf8_lossy(key.get(1..).unwrap_or_default()).into_owned();
            out.push((id, unversion(&value)?));
        }
        Ok(out)
    }

    fn delete_session(&self, connection_id: &str) -> Result<(), StoreError> {
        let h = self.slot.get()?;
        let mut keys = Vec::new();
        for item in h.session_ops.prefix(outcome_prefix(connection_id)) {
            keys.push(item.key().map_err(storage)?);
        }
        // Most connections that end never had a record (unauthenticated)
        // or were already deleted: a read is cheaper than a tombstone.
        let key = session_key(connection_id);
        if keys.is_empty() && !h.sessions.contains_key(&key).map_err(storage)? {
            return Ok(());
        }
        h.commit_buffered(|b| {
            b.remove(&h.sessions, key);
            for key in keys {
                b.remove(&h.session_ops, key);
            }
        })
    }

    fn outcomes(&self, connection_id: &str) -> Result<Vec<(u64, SeqOutcome)>, StoreError> {
        let mut out = Vec::new();
        for item in self
            .slot
            .get()?
            .session_ops
            .prefix(outcome_prefix(connection_id))
        {
            let (key, value) = item.into_inner().map_err(storage)?;
            let seq = super::keys::trailing_seq(&key)?;
            let outcome = match decode::<OutcomeRecord>("sequenced outcome", &value)? {
                OutcomeRecord::Ack {
                    serial,
                    version_serial,
                    duplicate,
                } => Ok(Ack {
                    serial,
                    version_serial,
                    duplicate,
                }),
                OutcomeRecord::Refused(err) => Err(err),
            };
            out.push((seq, outcome));
        }
        Ok(out)
    }

    fn set_alive(&self, now_ms: u64) -> Result<(), StoreError> {
        let h = self.slot.get()?;
        h.commit_buffered(|b| b.insert(&h.sessions, ALIVE, now_ms.to_be_bytes().to_vec()))
    }

    fn alive(&self) -> Result<Option<u64>, StoreError> {
        let value = self.slot.get()?.sessions.get(ALIVE).map_err(storage)?;
        Ok(value
            .and_then(|v| <[u8; 8]>::try_from(&v[..]).ok())
            .map(u64::from_be_bytes))
    }
}

/// Strips the format byte of a session record.
fn unversion(value: &[u8]) -> Result<Vec<u8>, StoreError> {
    match value.split_first() {
        Some((1, rest)) => Ok(rest.to_vec()),
        _ => Err(StoreError::Corrupt {
            what: "session record",
            detail: "unknown format".into(),
        }),
    }
}
