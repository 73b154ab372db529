//! The few protocol frames the load generator sends (built from the
//! `tether-protocol` types), and cheap scanning of the frames it receives:
//! decoding every delivery into `ServerFrame` would make the generator, not
//! the server, the bottleneck. Server frames are serde-tagged, so `"type"`
//! is always the first key; values the bench reads (`req`, `serial`,
//! `data`) never contain escaped quotes. The tests below check the scanners
//! on frames encoded by the protocol types.

use memchr::memmem;
use tether_protocol::ClientFrame;
use tether_protocol::rest::{AppendOp, NewMessage};

/// Bytes in one token (the data of one append).
pub const TOKEN_LEN: usize = 32;

/// A 32-byte token that carries its send time: `T`, 16 hex digits of
/// nanoseconds since [`crate::clock::epoch`], then padding.
pub fn token(ts_ns: u64) -> String {
    format!("T{ts_ns:016x}...............")
}

/// The send time of a token at the start of `data`.
pub fn token_ts(data: &str) -> Option<u64> {
    let hex = data.strip_prefix('T')?.get(..16)?;
    u64::from_str_radix(hex, 16).ok()
}

/// Calls `f` with the send time of every token in `data` (a rolled-up
/// delivery concatenates several); returns how many there were.
pub fn for_each_token(data: &str, mut f: impl FnMut(u64)) -> u64 {
    let mut count = 0;
    let mut rest = data;
    while rest.len() >= TOKEN_LEN {
        match token_ts(rest) {
            Some(ts) => {
                f(ts);
                count += 1;
            }
            None => break,
        }
        rest = &rest[TOKEN_LEN..];
    }
    count
}

/// The string value that follows `pattern` (such as `"data":"`), up to the
/// next quote.
pub fn str_after<'a>(text: &'a str, pattern: &[u8]) -> Option<&'a str> {
    let start = memmem::find(text.as_bytes(), pattern)? + pattern.len();
    let len = memchr::memchr(b'"', &text.as_bytes()[start..])?;
    text.get(start..start + len)
}

/// The unsigned integer that follows `pattern` (such as `"req":`).
pub fn u64_after(text: &str, pattern: &[u8]) -> Option<u64> {
    let start = memmem::find(text.as_bytes(), pattern)? + pattern.len();
    let digits = text.as_bytes()[start..]
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .count();
    text.get(start..start + digits)?.parse().ok()
}

/// The frame's `type`.
pub fn frame_type(text: &str) -> Option<&str> {
    str_after(text, b"\"type\":\"")
}

/// The `req` a reply echoes.
pub fn req(text: &str) -> Option<u64> {
    u64_after(text, b"\"req\":")
}

/// The `data` string of a message event (WebSocket frame or SSE data).
pub fn data(text: &str) -> Option<&str> {
    str_after(text, b"\"data\":\"")
}

/// The `serial` of an ack.
pub fn serial(text: &str) -> Option<&str> {
    str_after(text, b"\"serial\":\"")
}

/// The `position` of a message or synced frame.
pub fn position(text: &str) -> Option<&str> {
    str_after(text, b"\"position\":\"")
}

/// `append` to message `serial`.
pub fn append(req: u64, channel: &str, serial: &str, data: &str) -> String {
    ClientFrame::Append {
        req: Some(req),
        seq: None,
        channel: channel.to_owned(),
        serial: serial.to_owned(),
        append: AppendOp {
            data: data.to_owned(),
            name: None,
            extras: None,
        },
    }
    .to_json()
}

/// `publish` a message with string data.
pub fn publish(req: u64, channel: &str, data: &str) -> String {
    ClientFrame::Publish {
        req: Some(req),
        seq: None,
        channel: channel.to_owned(),
        message: NewMessage {
            data: data.into(),
            ..NewMessage::default()
        },
        ephemeral: false,
    }
    .to_json()
}

/// `attach`, resuming after `from` when given.
pub fn attach(req: u64, channel: &str, from: Option<&str>) -> String {
    ClientFrame::Attach {
        req: Some(req),
        channel: channel.to_owned(),
        from: from.map(str::to_owned),
        rewind: None,
        presence: false,
    }
    .to_json()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tether_protocol::Serial;
    use tether_protocol::ServerFrame;

    #[test]
    fn tokens_round_trip_and_scan() {
        let t = token(0x1234_5678_9abc);
        assert_eq!(t.len(), TOKEN_LEN);
        assert_eq!(token_ts(&t), Some(0x1234_5678_9abc));
        let two = format!("{}{}", token(1), token(2));
        let mut seen = Vec::new();
        assert_eq!(for_each_token(&two, |ts| seen.push(ts)), 2);
        assert_eq!(seen, [1, 2]);
        assert_eq!(for_each_token("", |_| {}), 0);
    }

    fn sample(serial: u64) -> Serial {
        Serial::new(1_764_151_200_000, serial).expect("a serial")
    }

    #[test]
    fn scans_server_frames_the_protocol_encodes() {
        let ack = ServerFrame::Ack {
            req: Some(42),
            serial: sample(7),
            version_serial: sample(8),
            duplicate: false,
        }
        .to_vec()
        .expect("encodes");
        let ack = std::str::from_utf8(&ack).expect("utf-8");
        assert_eq!(frame_type(ack), Some("ack"));
        assert_eq!(req(ack), Some(42));
        assert_eq!(serial(ack), Some("1764151200000-0000000000000007"));
        let event: tether_protocol::Message = serde_json::from_value(serde_json::json!({
            "serial": sample(1), "id": "m", "data": token(1), "timestamp": 1,
            "action": "append", "version": {"serial": sample(2), "timestamp": 1}
        }))
        .expect("a message");
        let msg = ServerFrame::Message {
            channel: "c".into(),
            position: Some(sample(2)),
            message: std::borrow::Cow::Owned(event),
        }
        .to_vec()
        .expect("encodes");
        let msg = std::str::from_utf8(&msg).expect("utf-8");
        assert_eq!(frame_type(msg), Some("message"));
        assert_eq!(position(msg), Some("1764151200000-0000000000000002"));
        assert_eq!(data(msg).and_then(token_ts), Some(1));
        assert_eq!(req(msg), None);
    }

    #[test]
    fn sent_frames_are_the_protocol_frames() {
        let frame = append(3, "bench:1", "1764151200000-0000000000000001", &token(5));
        assert!(matches!(
            tether_protocol::decode_client_frame(&frame),
            Ok(ClientFrame::Append { req: Some(3), .. })
        ));
        let frame = publish(4, "bench:1", "x");
        assert!(tether_protocol::decode_client_frame(&frame).is_ok_and(|f| f.is_mutation()));
        let frame = attach(5, "bench:1", Some("1764151200000-0000000000000001"));
        assert!(matches!(
            tether_protocol::decode_client_frame(&frame),
            Ok(ClientFrame::Attach { from: Some(_), .. })
        ));
    }
}
