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

/// Length of a serial's text: `EPOCH-SEQUENCE`.
pub const SERIAL_LEN: usize = EPOCH_WIDTH + 1 + SEQ_WIDTH;

impl Serial {
    /// The serial's text, written by hand into a fixed buffer: serials are
    /// formatted several times per append (events, acks, positions), and
    /// the `fmt` machinery cost more than the rest of their encoding.
    pub fn to_text(self) -> SerialText {
        let mut buf = [b'0'; SERIAL_LEN];
        write_digits(&mut buf[..EPOCH_WIDTH], self.epoch);
        buf[EPOCH_WIDTH] = b'-';
        write_digits(&mut buf[EPOCH_WIDTH + 1..], self.seq);
        SerialText(buf)
    }

    /// Parses `EPOCH-SEQUENCE` (exactly 13 and 16 ASCII digits) by hand.
    pub fn parse(text: &[u8]) -> Option<Serial> {
        if text.len() != SERIAL_LEN || text[EPOCH_WIDTH] != b'-' {
            return None;
        }
        let epoch = read_digits(&text[..EPOCH_WIDTH])?;
        let seq = read_digits(&text[EPOCH_WIDTH + 1..])?;
        Serial::new(epoch, seq)
    }
}

/// A serial's text on the stack (see [`Serial::to_text`]).
#[derive(Clone, Copy)]
pub struct SerialText([u8; SERIAL_LEN]);

impl SerialText {
    /// The text.
    pub fn as_str(&self) -> &str {
        // Only ASCII digits and '-' are ever written.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

/// Every two-digit number's text, so digits are written in pairs (half the
/// divisions of one digit at a time).
const PAIRS: &[u8; 200] = b"00010203040506070809101112131415161718192021222324252627282930313233343536373839404142434445464748495051525354555657585960616263646566676869707172737475767778798081828384858687888990919293949596979899";

/// Writes `value` as zero-padded decimal filling `out` (the caller's
/// widths guarantee it fits: see [`Serial::new`]).
fn write_digits(out: &mut [u8], mut value: u64) {
    let mut end = out.len();
    while end >= 2 {
        // `value % 100` is below 100, so the cast cannot truncate.
        #[allow(clippy::cast_possible_truncation)]
        let pair = (value % 100) as usize * 2;
        value /= 100;
        out[end - 2..end].copy_from_slice(&PAIRS[pair..pair + 2]);
        end -= 2;
    }
    if end == 1 {
        #[allow(clippy::cast_possible_truncation)]
        let d = (value % 10) as u8;
        out[0] = b'0' + d;
    }
}

/// Reads ASCII decimal digits; `None` for anything else.
fn read_digits(digits: &[u8]) -> Option<u64> {
    digits.iter().try_fold(0u64, |acc, &b| {
        b.is_ascii_digit().then(|| acc * 10 + u64::from(b - b'0'))
    })
}

impl fmt::Display for Serial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.to_text().as_str())
    }
}

impl FromStr for Serial {
    type Err = InvalidSerial;

    fn from_str(s: &str) -> Result<Serial, InvalidSerial> {
        Serial::parse(s.as_bytes()).ok_or_else(|| InvalidSerial(s.chars().take(64).collect()))
    }
}

impl Serialize for Serial {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.to_text().as_str())
    }
}

impl<'de> Deserialize<'de> for Serial {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Serial, D::Error> {
        /// Takes the text borrowed when the input allows (no allocation).
        struct SerialVisitor;
        impl serde::de::Visitor<'_> for SerialVisitor {
            type Value = Serial;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a serial EPOCH-SEQUENCE (13 and 16 decimal digits)")
            }
            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Serial, E> {
                text.parse().map_err(E::custom)
            }
        }
        deserializer.deserialize_str(SerialVisitor)
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
            // From an owned string too (serde_json::Value hands out Strings).
            let value = serde_json::to_value(x).unwrap();
            prop_assert_eq!(serde_json::from_value::<Serial>(value).unwrap(), x);
        }

        #[test]
        fn hand_formatting_matches_zero_padded_decimal(a in 0..=MAX_EPOCH, b in 0..=MAX_SEQ) {
            let x = Serial::new(a, b).unwrap();
            let text = x.to_text();
            prop_assert_eq!(text.as_str(), format!("{a:013}-{b:016}"));
        }

        #[test]
        fn parsing_refuses_anything_but_digits(text in "[0-9a-f+ -]{30}") {
            let by_hand = Serial::parse(text.as_bytes());
            let digits = |p: &str| p.bytes().all(|c| c.is_ascii_digit());
            let valid = text.as_bytes()[13] == b'-' && digits(&text[..13]) && digits(&text[14..]);
            prop_assert_eq!(by_hand.is_some(), valid);
        }
    }
}
