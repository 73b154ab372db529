//! Making a changed credential take effect on what a connection already
//! holds. A renewal (`auth` on a live connection) or a resume with a
//! narrower credential must not keep privileges the new one lacks:
//! - without `subscribe`, the attachment is detached (error + `detached`);
//! - without `presence-subscribe`, presence delivery on it stops (error);
//! - without `presence`, the connection leaves presence there (error).

use std::collections::HashMap;

use serde_json::Value;
use tether_core::capability::Operation as Cap;
use tether_core::{ChannelName, ErrorCode, ErrorInfo};

use super::{Connection, now_ms};
use crate::auth::Principal;
use crate::protocol::{EncodeFrame, ServerFrame};

fn forbidden(message: String) -> ErrorInfo {
    ErrorInfo::new(ErrorCode::Forbidden, message)
}

impl Connection {
    /// Drops whatever the connection holds that `principal` does not allow.
    pub(super) fn narrow_to(&mut self, principal: &Principal) {
        let lost: Vec<ChannelName> = self
            .attachments
            .keys()
            .filter(|channel| !principal.allows(channel, Cap::Subscribe))
            .cloned()
            .collect();
        for channel in lost {
            if let Some(task) = self.attachments.remove(&channel) {
                task.abort();
            }
            if let Ok(mut starts) = self.starts.lock() {
                starts.remove(&channel);
            }
            let err = forbidden(format!(
                "your new credential does not grant subscribe on {channel}"
            ));
            self.reply_error(None, Some(channel.as_str()), err);
            self.outbox.send(
                ServerFrame::Detached {
                    req: None,
                    channel: channel.as_str().into(),
                }
                .encode(),
            );
        }
        // The attachment tasks read the flag before each presence delivery,
        // so turning it off stops presence at once, sync pages included.
        let mut silenced = Vec::new();
        if let Ok(mut starts) = self.starts.lock() {
            for (channel, start) in starts.iter_mut() {
                if start.presence && !principal.allows(channel, Cap::PresenceSubscribe) {
                    start.presence = false;
                    silenced.push(channel.clone());
                }
            }
        }
        for channel in silenced {
            let err = forbidden(format!(
                "your new credential does not grant presence-subscribe on {channel}: \
                 presence delivery stopped"
            ));
            self.reply_error(None, Some(channel.as_str()), err);
        }
        let left: Vec<ChannelName> = self
            .presence
            .keys()
            .filter(|channel| !principal.allows(channel, Cap::Presence))
            .cloned()
            .collect();
        for channel in left {
            self.presence.remove(&channel);
            self.app
                .engine
                .presence()
                .leave(&channel, &self.connection_id, now_ms());
            let err = forbidden(format!(
                "your new credential does not grant presence on {channel}: you left its presence"
            ));
            self.reply_error(None, Some(channel.as_str()), err);
        }
    }

    /// Takes over a resumed session's presence: re-enters it where the
    /// grace period already removed it, and leaves it at once on channels
    /// the resuming credential may not be present on.
    pub(super) fn adopt_presence(
        &mut self,
        principal: &Principal,
        presence: HashMap<ChannelName, Value>,
        already_left: bool,
    ) {
        let engine_presence = self.app.engine.presence();
        for (channel, data) in presence {
            if !principal.allows(&channel, Cap::Presence) {
                if !already_left {
                    engine_presence.leave(&channel, &self.connection_id, now_ms());
                }
                let err = forbidden(format!(
                    "your credential does not grant presence on {channel}: you left its presence"
                ));
                self.reply_error(None, Some(channel.as_str()), err);
                continue;
            }
            if already_left {
                let _ = engine_presence.enter(
                    &channel,
                    self.identity.client_id.clone(),
                    &self.connection_id,
                    data.clone(),
                    now_ms(),
                );
            }
            self.presence.insert(channel, data);
        }
    }
}
