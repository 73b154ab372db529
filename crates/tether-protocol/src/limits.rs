//! Bounds that are part of the protocol: what the server announces in the
//! `connected` frame, and the fixed ranges of request parameters, so a
//! client can check a request before sending it.

use serde::{Deserialize, Serialize};

/// Most messages a fresh attach (or SSE stream) may ask to rewind.
pub const MAX_REWIND: usize = 1000;

/// Largest history page (`limit` of `GET /channels/{channel}/messages`).
pub const MAX_PAGE: usize = 1000;

/// History page size when the request names none.
pub const DEFAULT_PAGE: usize = 100;

/// Limits announced in the `connected` frame, so a client can size its
/// frames and pace its mutations instead of learning them from refusals.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnnouncedLimits {
    /// Largest frame accepted.
    pub max_frame_bytes: usize,
    /// Largest message (default namespace).
    pub max_message_bytes: usize,
    /// Most attached channels.
    pub max_channels: usize,
    /// Sustained mutations per second this connection's credential may
    /// send, over all its connections and REST requests together (one
    /// budget per credential).
    pub publish_rate_per_sec: u32,
    /// Largest burst of mutations, shared the same way.
    pub publish_burst: u32,
}
