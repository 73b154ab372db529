//! Resume positions: deciding whether a channel log can serve "everything
//! after this serial" exactly, or must say continuity was lost.
//!
//! The server decides continuity; clients never do arithmetic on serials.

use serde::{Deserialize, Serialize};

use crate::serial::Serial;

/// What a channel log holds right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogBounds {
    /// The log's generation; a log that is lost and re-created gets a new one.
    pub epoch: u64,
    /// Sequence of the oldest entry still kept (retention drops the ones
    /// before). `last_seq + 1` when nothing is kept.
    pub first_seq: u64,
    /// Sequence of the newest entry, 0 when nothing was ever written.
    pub last_seq: u64,
}

impl LogBounds {
    /// The position of the newest entry: what a client that is up to date
    /// holds. For an empty log it is sequence 0 of the log's epoch.
    pub fn head(&self) -> Serial {
        Serial::new(self.epoch, self.last_seq).unwrap_or(ORIGIN)
    }
}

/// The position before anything was ever written to any log: a client that
/// attached to a channel before its log existed holds this.
pub const ORIGIN: Serial = match Serial::new(0, 0) {
    Some(s) => s,
    None => panic!("origin serial fits"),
};

/// Why a log cannot serve a resume exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ContinuityLost {
    /// The position belongs to an older (or another) generation of the log.
    #[error("the channel log was reset since this position (epoch {position} is not {current})")]
    OtherEpoch {
        /// The position's epoch.
        position: u64,
        /// The log's epoch.
        current: u64,
    },
    /// Entries after the position were dropped by retention.
    #[error("messages after this position are past the retention window")]
    Expired,
    /// The position is beyond the newest entry: it was never issued here.
    #[error("this position was never issued by this channel")]
    Unknown,
    /// The server's storage lost entries that may follow the position (a
    /// damaged journal); the log continues after a gap.
    #[error("messages after this position were lost by the server's storage")]
    Damaged,
}

/// Whether entries after `position` can be replayed exactly from a log with
/// `bounds` (`None`: no log exists for the channel).
pub fn check_resume(position: Serial, bounds: Option<&LogBounds>) -> Result<(), ContinuityLost> {
    let Some(b) = bounds else {
        // No log: only a client that has seen nothing is still in sync.
        return if position.seq() == 0 {
            Ok(())
        } else {
            Err(ContinuityLost::Unknown)
        };
    };
    if position == ORIGIN {
        return if b.first_seq <= 1 {
            Ok(())
        } else {
            Err(ContinuityLost::Expired)
        };
    }
    if position.epoch() != b.epoch {
        return Err(ContinuityLost::OtherEpoch {
            position: position.epoch(),
            current: b.epoch,
        });
    }
    if position.seq() > b.last_seq {
        return Err(ContinuityLost::Unknown);
    }
    if position.seq().saturating_add(1) < b.first_seq {
        return Err(ContinuityLost::Expired);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(epoch: u64, seq: u64) -> Serial {
        Serial::new(epoch, seq).unwrap()
    }

    const B: LogBounds = LogBounds {
        epoch: 7,
        first_seq: 5,
        last_seq: 10,
    };

    #[test]
    fn within_the_log() {
        for seq in 4..=10 {
            assert_eq!(check_resume(s(7, seq), Some(&B)), Ok(()), "seq {seq}");
        }
    }

    #[test]
    fn expired_unknown_and_other_epoch() {
        assert_eq!(
            check_resume(s(7, 3), Some(&B)),
            Err(ContinuityLost::Expired)
        );
        assert_eq!(
            check_resume(s(7, 11), Some(&B)),
            Err(ContinuityLost::Unknown)
        );
        assert!(matches!(
            check_resume(s(6, 8), Some(&B)),
            Err(ContinuityLost::OtherEpoch { .. })
        ));
        assert!(matches!(
            check_resume(s(8, 8), Some(&B)),
            Err(ContinuityLost::OtherEpoch { .. })
        ));
    }

    #[test]
    fn origin() {
        let full = LogBounds { first_seq: 1, ..B };
        assert_eq!(check_resume(ORIGIN, Some(&full)), Ok(()));
        assert_eq!(check_resume(ORIGIN, Some(&B)), Err(ContinuityLost::Expired));
        assert_eq!(check_resume(ORIGIN, None), Ok(()));
        assert_eq!(check_resume(s(7, 0), None), Ok(()));
        assert_eq!(check_resume(s(7, 3), None), Err(ContinuityLost::Unknown));
    }

    #[test]
    fn empty_log_head() {
        let empty = LogBounds {
            epoch: 9,
            first_seq: 1,
            last_seq: 0,
        };
        assert_eq!(empty.head(), s(9, 0));
        assert_eq!(check_resume(empty.head(), Some(&empty)), Ok(()));
    }
}
