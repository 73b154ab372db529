//! Presence: who is on a channel right now. State, not log: the current
//! member set per channel, kept in memory.
//!
//! [`PresenceStore`] is the seam (in memory here, [`MemoryPresence`]; a
//! shared store such as Redis for many nodes next). Every change bumps the
//! channel's presence version and is published through the [`Fanout`]
//! *under the same lock*, so a subscriber that starts
//! listening and then takes a snapshot sees the snapshot followed by exactly
//! the changes after it (it skips buffered changes whose version the
//! snapshot already holds). That is "sync, then live, no gap".

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use crate::EngineError;
use serde_json::Value;
use tether_core::ChannelName;

use crate::fanout::{Fanout, FanoutItem};

/// One member: a connection of a client on a channel.
#[derive(Debug, Clone, PartialEq)]
pub struct Member {
    /// The client's identity (from its credential).
    pub client_id: Option<String>,
    /// The connection; a client on two devices is two members.
    pub connection_id: String,
    /// Free-form state: role, status (`thinking`, `streaming`, `handed-off`).
    pub data: Value,
    /// When the member entered or last updated (ms since the Unix epoch).
    pub timestamp: u64,
}

/// What happened to a member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PresenceAction {
    /// Joined the channel.
    Enter,
    /// Changed its data.
    Update,
    /// Left (explicitly, by closing, or after the grace period).
    Leave,
}

/// A presence change as broadcast.
#[derive(Debug, Clone, PartialEq)]
pub struct PresenceEvent {
    /// The channel.
    pub channel: ChannelName,
    /// What happened.
    pub action: PresenceAction,
    /// The member after the change (its last state for a leave).
    pub member: Member,
    /// The channel's presence version after this change.
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

/// Where the member sets live. Implementations publish every change
/// through the fan-out in version order (the version taken and the change
/// published under one lock, or one atomic step of a shared store), so
/// "snapshot, then the changes after it" has no gap.
pub trait PresenceStore: Send + Sync {
    /// Enters, or updates the data of an existing member; refused when the
    /// channel already has its maximum of members.
    fn enter(
        &self,
        channel: &ChannelName,
        client_id: Option<String>,
        connection_id: &str,
        data: Value,
        now_ms: u64,
    ) -> Result<(), EngineError>;

    /// Removes a member; returns whether it was present.
    fn leave(&self, channel: &ChannelName, connection_id: &str, now_ms: u64) -> bool;

    /// The current members and the version they correspond to.
    fn snapshot(&self, channel: &ChannelName) -> (Vec<Member>, u64);

    /// Whether `connection_id` is a member of `channel`.
    fn is_member(&self, channel: &ChannelName, connection_id: &str) -> bool;
}

/// The presence of every channel, in this process's memory.
pub struct MemoryPresence {
    fanout: Arc<dyn Fanout>,
    max_members: usize,
    /// A std mutex: never held across an await.
    state: Mutex<State>,
}

impl MemoryPresence {
    /// Presence publishing through `fanout`, at most `max_members` per
    /// channel.
    pub fn new(fanout: Arc<dyn Fanout>, max_members: usize) -> MemoryPresence {
        MemoryPresence {
            fanout,
            max_members,
            state: Mutex::new(State::default()),
        }
    }
}

impl PresenceStore for MemoryPresence {
    fn enter(
        &self,
        channel: &ChannelName,
        client_id: Option<String>,
        connection_id: &str,
        data: Value,
        now_ms: u64,
    ) -> Result<(), EngineError> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.version += 1;
        let version = state.version;
        let members = state.channels.entry(channel.clone()).or_default();
        let action = if members.contains_key(connection_id) {
            PresenceAction::Update
        } else if members.len() >= self.max_members {
            return Err(EngineError::TooManyMembers {
                channel: channel.clone(),
                limit: self.max_members,
            });
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
        self.fanout
            .publish(channel, FanoutItem::Presence(Arc::new(event)));
        Ok(())
    }

    fn leave(&self, channel: &ChannelName, connection_id: &str, now_ms: u64) -> bool {
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
        self.fanout
            .publish(channel, FanoutItem::Presence(Arc::new(event)));
        true
    }

    fn snapshot(&self, channel: &ChannelName) -> (Vec<Member>, u64) {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let members = state
            .channels
            .get(channel)
            .map(|members| members.values().cloned().collect())
            .unwrap_or_default();
        (members, state.version)
    }

    fn is_member(&self, channel: &ChannelName, connection_id: &str) -> bool {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state
            .channels
            .get(channel)
            .is_some_and(|members| members.contains_key(connection_id))
    }
}
