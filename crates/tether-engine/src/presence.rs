//! Presence: who is on a channel right now. State, not log: the current
//! member set per channel, kept in memory.
//!
//! Every change bumps the channel's presence version and is broadcast
//! through the [`Broker`] *under the same lock*, so a subscriber that starts
//! listening and then takes a snapshot sees the snapshot followed by exactly
//! the changes after it (it skips buffered changes whose version the
//! snapshot already holds). That is "sync, then live, no gap".

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use serde::Serialize;
use serde_json::Value;
use tether_core::{ChannelName, ErrorCode, ErrorInfo};

use crate::broker::{Broker, LiveItem};

/// One member: a connection of a client on a channel.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Member {
    /// The client's identity (from its credential).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// The connection; a client on two devices is two members.
    pub connection_id: String,
    /// Free-form state: role, status (`thinking`, `streaming`, `handed-off`).
    pub data: Value,
    /// When the member entered or last updated (ms since the Unix epoch).
    pub timestamp: u64,
}

/// What happened to a member.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PresenceAction {
    /// Joined the channel.
    Enter,
    /// Changed its data.
    Update,
    /// Left (explicitly, by closing, or after the grace period).
    Leave,
}

/// A presence change as broadcast.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PresenceEvent {
    /// The channel.
    #[serde(skip)]
    pub channel: ChannelName,
    /// What happened.
    pub action: PresenceAction,
    /// The member after the change (its last state for a leave).
    pub member: Member,
    /// The channel's presence version after this change.
    #[serde(skip)]
    pub version: u64,
}

#[derive(Default)]
struct State {
    /// Members by channel, then by connection id. Empty channels are removed.
    channels: HashMap<ChannelName, BTreeMap<String, Member>>,
    /// Versions come from one counter for all channels, so a channel that
    /// empties and fills again never reuses a version a subscriber saw.
    version: u64,
}

/// The presence of every channel on this node.
pub struct Presence {
    broker: Arc<Broker>,
    max_members: usize,
    /// A std mutex: never held across an await.
    state: Mutex<State>,
}

impl Presence {
    /// Presence broadcasting through `broker`, at most `max_members` per
    /// channel.
    pub fn new(broker: Arc<Broker>, max_members: usize) -> Presence {
        Presence {
            broker,
            max_members,
            state: Mutex::new(State::default()),
        }
    }

    /// Enters, or updates the data of an existing member.
    pub fn enter(
        &self,
        channel: &ChannelName,
        client_id: Option<String>,
        connection_id: &str,
        data: Value,
        now_ms: u64,
    ) -> Result<(), ErrorInfo> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.version += 1;
        let version = state.version;
        let members = state.channels.entry(channel.clone()).or_default();
        let action = if members.contains_key(connection_id) {
            PresenceAction::Update
        } else if members.len() >= self.max_members {
            return Err(ErrorInfo::new(
                ErrorCode::TooManyMembers,
                format!(
                    "{channel} has its maximum of {} presence members",
                    self.max_members
                ),
            ));
        } else {
            PresenceAction::Enter
        };
        let member = Member {
            client_id,
            connection_id: connection_id.to_owned(),
            data,
            timestamp: now_ms,
        };
        members.insert(connection_id.to_owned(), member.clone());
        let event = PresenceEvent {
            channel: channel.clone(),
            action,
            member,
            version,
        };
        self.broker
            .send(channel, LiveItem::Presence(Arc::new(event)));
        Ok(())
    }

    /// Removes a member; returns whether it was present.
    pub fn leave(&self, channel: &ChannelName, connection_id: &str, now_ms: u64) -> bool {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let Some(members) = state.channels.get_mut(channel) else {
            return false;
        };
        let Some(mut member) = members.remove(connection_id) else {
            return false;
        };
        if members.is_empty() {
            state.channels.remove(channel);
        }
        state.version += 1;
        member.timestamp = now_ms;
        let event = PresenceEvent {
            channel: channel.clone(),
            action: PresenceAction::Leave,
            member,
            version: state.version,
        };
        self.broker
            .send(channel, LiveItem::Presence(Arc::new(event)));
        true
    }

    /// The current members and the version they correspond to.
    pub fn snapshot(&self, channel: &ChannelName) -> (Vec<Member>, u64) {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let members = state
            .channels
            .get(channel)
            .map(|members| members.values().cloned().collect())
            .unwrap_or_default();
        (members, state.version)
    }

    /// Whether `connection_id` is a member of `channel`.
    pub fn is_member(&self, channel: &ChannelName, connection_id: &str) -> bool {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state
            .channels
            .get(channel)
            .is_some_and(|members| members.contains_key(connection_id))
    }
}
