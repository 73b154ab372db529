//! Running out of disk space without losing the store.
//!
//! fjall treats any failed journal write or flush as fatal: it poisons the
//! database, which refuses every later write until it is reopened. So the
//! writer avoids reaching that point: before each group it checks the free
//! space of the data directory's file system against a reserve
//! ([`super::StoreConfig::min_free_bytes`]) and refuses the group with
//! [`StoreError::InsufficientStorage`] while space is short, without touching
//! fjall. The reserve also leaves room for fjall's own background work
//! (memtable flushes and compaction write new files before deleting old
//! ones), whose failure would poison the database just the same.
//!
//! If a write fails anyway (another process filled the disk between the
//! check and the write, or the reserve is 0), the writer reopens the
//! database once space is back (see `writer.rs`).

use std::io::Write;
use std::path::Path;

use crate::StoreError;

/// Bytes written (and removed) to prove the file system takes writes again
/// before reopening a database that failed.
const PROBE_BYTES: usize = 256 << 10;
/// The probe file, in the data directory.
const PROBE_FILE: &str = "tether-space-probe";

/// Bytes available to unprivileged writers on the file system holding
/// `path`, or `None` if the system cannot tell.
pub(crate) fn free_bytes(path: &Path) -> Option<u64> {
    let stat = rustix::fs::statvfs(path).ok()?;
    Some(stat.f_bavail.saturating_mul(stat.f_frsize))
}

/// `Err(InsufficientStorage)` when less than `reserve` bytes are free.
pub(crate) fn check(path: &Path, reserve: u64) -> Result<(), StoreError> {
    if reserve == 0 {
        return Ok(());
    }
    match free_bytes(path) {
        Some(free) if free < reserve => Err(StoreError::InsufficientStorage(format!(
            "{free} bytes free on the file system of {}, below the {reserve} bytes kept in reserve",
            path.display()
        ))),
        _ => Ok(()),
    }
}

/// Writes, syncs and removes a small file in `dir`: the file system takes
/// writes again.
pub(crate) fn probe(dir: &Path) -> Result<(), StoreError> {
    let path = dir.join(PROBE_FILE);
    let result = (|| {
        let mut file = std::fs::File::create(&path)?;
        file.write_all(&vec![0_u8; PROBE_BYTES])?;
        file.sync_data()
    })();
    let _ = std::fs::remove_file(&path);
    result.map_err(|e| io_error(&e, &format!("probing {}", path.display())))
}

/// Whether an I/O error means the disk (or a quota) is full.
pub(crate) fn is_full(e: &std::io::Error) -> bool {
    use std::io::ErrorKind;
    matches!(e.kind(), ErrorKind::StorageFull | ErrorKind::QuotaExceeded)
        || matches!(e.raw_os_error(), Some(28 | 122))
}

/// Maps an I/O error: a full disk is [`StoreError::InsufficientStorage`],
/// anything else [`StoreError::Storage`].
pub(crate) fn io_error(e: &std::io::Error, context: &str) -> StoreError {
    if is_full(e) {
        StoreError::InsufficientStorage(format!("{context}: {e}"))
    } else {
        StoreError::Storage(format!("{context}: {e}"))
    }
}

/// Maps a failed fjall write: a full disk anywhere in its cause chain is
/// [`StoreError::InsufficientStorage`].
pub(crate) fn write_error(e: &fjall::Error) -> StoreError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if let Some(io) = err.downcast_ref::<std::io::Error>()
            && is_full(io)
        {
            return StoreError::InsufficientStorage(format!("the disk is full: {e}"));
        }
        source = err.source();
    }
    StoreError::Storage(e.to_string())
}
