//! Serials: the one way Tether names a position in a channel's log.
//!
//! A serial is `EPOCH-SEQUENCE`, both zero-padded decimal, so that comparing
//! two serials as plain strings gives the same answer as comparing them as
//! numbers. Browsers and SDKs rely on that: they dedupe and order by string
//! comparison and never do arithmetic on serials.
//!
//! The epoch is fixed when a channel's log is created (milliseconds since the
//! Unix epoch). A log that is lost and re-created gets a new epoch, so a client
//! resuming from a serial of the old log is told "continuity lost" instead of
//! silently missing what the old log held.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Width of the epoch part: milliseconds since 1970 fit in 13 digits until
/// the year 2286.
const EPOCH_WIDTH: usize = 13;
/// Width of the sequence part: enough for 10^16 operations on one channel.
const SEQ_WIDTH: usize = 16;
const MAX_EPOCH: u64 = 9_999_999_999_999;
const MAX_SEQ: u64 = 9_999_999_999_999_999;

/// A position in a channel log. Ordered first by epoch, then by sequence,
/// which is also the order of its string form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Serial {
    epoch: u64,
    seq: u64,
}

/// Why a string is not a serial. Clients send serials back to us (resume
/// positions, append targets), so parsing must never panic.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid serial {0:?}: expected EPOCH-SEQUENCE as 13 and 16 decimal digits")]
pub struct InvalidSerial(pub String);

impl Serial {
    /// Builds a serial; `None` when either part does not fit its fixed width
    /// (which would break string ordering).
    pub const fn new(epoch: u64, seq: u64) -> Option<Serial> {
        if epoch <= MAX_EPOCH && seq <= MAX_SEQ {
            Some(Serial { epoch, seq })
        } else {
            None
        }
    }

    /// The log generation this serial belongs to.
    pub fn epoch(self) -> u64 {
        self.epoch
    }

    /// The 1-based position of the operation in its log. Sequence 0 means
    /// "before the first entry" and is only used as a resume position.
    pub fn seq(self) -> u64 {
        self.seq
    }

    /// The serial right after this one in the same log, if it still fits.
    pub fn next(self) -> Option<Serial> {
        Serial::new(self.epoch, self.seq.checked_add(1)?)
    }
}

impl fmt::Display for Serial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:0ew$}-{:0sw$}",
            self.epoch,
            self.seq,
            ew = EPOCH_WIDTH,
            sw = SEQ_WIDTH
        )
    }
}

impl FromStr for Serial {
    type Err = InvalidSerial;

    fn from_str(s: &str) -> Result<Serial, InvalidSerial> {
        let invalid = || InvalidSerial(s.chars().take(64).collect());
        let (epoch, seq) = s.split_once('-').ok_or_else(invalid)?;
        let digits = |part: &str, width: usize| {
            (part.len() == width && part.bytes().all(|b| b.is_ascii_digit()))
                .then(|| part.parse::<u64>().ok())
                .flatten()
        };
        let epoch = digits(epoch, EPOCH_WIDTH).ok_or_else(invalid)?;
        let seq = digits(seq, SEQ_WIDTH).ok_or_else(invalid)?;
        Serial::new(epoch, seq).ok_or_else(invalid)
    }
}

impl Serialize for Serial {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Serial {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Serial, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn formats_fixed_width() {
        let s = Serial::new(1_764_151_200_000, 42).unwrap();
        assert_eq!(s.to_string(), "1764151200000-0000000000000042");
        assert_eq!(s.to_string().len(), EPOCH_WIDTH + 1 + SEQ_WIDTH);
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "",
            "1-2",
            "1764151200000-42",
            "1764151200000_0000000000000042",
            "176415120000a-0000000000000042",
            "+764151200000-0000000000000042",
            "1764151200000-0000000000000042-",
            "１764151200000-0000000000000042",
        ] {
            assert!(bad.parse::<Serial>().is_err(), "{bad} should not parse");
        }
    }

    #[test]
    fn refuses_values_that_break_width() {
        assert!(Serial::new(MAX_EPOCH + 1, 0).is_none());
        assert!(Serial::new(0, MAX_SEQ + 1).is_none());
        assert!(Serial::new(0, MAX_SEQ).unwrap().next().is_none());
    }

    proptest! {
        #[test]
        fn string_order_is_serial_order(a in 0..=MAX_EPOCH, b in 0..=MAX_SEQ, c in 0..=MAX_EPOCH, d in 0..=MAX_SEQ) {
            let x = Serial::new(a, b).unwrap();
            let y = Serial::new(c, d).unwrap();
            prop_assert_eq!(x.cmp(&y), x.to_string().cmp(&y.to_string()));
        }

        #[test]
        fn round_trips(a in 0..=MAX_EPOCH, b in 0..=MAX_SEQ) {
            let x = Serial::new(a, b).unwrap();
            prop_assert_eq!(x.to_string().parse::<Serial>().unwrap(), x);
            let json = serde_json::to_string(&x).unwrap();
            prop_assert_eq!(serde_json::from_str::<Serial>(&json).unwrap(), x);
        }
    }
}
