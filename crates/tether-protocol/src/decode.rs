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
