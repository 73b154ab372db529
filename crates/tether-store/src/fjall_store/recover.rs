//! Opening a store whose journal lost acknowledged data.
//!
//! `marks.rs` tells how many operations may have been acknowledged; the
//! count stored with the data (in `meta` and in `log`) how many fjall
//! recovered. When fjall recovered fewer, up to
//! the difference (`lost`) are gone, and which channels they were on is
//! gone with them. The rule, applied to every channel:
//!
//! - its next sequence is moved `lost + 1` past what was recovered (the
//!   higher of its metadata's and its log's last sequence), so no serial
//!   that may have been acknowledged is handed out again: the metadata is
//!   as of operation `recovered` or later, and a channel cannot have had
//!   more entries after that than the whole store;
//! - its `resume_floor` is set to the new head: a resume from any earlier
//!   position gets continuity lost (`ContinuityLost::Damaged`, 41000) and
//!   the current state, instead of a replay that silently misses the lost
//!   entries; a resume from the new head is exact.
//!
//! The epoch stays, so the messages that survived keep their serials and can
//! still be read, appended to, edited and deleted. The fix-up is written
//! before the writer starts; the operation count is written last, so a crash
//! during it repeats it (harmlessly, with one more gap) at the next open.

use std::path::Path;

use fjall::{PersistMode, Readable};

use super::keys::{channel_prefix, trailing_seq};
use super::marks::{self, ReadError};
use super::records::{ChannelMeta, decode, encode};
use super::{Handles, storage};
use crate::StoreError;

/// The key of the operation count, written with every group into both the
/// `meta` and the `log` keyspace. It starts with `0x00`, which no channel
/// name does, so it never collides with a channel's keys (iterations over
/// `meta` skip it: they all go through `Handles::channel_metas`).
pub(crate) const OPS_KEY: &[u8] = b"\x00ops";

/// Whether a `meta` key is the operation count rather than a channel.
pub(crate) fn is_ops_key(key: &[u8]) -> bool {
    key.first() == Some(&0)
}
/// Channels named one by one in the error log before summarizing.
const NAMED: usize = 20;
/// Metadata records per fjall batch during the fix-up.
const CHUNK: usize = 4096;

/// The operation count fjall recovered: the lower of the two copies.
///
/// fjall flushes each keyspace on its own, and a damaged journal only costs
/// a keyspace what it had not flushed yet, so after damage the keyspaces
/// can have recovered to different points. The channel metadata and its
/// count are in one keyspace and so always agree; the log's copy tells
/// whether the log lost more.
pub(crate) fn recovered_ops(h: &Handles) -> Result<u64, StoreError> {
    let read = |keyspace: &fjall::Keyspace| -> Result<u64, StoreError> {
        match keyspace.get(OPS_KEY).map_err(storage)? {
            None => Ok(0),
            Some(bytes) => <[u8; 8]>::try_from(&bytes[..])
                .map(u64::from_be_bytes)
                .map_err(|_| StoreError::Corrupt {
                    what: "operation count",
                    detail: format!("{} bytes, expected 8", bytes.len()),
                }),
        }
    };
    Ok(read(&h.meta)?.min(read(&h.log)?))
}

/// Compares what fjall recovered with what may have been acknowledged,
/// repairs every channel if data was lost, and returns the count the writer
/// continues at.
pub(crate) fn check(h: &Handles, dir: &Path) -> Result<u64, StoreError> {
    let recovered = recovered_ops(h)?;
    let file = dir.join(marks::FILE);
    let record = match marks::read(dir) {
        Ok(record) => record,
        Err(ReadError::Garbled) => {
            tracing::error!(
                path = %file.display(),
                "the serial high-water mark is unreadable: this open cannot tell whether the \
                 journal lost acknowledged data; it is rewritten from what was recovered"
            );
            None
        }
        Err(ReadError::Io(e)) => {
            return Err(StoreError::Storage(format!(
                "cannot read {}: {e}",
                file.display()
            )));
        }
    };
    let Some(record) = record else {
        if recovered > 0 {
            tracing::warn!(
                path = %file.display(),
                "the serial high-water mark is missing although the store holds data; it is \
                 recreated, but this open cannot check the journal for lost data"
            );
        }
        return Ok(recovered);
    };
    let (acknowledged, exact) = record.acknowledged(marks::boot_id().as_deref());
    if recovered >= acknowledged {
        return Ok(recovered);
    }
    let lost = acknowledged - recovered;
    if exact {
        tracing::error!(
            path = %dir.display(),
            lost,
            recovered,
            acknowledged,
            "DATA LOSS: the journal lost its tail: {lost} acknowledged operations (store-wide \
             operations {} to {acknowledged}) are missing after recovery",
            recovered + 1
        );
    } else {
        tracing::error!(
            path = %dir.display(),
            lost,
            recovered,
            reserved = acknowledged,
            "POSSIBLE DATA LOSS: the machine restarted without a clean shutdown of the store; up \
             to {lost} acknowledged operations (store-wide operations {} to {acknowledged}) may \
             be missing after recovery",
            recovered + 1
        );
    }
    let repaired = repair(h, lost, acknowledged)?;
    tracing::error!(
        channels = repaired,
        gap = lost + 1,
        "every channel now continues {} sequences past what was recovered, so no serial is \
         reused; clients resuming from an earlier position get continuity lost (41000) and the \
         current state",
        lost + 1
    );
    Ok(acknowledged)
}

/// Moves every channel's next sequence `lost + 1` ahead and sets its resume
/// floor; writes the operation count `ops` last. Returns how many channels.
fn repair(h: &Handles, lost: u64, ops: u64) -> Result<usize, StoreError> {
    let snapshot = h.db.snapshot();
    let mut batch = h.db.batch();
    let mut channels = 0_usize;
    for item in h.channel_metas(&snapshot) {
        let (channel, value) = item?;
        let mut meta: ChannelMeta = decode("channel metadata", &value)?;
        // The log may have kept more than the metadata (flushed further).
        let logged = match snapshot
            .prefix(&h.log, channel_prefix(&channel))
            .next_back()
        {
            Some(item) => trailing_seq(&item.key().map_err(storage)?)?,
            None => 0,
        };
        let head = meta.last_seq.max(logged);
        meta.last_seq = head.saturating_add(lost).saturating_add(1);
        meta.resume_floor = meta.last_seq;
        channels += 1;
        if channels <= NAMED {
            tracing::error!(
                %channel,
                epoch = meta.epoch,
                recovered_up_to = head,
                "entries of {channel} after sequence {head} may be lost; it continues after \
                 sequence {}",
                meta.last_seq
            );
        }
        batch.insert(
            &h.meta,
            channel.as_str().as_bytes().to_vec(),
            encode(&meta)?,
        );
        if batch.len() >= CHUNK {
            std::mem::replace(&mut batch, h.db.batch())
                .durability(Some(PersistMode::SyncAll))
                .commit()
                .map_err(storage)?;
        }
    }
    if channels > NAMED {
        tracing::error!("... and {} more channels", channels - NAMED);
    }
    batch.insert(&h.meta, OPS_KEY, ops.to_be_bytes().to_vec());
    batch.insert(&h.log, OPS_KEY, ops.to_be_bytes().to_vec());
    batch
        .durability(Some(PersistMode::SyncAll))
        .commit()
        .map_err(storage)?;
    Ok(channels)
}
