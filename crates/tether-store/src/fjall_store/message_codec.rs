//! Messages on disk: a compact binary record (format 2) for every log
//! entry, fragment, checkpoint and stored version.
//!
//! A 32-byte appended token cost about 300 bytes as a JSON record (field
//! names, a serial as 30 characters, quoting) and a JSON encoding and
//! parse per append. Here integers are LEB128 varints, strings are
//! length-prefixed bytes, a message id equal to its serial's text (the
//! generated default) and a version by the message's own creator are one
//! tag byte each, and only free-form JSON (non-string data, extras,
//! version metadata) stays JSON inside the record.
//!
//! Records written before this format (format 1, JSON) are still read, so
//! an existing data directory needs no migration; an older binary refuses
//! format 2 as an unknown record version rather than misreading it.

use serde_json::{Map, Value};
use tether_core::{Action, Message, Serial, Version};

use super::records::FORMAT_V1;
use crate::StoreError;

/// The binary message format.
pub(crate) const FORMAT_V2: u8 = 2;

/// Tags of optional fields.
const ABSENT: u8 = 0;
const PRESENT: u8 = 1;
/// `id` is the text of the message's serial (what the server generates).
const ID_IS_SERIAL: u8 = 2;
/// `version.client_id` is the message's `client_id`.
const SAME_CLIENT: u8 = 2;

/// Tags of `data`.
const DATA_NULL: u8 = 0;
const DATA_TEXT: u8 = 1;
const DATA_JSON: u8 = 2;

/// Encodes `m` as a format-2 record.
pub(crate) fn encode_message(m: &Message) -> Vec<u8> {
    let text_len = m.data.as_str().map_or(0, str::len);
    let mut out = Vec::with_capacity(64 + text_len + m.id.len());
    out.push(FORMAT_V2);
    put_serial(&mut out, m.serial);
    // Parsing the id is cheaper than formatting the serial to compare.
    if Serial::parse(m.id.as_bytes()) == Some(m.serial) {
        out.push(ID_IS_SERIAL);
    } else {
        out.push(PRESENT);
        put_str(&mut out, &m.id);
    }
    put_opt_str(&mut out, m.name.as_deref());
    match &m.data {
        Value::Null => out.push(DATA_NULL),
        Value::String(text) => {
            out.push(DATA_TEXT);
            put_str(&mut out, text);
        }
        other => {
            out.push(DATA_JSON);
            put_json(&mut out, other);
        }
    }
    match &m.extras {
        None => out.push(ABSENT),
        Some(extras) => {
            out.push(PRESENT);
            put_json(&mut out, extras);
        }
    }
    put_opt_str(&mut out, m.client_id.as_deref());
    put_opt_str(&mut out, m.connection_id.as_deref());
    put_varint(&mut out, m.timestamp);
    out.push(match m.action {
        Action::Create => 0,
        Action::Append => 1,
        Action::Update => 2,
        Action::Delete => 3,
    });
    let v = &m.version;
    put_serial(&mut out, v.serial);
    put_varint(&mut out, v.timestamp);
    match (&v.client_id, &m.client_id) {
        (Some(by), Some(creator)) if by == creator => out.push(SAME_CLIENT),
        (by, _) => put_opt_str(&mut out, by.as_deref()),
    }
    put_opt_str(&mut out, v.description.as_deref());
    match &v.metadata {
        None => out.push(ABSENT),
        Some(metadata) => {
            out.push(PRESENT);
            put_json(&mut out, metadata);
        }
    }
    out
}

/// Decodes a message record of either format; `what` names it in errors.
pub(crate) fn decode_message(what: &'static str, bytes: &[u8]) -> Result<Message, StoreError> {
    match bytes.first() {
        Some(&FORMAT_V2) => Reader { bytes, at: 1, what }.message(),
        Some(&FORMAT_V1) => super::records::decode(what, bytes),
        Some(v) => Err(StoreError::Corrupt {
            what,
            detail: format!("unknown format version {v}"),
        }),
        None => Err(StoreError::Corrupt {
            what,
            detail: "empty record".into(),
        }),
    }
}

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        // The low seven bits, with the continuation bit.
        #[allow(clippy::cast_possible_truncation)]
        out.push((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    #[allow(clippy::cast_possible_truncation)]
    out.push(value as u8);
}

fn put_serial(out: &mut Vec<u8>, serial: Serial) {
    put_varint(out, serial.epoch());
    put_varint(out, serial.seq());
}

fn put_str(out: &mut Vec<u8>, text: &str) {
    put_varint(out, text.len() as u64);
    out.extend_from_slice(text.as_bytes());
}

fn put_opt_str(out: &mut Vec<u8>, text: Option<&str>) {
    match text {
        None => out.push(ABSENT),
        Some(text) => {
            out.push(PRESENT);
            put_str(out, text);
        }
    }
}

fn put_json<T: serde::Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) {
    // Serializing a `Value` or a string-keyed map cannot fail.
    let json = serde_json::to_vec(value).unwrap_or_else(|_| b"null".to_vec());
    put_varint(out, json.len() as u64);
    out.extend_from_slice(&json);
}

/// A cursor over a format-2 record; every read is bounds-checked, so a
/// damaged record is an error, never a panic.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
    what: &'static str,
}

impl<'a> Reader<'a> {
    fn corrupt(&self, detail: &str) -> StoreError {
        StoreError::Corrupt {
            what: self.what,
            detail: format!("{detail} at byte {}", self.at),
        }
    }

    fn byte(&mut self) -> Result<u8, StoreError> {
        let b = *self
            .bytes
            .get(self.at)
            .ok_or_else(|| self.corrupt("truncated"))?;
        self.at += 1;
        Ok(b)
    }

    fn varint(&mut self) -> Result<u64, StoreError> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            value |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(self.corrupt("varint too long"))
    }

    fn take(&mut self, len: u64) -> Result<&'a [u8], StoreError> {
        let len = usize::try_from(len).map_err(|_| self.corrupt("length"))?;
        let end = self
            .at
            .checked_add(len)
            .filter(|end| *end <= self.bytes.len())
            .ok_or_else(|| self.corrupt("truncated"))?;
        let slice = &self.bytes[self.at..end];
        self.at = end;
        Ok(slice)
    }

    fn string(&mut self) -> Result<String, StoreError> {
        let len = self.varint()?;
        let bytes = self.take(len)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| self.corrupt("not UTF-8"))
    }

    fn opt_string(&mut self) -> Result<Option<String>, StoreError> {
        match self.byte()? {
            ABSENT => Ok(None),
            PRESENT => self.string().map(Some),
            _ => Err(self.corrupt("bad tag")),
        }
    }

    fn json<T: serde::de::DeserializeOwned>(&mut self) -> Result<T, StoreError> {
        let len = self.varint()?;
        let bytes = self.take(len)?;
        serde_json::from_slice(bytes).map_err(|e| self.corrupt(&e.to_string()))
    }

    fn serial(&mut self) -> Result<Serial, StoreError> {
        let epoch = self.varint()?;
        let seq = self.varint()?;
        Serial::new(epoch, seq).ok_or_else(|| self.corrupt("serial out of range"))
    }

    fn message(mut self) -> Result<Message, StoreError> {
        let serial = self.serial()?;
        let id = match self.byte()? {
            ID_IS_SERIAL => serial.to_text().as_str().to_owned(),
            PRESENT => self.string()?,
            _ => return Err(self.corrupt("bad id tag")),
        };
        let name = self.opt_string()?;
        let data = match self.byte()? {
            DATA_NULL => Value::Null,
            DATA_TEXT => Value::String(self.string()?),
            DATA_JSON => self.json()?,
            _ => return Err(self.corrupt("bad data tag")),
        };
        let extras: Option<Map<String, Value>> = match self.byte()? {
            ABSENT => None,
            PRESENT => Some(self.json()?),
            _ => return Err(self.corrupt("bad extras tag")),
        };
        let client_id = self.opt_string()?;
        let connection_id = self.opt_string()?;
        let timestamp = self.varint()?;
        let action = match self.byte()? {
            0 => Action::Create,
            1 => Action::Append,
            2 => Action::Update,
            3 => Action::Delete,
            _ => return Err(self.corrupt("bad action")),
        };
        let version_serial = self.serial()?;
        let version_timestamp = self.varint()?;
        let version_client = match self.byte()? {
            SAME_CLIENT => client_id.clone(),
            ABSENT => None,
            PRESENT => Some(self.string()?),
            _ => return Err(self.corrupt("bad version client tag")),
        };
        let description = self.opt_string()?;
        let metadata = match self.byte()? {
            ABSENT => None,
            PRESENT => Some(self.json()?),
            _ => return Err(self.corrupt("bad metadata tag")),
        };
        if self.at != self.bytes.len() {
            return Err(self.corrupt("trailing bytes"));
        }
        Ok(Message {
            serial,
            id,
            name,
            data,
            extras,
            client_id,
            connection_id,
            timestamp,
            action,
            version: Version {
                serial: version_serial,
                timestamp: version_timestamp,
                client_id: version_client,
                description,
                metadata,
            },
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn serial(epoch: u64, seq: u64) -> Serial {
        Serial::new(epoch, seq).unwrap()
    }

    fn json_value() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<i64>().prop_map(Value::from),
            ".{0,12}".prop_map(Value::from),
            Just(json!({"a": [1, "two", null], "b": {"c": true}})),
        ]
    }

    fn message() -> impl Strategy<Value = Message> {
        (
            (0..=9_999_999_999_999u64, 0..=9_999_999_999_999_999u64),
            proptest::option::of("[ -~]{0,20}"),
            proptest::option::of(".{0,8}"),
            prop_oneof![json_value(), ".{0,40}".prop_map(Value::from)],
            proptest::option::of(Just(json!({"stream": "streaming", "n": 1}))),
            proptest::option::of("[a-z]{0,6}"),
            proptest::option::of("[a-z]{0,6}"),
            any::<u64>(),
            0u8..4,
            (0..=9_999_999_999_999_999u64, any::<u64>(), 0u8..3),
            proptest::option::of(".{0,10}"),
            proptest::option::of(json_value()),
        )
            .prop_map(
                |(
                    (epoch, seq),
                    id,
                    name,
                    data,
                    extras,
                    client_id,
                    connection_id,
                    timestamp,
                    action,
                    (vseq, vts, by),
                    description,
                    metadata,
                )| {
                    let s = serial(epoch, seq);
                    let by = match by {
                        0 => None,
                        1 => client_id.clone(),
                        _ => Some("other".to_owned()),
                    };
                    Message {
                        serial: s,
                        id: id.unwrap_or_else(|| s.to_text().as_str().to_owned()),
                        name,
                        data,
                        extras: extras.and_then(|e| e.as_object().cloned()),
                        client_id,
                        connection_id,
                        timestamp,
                        action: [
                            Action::Create,
                            Action::Append,
                            Action::Update,
                            Action::Delete,
                        ][usize::from(action)],
                        version: Version {
                            serial: serial(epoch, vseq),
                            timestamp: vts,
                            client_id: by,
                            description,
                            metadata,
                        },
                    }
                },
            )
    }

    proptest! {
        #[test]
        fn round_trips(m in message()) {
            let bytes = encode_message(&m);
            prop_assert_eq!(decode_message("test", &bytes).unwrap(), m);
        }

        #[test]
        fn damaged_records_are_errors_not_panics(m in message(), cut in any::<usize>(), flip in any::<u8>()) {
            let mut bytes = encode_message(&m);
            let at = cut % bytes.len();
            let _ = decode_message("test", &bytes[..at]);
            bytes[at] ^= flip;
            let _ = decode_message("test", &bytes);
        }
    }

    #[test]
    fn reads_format_1_records() {
        let m = Message {
            serial: serial(1, 2),
            id: "m".into(),
            name: None,
            data: Value::from("text"),
            extras: None,
            client_id: None,
            connection_id: None,
            timestamp: 3,
            action: Action::Create,
            version: Version {
                serial: serial(1, 2),
                timestamp: 3,
                client_id: None,
                description: None,
                metadata: None,
            },
        };
        let v1 = super::super::records::encode(&m).unwrap();
        assert_eq!(v1[0], FORMAT_V1);
        assert_eq!(decode_message("test", &v1).unwrap(), m);
    }

    #[test]
    fn an_appended_token_costs_a_fraction_of_its_json() {
        let m = Message {
            serial: serial(1_764_151_200_000, 42),
            id: serial(1_764_151_200_000, 42).to_text().as_str().to_owned(),
            name: Some("response".into()),
            data: Value::from("0123456789abcdef0123456789abcde."),
            extras: None,
            client_id: Some("agent-7".into()),
            connection_id: Some("c_0123456789abcdef".into()),
            timestamp: 1_764_151_200_123,
            action: Action::Append,
            version: Version {
                serial: serial(1_764_151_200_000, 1_042),
                timestamp: 1_764_151_200_456,
                client_id: Some("agent-7".into()),
                description: None,
                metadata: None,
            },
        };
        let binary = encode_message(&m).len();
        let json = super::super::records::encode(&m).unwrap().len();
        assert!(binary * 3 < json, "binary {binary} bytes, JSON {json}");
    }
}
