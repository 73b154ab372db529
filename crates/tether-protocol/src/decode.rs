//! Client input into core types, each failure with the error code and
//! wording a client is answered with. Pure, so the fuzz targets exercise
//! exactly what the server runs without linking the server.

use serde_json::Value;
use tether_core::{ChannelName, ErrorCode, ErrorInfo, Operation, Serial};

use crate::client::ClientFrame;
use crate::wording;

/// A decoded mutation frame.
#[derive(Debug, Clone, PartialEq)]
pub struct Mutation {
    /// The channel as given.
    pub channel: String,
    /// Echoed in the reply.
    pub req: Option<u64>,
    /// Per-connection sequence number, if the client uses them.
    pub seq: Option<u64>,
    /// What to do.
    pub op: Operation,
    /// Deliver live only.
    pub ephemeral: bool,
}

/// Reads the `req` of a frame that failed to decode, so the error reply can
/// still be matched to the request.
pub fn salvage_req(text: &str) -> Option<u64> {
    serde_json::from_str::<Value>(text)
        .ok()?
        .get("req")?
        .as_u64()
}

/// Decodes a client frame, with an error naming what is wrong: `40001` for
/// an unknown `type`, `40000` for anything else.
pub fn decode_client_frame(text: &str) -> Result<ClientFrame, ErrorInfo> {
    if let Some(frame) = fast_append(text) {
        return Ok(frame);
    }
    serde_json::from_str(text).map_err(|err| {
        let unknown_type = err.to_string().contains("unknown variant");
        let code = if unknown_type {
            ErrorCode::UnknownFrameType
        } else {
            ErrorCode::BadRequest
        };
        ErrorInfo::new(
            code,
            format!("invalid frame: {}", wording::user_facing(&err.to_string())),
        )
    })
}

/// The frame of every token streamed, parsed without the buffering that
/// serde's internally tagged enum and `flatten` need (about a tenth of
/// the server's instructions per append). `None` means "not a plain
/// append frame, or not valid": the general decoder then parses it and,
/// when it is wrong, says why. It accepts exactly the append frames the
/// general decoder accepts, with the same result (property-tested).
fn fast_append(text: &str) -> Option<ClientFrame> {
    /// The `type` field, which must say `append`.
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "lowercase")]
    enum AppendTag {
        Append,
    }
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct AppendFrame {
        #[serde(rename = "type")]
        _tag: AppendTag,
        #[serde(default)]
        req: Option<u64>,
        #[serde(default)]
        seq: Option<u64>,
        channel: String,
        serial: String,
        data: String,
        #[serde(default)]
        name: Option<String>,
        #[serde(default)]
        extras: Option<serde_json::Map<String, serde_json::Value>>,
    }
    // Only frames that say what they are first: what every SDK sends.
    if !text.starts_with(r#"{"type":"append""#) {
        return None;
    }
    let f: AppendFrame = serde_json::from_str(text).ok()?;
    Some(ClientFrame::Append {
        req: f.req,
        seq: f.seq,
        channel: f.channel,
        serial: f.serial,
        append: tether_core::AppendOp {
            data: f.data,
            name: f.name,
            extras: f.extras,
        },
    })
}

/// Parses a channel name from a client.
pub fn channel(name: &str) -> Result<ChannelName, ErrorInfo> {
    ChannelName::new(name).map_err(|e| ErrorInfo::new(ErrorCode::InvalidChannelName, e.to_string()))
}

/// Parses a serial from a client.
pub fn serial(text: &str) -> Result<Serial, ErrorInfo> {
    text.parse().map_err(|e: tether_core::InvalidSerial| {
        ErrorInfo::new(ErrorCode::InvalidSerial, e.to_string())
    })
}

/// The mutation a frame asks for; `None` for other frames. A bad serial
/// is reported with the frame's `req`.
#[allow(clippy::type_complexity)]
pub fn mutation(frame: ClientFrame) -> Option<Result<Mutation, (Option<u64>, ErrorInfo)>> {
    let (channel, req, seq, op, ephemeral) = match frame {
        ClientFrame::Publish {
            req,
            seq,
            channel,
            message,
            ephemeral,
        } => (channel, req, seq, Ok(Operation::Create(message)), ephemeral),
        ClientFrame::Append {
            req,
            seq,
            channel,
            serial: s,
            append,
        } => {
            let op = serial(&s).map(|target| Operation::Append { target, append });
            (channel, req, seq, op, false)
        }
        ClientFrame::Update {
            req,
            seq,
            channel,
            serial: s,
            update,
        } => {
            let op = serial(&s).map(|target| Operation::Update { target, update });
            (channel, req, seq, op, false)
        }
        ClientFrame::Delete {
            req,
            seq,
            channel,
            serial: s,
            delete,
        } => {
            let op = serial(&s).map(|target| Operation::Delete { target, delete });
            (channel, req, seq, op, false)
        }
        _ => return None,
    };
    Some(match op {
        Ok(op) => Ok(Mutation {
            channel,
            req,
            seq,
            op,
            ephemeral,
        }),
        Err(err) => Err((req, err)),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use proptest::prelude::*;
    use serde_json::{Value, json};

    use super::*;

    /// A field of an append frame, valid or not.
    fn field() -> impl Strategy<Value = (String, Value)> {
        let key = prop_oneof![
            Just("req"),
            Just("seq"),
            Just("channel"),
            Just("serial"),
            Just("data"),
            Just("name"),
            Just("extras"),
            Just("message"),
            Just("type"),
            Just("unknown"),
        ];
        let value = prop_oneof![
            Just(Value::Null),
            any::<u64>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            Just(json!(1.5)),
            Just(json!(true)),
            "[a-z:\\\"]{0,6}".prop_map(Value::from),
            Just(json!("append")),
            Just(json!({"stream": "complete"})),
            Just(json!(["x"])),
        ];
        (key, value).prop_map(|(k, v)| (k.to_owned(), v))
    }

    /// An append frame's text: `type` first (the fast path's shape),
    /// then fields in any order, possibly repeated, missing or wrong.
    fn frame() -> impl Strategy<Value = String> {
        (proptest::collection::vec(field(), 0..8), any::<bool>()).prop_map(|(fields, complete)| {
            let mut parts = vec![r#""type":"append""#.to_owned()];
            if complete {
                parts.push(r#""channel":"c""#.into());
                parts.push(r#""serial":"1764151200000-0000000000000001""#.into());
                parts.push(r#""data":"tok""#.into());
            }
            for (k, v) in fields {
                parts.push(format!("{}:{}", json!(k), v));
            }
            format!("{{{}}}", parts.join(","))
        })
    }

    proptest! {
        #[test]
        fn the_fast_append_path_agrees_with_the_general_decoder(text in frame()) {
            let general: Result<ClientFrame, _> = serde_json::from_str(&text);
            // Declining (`None`) is always allowed: the general decoder
            // decides then.
            if let Some(fast) = fast_append(&text) {
                prop_assert_eq!(Some(fast), general.ok(), "{}", text);
            }
        }

        #[test]
        fn the_fast_path_takes_what_sdks_send(req in any::<u64>(), seq in proptest::option::of(any::<u64>()), data in "\\PC{0,20}") {
            let frame = ClientFrame::Append {
                req: Some(req),
                seq,
                channel: "conversation:1".into(),
                serial: "1764151200000-0000000000000001".into(),
                append: tether_core::AppendOp { data, name: None, extras: None },
            };
            let text = serde_json::to_string(&frame).unwrap();
            prop_assert_eq!(fast_append(&text), Some(frame));
        }
    }
}
