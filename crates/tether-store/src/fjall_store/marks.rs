//! The operation high-water mark: how the store notices that its journal
//! lost acknowledged data, so serials are never handed out twice.
//!
//! fjall recovers a damaged journal (a truncated tail, a zeroed block) by
//! silently dropping everything from the damage on. The channel metadata
//! lives in the same batches as the entries, so it rolls back with them and,
//! left alone, the writer would hand out the lost serials again, for other
//! messages. Nothing inside the journal can tell that it lost its tail, so
//! the store keeps a count outside it.
//!
//! # The count
//! Every committed log entry (on any channel) increments one store-wide
//! operation counter. Each group writes the counter's new value into its own
//! fjall batch (in the `meta` and `log` keyspaces), so what fjall recovers
//! always carries the count of what it recovered. A channel's sequence grows by one per entry,
//! so a channel can have lost at most as many entries as the whole store.
//!
//! # This file
//! `tether-serials` in the data directory holds two values:
//! - `reserved`: no operation above it was ever acknowledged. It is raised
//!   in blocks and fsynced *before* the group that needs it commits, so it
//!   holds across power loss.
//! - `last`: the exact count after the last committed group, written after
//!   each commit and before any acknowledgement, without fsync (so it is
//!   exact after a process crash, where the page cache survives; and after a
//!   clean shutdown, which fsyncs it and sets `clean`).
//!
//! It also records the kernel's boot id: when it still matches at the next
//! open, the machine did not restart, the page cache survived, and `last` is
//! exact even without a clean shutdown. After a restart of the machine only
//! `reserved` is certain.
//!
//! # At open
//! What may have been acknowledged is `last` (clean shutdown, or same boot)
//! or `reserved` (the machine restarted since). If fjall recovered fewer
//! operations than that, up to the difference may be lost on any channel:
//! `recover.rs` moves every channel's next sequence past it and refuses
//! resumes from before (see there).

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::StoreError;

/// The file, in the data directory.
pub(crate) const FILE: &str = "tether-serials";
const MAGIC: &[u8; 8] = b"TTHSER01";
const BOOT_LEN: usize = 36;
/// magic, reserved, last, clean, boot id, checksum.
const LEN: usize = 8 + 8 + 8 + 1 + BOOT_LEN + 8;

/// What the file says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Record {
    /// No operation above this was ever acknowledged.
    pub reserved: u64,
    /// The count after the last committed group (exact unless the machine
    /// lost its page cache).
    pub last: u64,
    /// Written by a clean shutdown: `last` is exact and durable.
    pub clean: bool,
    /// The kernel boot id when the record was written.
    pub boot: Option<String>,
}

impl Record {
    fn encode(&self) -> [u8; LEN] {
        let mut out = [0_u8; LEN];
        let mut w = &mut out[..];
        let _ = w.write_all(MAGIC);
        let _ = w.write_all(&self.reserved.to_be_bytes());
        let _ = w.write_all(&self.last.to_be_bytes());
        let _ = w.write_all(&[u8::from(self.clean)]);
        let mut boot = [0_u8; BOOT_LEN];
        if let Some(id) = &self.boot {
            for (dst, src) in boot.iter_mut().zip(id.bytes()) {
                *dst = src;
            }
        }
        let _ = w.write_all(&boot);
        let sum = checksum(&out[..LEN - 8]);
        out[LEN - 8..].copy_from_slice(&sum.to_be_bytes());
        out
    }

    fn decode(bytes: &[u8]) -> Option<Record> {
        let bytes = bytes.get(..LEN)?;
        let (body, sum) = bytes.split_at(LEN - 8);
        if body.get(..8)? != MAGIC || checksum(body).to_be_bytes() != sum {
            return None;
        }
        let u64_at = |at: usize| {
            body.get(at..at + 8)
                .and_then(|b| <[u8; 8]>::try_from(b).ok())
                .map(u64::from_be_bytes)
        };
        let boot = body.get(25..25 + BOOT_LEN)?;
        let boot = std::str::from_utf8(boot)
            .ok()
            .map(|s| s.trim_end_matches('\0').to_owned())
            .filter(|s| !s.is_empty());
        Some(Record {
            reserved: u64_at(8)?,
            last: u64_at(16)?,
            clean: *body.get(24)? == 1,
            boot,
        })
    }

    /// How many operations may have been acknowledged, given the current
    /// boot id, and whether that figure is exact.
    pub(crate) fn acknowledged(&self, boot: Option<&str>) -> (u64, bool) {
        let same_boot = boot.is_some() && self.boot.as_deref() == boot;
        if self.clean || same_boot {
            (self.last, true)
        } else {
            (self.reserved.max(self.last), false)
        }
    }
}

/// FNV-1a: enough to tell a torn or garbled record from a good one.
fn checksum(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The kernel's boot id (Linux), so an open can tell a process crash (page
/// cache intact) from a machine restart.
pub(crate) fn boot_id() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .ok()
        .map(|s| s.trim().chars().take(BOOT_LEN).collect())
        .filter(|s: &String| !s.is_empty())
}

/// Why the file could not be read.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// Present but not a valid record.
    Garbled,
    /// The file system said no.
    Io(std::io::Error),
}

/// Reads the record in `dir`; `Ok(None)` when there is no file yet.
pub(crate) fn read(dir: &Path) -> Result<Option<Record>, ReadError> {
    let mut bytes = Vec::with_capacity(LEN);
    match File::open(dir.join(FILE)) {
        Ok(mut file) => file.read_to_end(&mut bytes).map_err(ReadError::Io)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(ReadError::Io(e)),
    };
    Record::decode(&bytes).map(Some).ok_or(ReadError::Garbled)
}

/// The open file, owned by the writer.
pub(crate) struct Marks {
    file: File,
    path: PathBuf,
    record: Record,
    /// How far ahead `reserved` is raised.
    block: u64,
}

impl Marks {
    /// Opens (or creates) the file in `dir` for a writer that continues
    /// counting at `count`, reserving `block` operations ahead.
    pub(crate) fn open(dir: &Path, count: u64, block: u64) -> Result<Marks, StoreError> {
        let path = dir.join(FILE);
        let existed = path.exists();
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| super::space::io_error(&e, &format!("opening {}", path.display())))?;
        let mut marks = Marks {
            file,
            path,
            record: Record {
                reserved: count.saturating_add(block.max(1)),
                last: count,
                clean: false,
                boot: boot_id(),
            },
            block: block.max(1),
        };
        marks.write(true)?;
        if !existed {
            // The new directory entry must survive a power loss too.
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| super::space::io_error(&e, &format!("syncing {}", dir.display())))?;
        }
        Ok(marks)
    }

    /// Makes sure counts up to `upto` are reserved, durably, before a group
    /// that reaches them commits.
    pub(crate) fn reserve(&mut self, upto: u64) -> Result<(), StoreError> {
        if upto <= self.record.reserved {
            return Ok(());
        }
        self.record.reserved = upto.saturating_add(self.block);
        self.write(true)
    }

    /// Records the count after a committed group (no fsync: see the module
    /// docs).
    pub(crate) fn record(&mut self, last: u64) -> Result<(), StoreError> {
        self.record.last = last;
        self.write(false)
    }

    /// Records a clean shutdown at `last`, durably.
    pub(crate) fn close(&mut self, last: u64) -> Result<(), StoreError> {
        self.record.last = last;
        self.record.clean = true;
        self.write(true)
    }

    fn write(&mut self, sync: bool) -> Result<(), StoreError> {
        let bytes = self.record.encode();
        let result = self
            .file
            .seek(SeekFrom::Start(0))
            .and_then(|_| self.file.write_all(&bytes))
            .and_then(|()| if sync { self.file.sync_data() } else { Ok(()) });
        result.map_err(|e| super::space::io_error(&e, &format!("writing {}", self.path.display())))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_garbage() {
        let r = Record {
            reserved: 10_000,
            last: 42,
            clean: false,
            boot: Some("4a70ed36-19aa-4c9f-a723-10e283f5701e".into()),
        };
        let bytes = r.encode();
        assert_eq!(Record::decode(&bytes), Some(r.clone()));
        let mut bad = bytes;
        bad[9] ^= 1;
        assert_eq!(Record::decode(&bad), None);
        assert_eq!(Record::decode(&bytes[..10]), None);
        assert_eq!(
            r.acknowledged(Some("4a70ed36-19aa-4c9f-a723-10e283f5701e")),
            (42, true)
        );
        assert_eq!(r.acknowledged(Some("other")), (10_000, false));
        assert_eq!(r.acknowledged(None), (10_000, false));
        let clean = Record { clean: true, ..r };
        assert_eq!(clean.acknowledged(None), (42, true));
    }

    #[test]
    fn reserves_ahead_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        assert!(read(dir.path()).unwrap().is_none());
        let mut marks = Marks::open(dir.path(), 5, 100).unwrap();
        assert_eq!(read(dir.path()).unwrap().unwrap().reserved, 105);
        marks.reserve(50).unwrap();
        assert_eq!(read(dir.path()).unwrap().unwrap().reserved, 105);
        marks.reserve(106).unwrap();
        marks.record(106).unwrap();
        let r = read(dir.path()).unwrap().unwrap();
        assert_eq!((r.reserved, r.last, r.clean), (206, 106, false));
        marks.close(107).unwrap();
        let r = read(dir.path()).unwrap().unwrap();
        assert_eq!((r.last, r.clean), (107, true));
    }
}
