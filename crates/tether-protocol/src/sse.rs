//! Server-Sent Events (`GET /channels/{channel}/stream`): the event names,
//! the data each carries, and the framing (`id:`, `event:`, one `data:`
//! line). `id:` is present exactly when the WebSocket frame would carry a
//! `position`, so a browser's `Last-Event-ID` resumes exactly.

use std::borrow::Cow;

use tether_core::{ErrorInfo, InvalidSerial, Message, Serial};

use crate::ephemeral::EphemeralMessage;
use crate::presence::{PresenceChange, PresenceSync};
use crate::server::{Continuity, ServerFrame};

/// The comment sent when a stream is idle, so proxies keep it open.
pub const KEEP_ALIVE: &[u8] = b": keep-alive\n\n";

/// One event of a subscription over SSE.
#[derive(Debug, Clone, PartialEq)]
pub enum SseEvent<'a> {
    /// `attached`: how the position was honoured. Its data is the
    /// WebSocket `attached` frame without `req`.
    Attached {
        /// The channel.
        channel: Cow<'a, str>,
        /// How the position was honoured.
        continuity: Continuity,
        /// Why continuity was lost.
        error: Option<Cow<'a, ErrorInfo>>,
    },
    /// `message`: one event; data is the message.
    Message {
        /// The `id:` line: the position, when exact.
        id: Option<Serial>,
        /// The event.
        message: Cow<'a, Message>,
    },
    /// `synced`: the catch-up is done; data is `{}`.
    Synced {
        /// The `id:` line: the position, when exact.
        id: Option<Serial>,
    },
    /// `ephemeral`: a live-only message.
    Ephemeral(EphemeralMessage<'a>),
    /// `presence`: a change of the member set.
    Presence(PresenceChange<'a>),
    /// `presence-sync`: a page of the member set.
    PresenceSync(PresenceSync<'a>),
    /// `error`: the stream ends (shutdown, expired token, failure).
    Error(Cow<'a, ErrorInfo>),
}

/// Why an SSE event could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum SseDecodeError {
    /// The `event:` name is not one the server sends.
    #[error("unknown SSE event {0:?}")]
    UnknownEvent(String),
    /// The `id:` line is not a serial.
    #[error("bad SSE id: {0}")]
    Id(#[from] InvalidSerial),
    /// The data does not have the event's shape.
    #[error("bad SSE data: {0}")]
    Data(#[from] serde_json::Error),
}

impl SseEvent<'_> {
    /// Every event name the server sends, in the order of the variants.
    pub const NAMES: [&'static str; 7] = [
        "attached",
        "message",
        "synced",
        "ephemeral",
        "presence",
        "presence-sync",
        "error",
    ];

    /// The `event:` name.
    pub fn name(&self) -> &'static str {
        let index = match self {
            SseEvent::Attached { .. } => 0,
            SseEvent::Message { .. } => 1,
            SseEvent::Synced { .. } => 2,
            SseEvent::Ephemeral(_) => 3,
            SseEvent::Presence(_) => 4,
            SseEvent::PresenceSync(_) => 5,
            SseEvent::Error(_) => 6,
        };
        Self::NAMES[index]
    }

    /// The `id:` line, if any.
    pub fn id(&self) -> Option<Serial> {
        match self {
            SseEvent::Message { id, .. } | SseEvent::Synced { id } => *id,
            _ => None,
        }
    }

    /// Appends the event's JSON data to `out`.
    pub fn write_data(&self, out: &mut Vec<u8>) -> serde_json::Result<()> {
        match self {
            SseEvent::Attached {
                channel,
                continuity,
                error,
            } => serde_json::to_writer(
                out,
                &ServerFrame::Attached {
                    req: None,
                    channel: Cow::Borrowed(channel),
                    continuity: *continuity,
                    error: error.as_deref().map(Cow::Borrowed),
                },
            ),
            SseEvent::Message { message, .. } => serde_json::to_writer(out, message),
            SseEvent::Synced { .. } => {
                out.extend_from_slice(b"{}");
                Ok(())
            }
            SseEvent::Ephemeral(message) => serde_json::to_writer(out, message),
            SseEvent::Presence(change) => serde_json::to_writer(out, change),
            SseEvent::PresenceSync(page) => serde_json::to_writer(out, page),
            SseEvent::Error(error) => serde_json::to_writer(out, error),
        }
    }

    /// The whole event, framed: `id:` (when present), `event:`, one
    /// `data:` line (JSON from serde never holds a raw newline) and the
    /// blank line that ends it.
    pub fn encode(&self) -> serde_json::Result<Vec<u8>> {
        let mut out = Vec::with_capacity(256);
        if let Some(id) = self.id() {
            out.extend_from_slice(b"id: ");
            out.extend_from_slice(id.to_string().as_bytes());
            out.push(b'\n');
        }
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(self.name().as_bytes());
        out.extend_from_slice(b"\ndata: ");
        self.write_data(&mut out)?;
        out.extend_from_slice(b"\n\n");
        Ok(out)
    }

    /// Decodes an event from its parts (as [`parse`] returns them).
    pub fn decode(
        name: &str,
        id: Option<&str>,
        data: &str,
    ) -> Result<SseEvent<'static>, SseDecodeError> {
        let id = id.map(str::parse::<Serial>).transpose()?;
        Ok(match name {
            "attached" => match serde_json::from_str::<ServerFrame<'static>>(data)? {
                ServerFrame::Attached {
                    channel,
                    continuity,
                    error,
                    ..
                } => SseEvent::Attached {
                    channel,
                    continuity,
                    error,
                },
                other => {
                    return Err(SseDecodeError::Data(serde::de::Error::custom(format!(
                        "expected an attached frame, got {}",
                        other.type_name()
                    ))));
                }
            },
            "message" => SseEvent::Message {
                id,
                message: Cow::Owned(serde_json::from_str(data)?),
            },
            "synced" => {
                serde_json::from_str::<serde::de::IgnoredAny>(data)?;
                SseEvent::Synced { id }
            }
            "ephemeral" => SseEvent::Ephemeral(serde_json::from_str(data)?),
            "presence" => SseEvent::Presence(serde_json::from_str(data)?),
            "presence-sync" => SseEvent::PresenceSync(serde_json::from_str(data)?),
            "error" => SseEvent::Error(Cow::Owned(serde_json::from_str(data)?)),
            other => return Err(SseDecodeError::UnknownEvent(other.to_owned())),
        })
    }
}

/// The fields of one SSE block (the text between blank lines).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawEvent<'a> {
    /// `event:`; `message` when absent, as in browsers.
    pub name: &'a str,
    /// `id:`, if present.
    pub id: Option<&'a str>,
    /// `data:` lines joined with `\n`.
    pub data: String,
}

/// Parses one SSE block; `None` for a block of comments only (keep-alive).
pub fn parse(block: &str) -> Option<RawEvent<'_>> {
    let mut name = None;
    let mut id = None;
    let mut data: Option<String> = None;
    for line in block.lines() {
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "event" => name = Some(value),
            "id" => id = Some(value),
            "data" => match &mut data {
                Some(text) => {
                    text.push('\n');
                    text.push_str(value);
                }
                None => data = Some(value.to_owned()),
            },
            _ => {}
        }
    }
    if name.is_none() && id.is_none() && data.is_none() {
        return None;
    }
    Some(RawEvent {
        name: name.unwrap_or("message"),
        id,
        data: data.unwrap_or_default(),
    })
}
