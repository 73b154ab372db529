//! Per-connection limits on what a connection holds on the server: the
//! channels it uses (attached or present, counted once) and its presence
//! changes (data size, rate). Without them one connection could enter
//! presence on thousands of channels with large data and exhaust memory.

use std::io;

use serde_json::Value;
use tether_core::{ChannelName, ErrorCode, ErrorInfo};

use super::{Connection, now_ms};
use crate::protocol::PresenceVerb;

/// Counts bytes written, to size JSON without building it.
struct Counter(usize);

impl io::Write for Counter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The size of `data` as JSON.
fn json_len(data: &Value) -> usize {
    let mut counter = Counter(0);
    // Writing a `Value` to a counter cannot fail.
    let _ = serde_json::to_writer(&mut counter, data);
    counter.0
}

impl Connection {
    /// Whether using `channel` (attaching it or entering presence on it)
    /// stays within `max_channels_per_connection`. A channel attached and
    /// present counts once; one already in use is always allowed.
    pub(super) fn room_for(&self, channel: &ChannelName) -> Result<(), ErrorInfo> {
        if self.attachments.contains_key(channel) || self.presence.contains_key(channel) {
            return Ok(());
        }
        let max = self.app.config.max_channels_per_connection;
        let in_use = self.attachments.len()
            + self
                .presence
                .keys()
                .filter(|c| !self.attachments.contains_key(*c))
                .count();
        if in_use >= max {
            return Err(ErrorInfo::new(
                ErrorCode::TooManyChannels,
                format!(
                    "a connection may use at most {max} channels (attached or present); \
                     detach or leave some"
                ),
            ));
        }
        Ok(())
    }

    /// Checks a presence change against the connection's presence rate
    /// limit, the data size limit and the channel limit.
    pub(super) fn check_presence(
        &mut self,
        channel: &ChannelName,
        action: PresenceVerb,
        data: &Value,
    ) -> Result<(), ErrorInfo> {
        let config = &self.app.config;
        if !self.presence_bucket.try_take(now_ms()) {
            return Err(ErrorInfo::new(
                ErrorCode::PresenceRateLimited,
                format!(
                    "more than {} presence changes per second (bursts of {}); slow down",
                    config.presence_rate_per_sec, config.presence_burst
                ),
            ));
        }
        if matches!(action, PresenceVerb::Leave) {
            return Ok(());
        }
        let size = json_len(data);
        if size > config.max_presence_data_bytes {
            return Err(ErrorInfo::new(
                ErrorCode::PresenceDataTooLarge,
                format!(
                    "presence data of {size} bytes is over the limit of {}",
                    config.max_presence_data_bytes
                ),
            ));
        }
        self.room_for(channel)
    }
}
