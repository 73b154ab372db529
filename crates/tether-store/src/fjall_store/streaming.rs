//! Finding responses still streaming, for the server's start-up sweep of
//! abandoned responses (a writer that died, a bridge job a restart ended).
//!
//! A full scan of the current states, run once at start-up: records are
//! JSON, so a byte search for the status skips decoding nearly all of them.
//! (A status set by an append lives in a fragment: the few candidates are
//! folded to their current state before they count.)

use fjall::Readable;
use tether_core::fold::STREAM_STATUS;
use tether_core::{ChannelName, Message};

use super::fragments::{current_state, fragments_prefix};
use super::keys::{channel_prefix, trailing_seq};
use super::{Handles, storage};
use crate::StoreError;

/// The value a streaming response's status has.
const STREAMING: &str = "streaming";

impl Handles {
    /// See [`crate::LogStore::streaming_messages`].
    pub(crate) fn streaming_messages(&self) -> Result<Vec<(ChannelName, Message)>, StoreError> {
        let needle = format!("\"{STREAM_STATUS}\":\"{STREAMING}\"");
        let needle = needle.as_bytes();
        let snap = self.db.snapshot();
        let mut found = Vec::new();
        for item in self.channel_metas(&snap) {
            let (channel, _) = item?;
            for item in snap.prefix(&self.states, channel_prefix(&channel)) {
                let (item_key, value) = item.into_inner().map_err(storage)?;
                if !value.windows(needle.len()).any(|w| w == needle) {
                    continue;
                }
                let seq = trailing_seq(item_key.as_ref())?;
                let fragments = snap
                    .prefix(&self.fragments, fragments_prefix(&channel, seq))
                    .map(fjall::Guard::into_inner);
                let (message, _) = current_state(&value, fragments)?;
                let streaming = message
                    .extras
                    .as_ref()
                    .and_then(|e| e.get(STREAM_STATUS))
                    .and_then(|s| s.as_str())
                    == Some(STREAMING);
                if streaming {
                    found.push((channel.clone(), message));
                }
            }
        }
        Ok(found)
    }
}
