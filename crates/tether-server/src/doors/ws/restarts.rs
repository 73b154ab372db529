//! Which channels a resumed connection attaches, and from where.
//!
//! The old session's attachments, plus every channel the client named in
//! `positions`: the client may have sent an attach the old socket never
//! processed, and must not wait for a channel the server silently dropped.
//! A channel the credential may not subscribe to, or beyond the channel
//! limit, is reported with an error frame instead of being skipped.

use std::collections::{BTreeMap, HashMap};

use tether_core::capability::Operation as Cap;
use tether_core::{ChannelName, ErrorCode, ErrorInfo, Serial};

use super::Connection;
use crate::auth::Principal;
use crate::engine::Start;

/// The plan: channels to attach (in name order) and channels refused.
pub(super) struct Restarts {
    pub attach: Vec<(ChannelName, Start)>,
    pub refused: Vec<(ChannelName, ErrorInfo)>,
}

impl Connection {
    /// Plans the attachments of a resume. `old` is how the vanished
    /// connection's channels would start again, `given` the client's
    /// positions (exact, so they win). Call after presence was adopted, so
    /// the channel limit counts present channels too.
    pub(super) fn plan_restarts(
        &self,
        principal: &Principal,
        old: HashMap<ChannelName, Start>,
        given: &HashMap<ChannelName, Serial>,
    ) -> Restarts {
        let mut wanted: BTreeMap<ChannelName, Start> = old.into_iter().collect();
        for (channel, position) in given {
            // A channel the old session never attached: attach it from the
            // client's position, without presence (the client did not say).
            wanted.entry(channel.clone()).or_default().from = Some(*position);
        }
        let max = self.app.config.max_channels_per_connection;
        let mut in_use = self.presence.len();
        let mut plan = Restarts {
            attach: Vec::new(),
            refused: Vec::new(),
        };
        for (channel, mut start) in wanted {
            if !principal.allows(&channel, Cap::Subscribe) {
                let err = ErrorInfo::new(
                    ErrorCode::Forbidden,
                    format!("your credential does not grant subscribe on {channel}: not attached"),
                );
                plan.refused.push((channel, err));
                continue;
            }
            if !self.presence.contains_key(&channel) {
                if in_use >= max {
                    let err = ErrorInfo::new(
                        ErrorCode::TooManyChannels,
                        format!(
                            "a connection may use at most {max} channels (attached or present): \
                             {channel} not attached"
                        ),
                    );
                    plan.refused.push((channel, err));
                    continue;
                }
                in_use += 1;
            }
            start.presence &= principal.allows(&channel, Cap::PresenceSubscribe);
            plan.attach.push((channel, start));
        }
        plan
    }
}
