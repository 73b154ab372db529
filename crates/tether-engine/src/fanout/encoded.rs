//! Encoded forms of one live event, built once per codec however many
//! subscribers receive it.
//!
//! The fan-out does not know any wire format: each front door owns a
//! [`CodecId`] and asks the event for its encoding under that id. Slots are
//! a fixed array of `OnceLock`s, so a lookup takes no lock and an event
//! nobody encodes costs a few empty words.

use std::sync::OnceLock;

use bytes::Bytes;

/// How many codecs can cache an encoding per event.
const SLOTS: usize = 4;

/// The identity of one encoding (one door's frame format), chosen by the
/// door: `CodecId::new(0)` .. `CodecId::new(3)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CodecId(usize);

impl CodecId {
    /// Codec number `slot`; ids 0 to 3 are cached, larger ones are valid
    /// but build their encoding every time.
    pub const fn new(slot: usize) -> CodecId {
        CodecId(slot)
    }
}

/// An event's cached encodings.
#[derive(Debug, Default)]
pub struct Encodings {
    slots: [OnceLock<Bytes>; SLOTS],
}

impl Encodings {
    /// The encoding under `codec`, built by `build` the first time it is
    /// asked for. A codec id outside the slots is built every time.
    pub fn get_or_init(&self, codec: CodecId, build: impl FnOnce() -> Bytes) -> Bytes {
        match self.slots.get(codec.0) {
            Some(slot) => slot.get_or_init(build).clone(),
            None => build(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_once_per_codec() {
        let encodings = Encodings::default();
        let mut builds = 0;
        for _ in 0..3 {
            let got = encodings.get_or_init(CodecId::new(0), || {
                builds += 1;
                Bytes::from_static(b"ws")
            });
            assert_eq!(got, Bytes::from_static(b"ws"));
        }
        assert_eq!(builds, 1);
        let sse = encodings.get_or_init(CodecId::new(1), || Bytes::from_static(b"sse"));
        assert_eq!(sse, Bytes::from_static(b"sse"), "codecs do not share slots");
        let far = encodings.get_or_init(CodecId::new(9), || Bytes::from_static(b"x"));
        assert_eq!(far, Bytes::from_static(b"x"));
    }
}
