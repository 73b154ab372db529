//! Presence (docs/presence.md): who is on a channel right now, and this
//! connection's own membership.
//!
//! Entering needs the `presence` capability; watching ([`Presence::subscribe`])
//! needs `presence-subscribe` and attaches the channel with presence. The
//! member set is rebuilt from the server's `presence-sync` pages (which
//! replace it) and kept current by `presence` changes. After a reconnect
//! the fresh sync is compared with the set held and the differences are
//! reported as events with `from_sync: true`, so a subscriber that keeps
//! its own state never drifts.
//!
//! The SDK remembers what this connection entered with: a resumed
//! connection keeps its presence on the server (nobody sees a leave and an
//! enter), and after a connection that could not be resumed the driver
//! enters again with the same data by itself.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::MutexGuard;
use std::task::{Context, Poll};

use futures::Stream;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use crate::channel::{Channel, SubscriptionGuard};
use crate::driver::Sink;
use crate::error::Error;
use crate::reply::DoneFuture;

/// What happened to a presence member, and (as a request) what to do:
/// the protocol's own type.
pub use tether_protocol::PresenceAction;

/// One member of a channel's presence set: one connection of one client
/// (a user on two devices is two members with the same `client_id`). The
/// SDK's owned copy of [`tether_protocol::Member`], which borrows for the
/// server's sake.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Member {
    /// The client's identity, from its credential.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// The member's connection: what tells two members apart.
    pub connection_id: String,
    /// Free-form state, by convention `{"role": .., "status": ..}`.
    #[serde(default)]
    pub data: Value,
    /// When it entered or last updated (ms since the Unix epoch).
    #[serde(default)]
    pub timestamp: u64,
}

impl From<tether_protocol::Member<'_>> for Member {
    fn from(member: tether_protocol::Member<'_>) -> Member {
        Member {
            client_id: member.client_id.map(Cow::into_owned),
            connection_id: member.connection_id.into_owned(),
            data: member.data.into_owned(),
            timestamp: member.timestamp,
        }
    }
}

/// One change of a channel's member set.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct PresenceEvent {
    /// What happened to the member.
    pub action: PresenceAction,
    /// The member after the change (its last state for a leave).
    pub member: Member,
    /// Derived from comparing a fresh sync with the set held (after an
    /// attach or a reconnect), not a change the server broadcast.
    pub from_sync: bool,
}

/// A channel's member set as the driver keeps it.
#[derive(Debug, Default)]
pub(crate) struct PresenceSet {
    members: BTreeMap<String, Member>,
    /// Pages of a sync in progress.
    syncing: Option<BTreeMap<String, Member>>,
    synced: bool,
}

impl PresenceSet {
    /// One `presence-sync` page; the last (`complete`) replaces the set and
    /// returns the differences with the set held before.
    pub(crate) fn on_sync(&mut self, members: Vec<Member>, complete: bool) -> Vec<PresenceEvent> {
        let page = self.syncing.get_or_insert_with(BTreeMap::new);
        for member in members {
            page.insert(member.connection_id.clone(), member);
        }
        if !complete {
            return Vec::new();
        }
        let next = self.syncing.take().unwrap_or_default();
        let event = |action, member: &Member| PresenceEvent {
            action,
            member: member.clone(),
            from_sync: true,
        };
        let mut events: Vec<PresenceEvent> = self
            .members
            .iter()
            .filter(|(id, _)| !next.contains_key(*id))
            .map(|(_, old)| event(PresenceAction::Leave, old))
            .collect();
        for (id, member) in &next {
            match self.members.get(id) {
                None => events.push(event(PresenceAction::Enter, member)),
                Some(old) if old != member => events.push(event(PresenceAction::Update, member)),
                Some(_) => {}
            }
        }
        self.members = next;
        self.synced = true;
        events
    }

    /// One live change; `None` while a sync is being paged (the change
    /// applies to the set being built, and the diff reports it).
    pub(crate) fn on_change(
        &mut self,
        action: PresenceAction,
        member: Member,
    ) -> Option<PresenceEvent> {
        let target = self.syncing.as_mut().unwrap_or(&mut self.members);
        match action {
            PresenceAction::Leave => target.remove(&member.connection_id),
            PresenceAction::Enter | PresenceAction::Update => {
                target.insert(member.connection_id.clone(), member.clone())
            }
        };
        if self.syncing.is_some() {
            return None;
        }
        Some(PresenceEvent {
            action,
            member,
            from_sync: false,
        })
    }

    /// The set is stale until the next complete sync (reconnecting,
    /// re-attaching); it is kept to compare that sync with.
    pub(crate) fn suspend(&mut self) {
        self.syncing = None;
        self.synced = false;
    }

    /// Presence is no longer delivered: the set is unknown.
    pub(crate) fn clear(&mut self) {
        *self = PresenceSet::default();
    }

    fn members(&self) -> Vec<Member> {
        self.members.values().cloned().collect()
    }
}

/// The presence of one channel: [`Channel::presence`].
///
/// ```no_run
/// # async fn run(channel: tether_client::Channel) -> Result<(), tether_client::Error> {
/// use futures::StreamExt;
/// use serde_json::json;
///
/// let presence = channel.presence();
/// presence.enter(json!({"role": "agent", "status": "idle"})).await?;
/// let mut changes = presence.subscribe().await?;
/// while let Some(change) = changes.next().await {
///     println!("{:?} {}", change.action, change.member.connection_id);
///     println!("{} here now", presence.members().len());
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Presence {
    channel: Channel,
}

impl Presence {
    pub(crate) fn new(channel: Channel) -> Presence {
        Presence { channel }
    }

    /// Enters the member set as this connection with `data` (by convention
    /// `{"role": .., "status": ..}`); entering again updates. Resolves on
    /// the server's confirmation.
    pub fn enter(&self, data: Value) -> DoneFuture {
        self.send(PresenceAction::Enter, data)
    }

    /// Changes this connection's member data (enters if not present).
    pub fn update(&self, data: Value) -> DoneFuture {
        self.send(PresenceAction::Update, data)
    }

    /// Leaves the member set. Closing the client leaves every channel.
    pub fn leave(&self) -> DoneFuture {
        self.send(PresenceAction::Leave, Value::Null)
    }

    /// The current members, ordered by connection id. Kept current while a
    /// [`Presence::subscribe`] of the channel is alive; empty before.
    pub fn members(&self) -> Vec<Member> {
        self.set().members()
    }

    /// Whether [`Presence::members`] is current: a complete sync arrived on
    /// the current attachment.
    pub fn is_synced(&self) -> bool {
        self.set().synced
    }

    /// Attaches the channel with presence (re-attaching it from its
    /// position if a subscription attached it without) and returns its
    /// member changes. Waits until the server confirmed the attach; the
    /// first sync follows, reported as `from_sync` enters.
    pub async fn subscribe(&self) -> Result<PresenceSubscription, Error> {
        let (events, rx) = mpsc::unbounded_channel();
        let guard = self.channel.attach(Sink::Presence(events)).await?;
        Ok(PresenceSubscription { rx, _guard: guard })
    }

    /// The members right now, asked of the server over REST.
    pub async fn fetch(&self) -> Result<Vec<Member>, Error> {
        self.channel.inner.rest.presence(self.channel.name()).await
    }

    fn set(&self) -> MutexGuard<'_, PresenceSet> {
        self.channel.shared.presence()
    }

    fn send(&self, action: PresenceAction, data: Value) -> DoneFuture {
        let (reply, rx) = oneshot::channel();
        let request = crate::driver::Request::Presence { action, data };
        match self
            .channel
            .inner
            .enqueue(self.channel.name.clone(), request, reply.into())
        {
            Ok(()) => DoneFuture::waiting(rx),
            Err(err) => DoneFuture::failed(err),
        }
    }
}

/// The member changes of a channel; see [`Presence::subscribe`]. Ends when
/// the client is closed or the server refuses the attach.
#[derive(Debug)]
pub struct PresenceSubscription {
    rx: mpsc::UnboundedReceiver<PresenceEvent>,
    _guard: SubscriptionGuard,
}

impl Stream for PresenceSubscription {
    type Item = PresenceEvent;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<PresenceEvent>> {
        self.rx.poll_recv(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn member(id: &str, data: Value) -> Member {
        serde_json::from_value(json!({"connection_id": id, "data": data, "timestamp": 1}))
            .expect("member")
    }

    #[test]
    fn a_sync_replaces_the_set_and_reports_the_differences() {
        let mut set = PresenceSet::default();
        assert!(set.on_sync(vec![member("a", json!(1))], false).is_empty());
        let events = set.on_sync(vec![member("b", json!(1))], true);
        assert_eq!(events.len(), 2);
        assert!(
            events
                .iter()
                .all(|e| e.action == PresenceAction::Enter && e.from_sync)
        );
        assert!(set.synced);
        set.suspend();
        let events = set.on_sync(vec![member("b", json!(2)), member("c", json!(1))], true);
        let summary: Vec<_> = events
            .iter()
            .map(|e| (e.action, e.member.connection_id.as_str()))
            .collect();
        assert_eq!(
            summary,
            [
                (PresenceAction::Leave, "a"),
                (PresenceAction::Update, "b"),
                (PresenceAction::Enter, "c")
            ]
        );
        assert_eq!(set.members().len(), 2);
    }

    #[test]
    fn changes_during_a_sync_go_into_the_set_being_built() {
        let mut set = PresenceSet::default();
        set.on_sync(vec![member("a", json!(1))], false);
        assert!(
            set.on_change(PresenceAction::Enter, member("b", json!(1)))
                .is_none()
        );
        let events = set.on_sync(Vec::new(), true);
        assert_eq!(events.len(), 2);
        let live = set.on_change(PresenceAction::Leave, member("a", json!(1)));
        assert!(live.is_some_and(|e| !e.from_sync && e.action == PresenceAction::Leave));
        assert_eq!(set.members(), vec![member("b", json!(1))]);
        set.clear();
        assert!(set.members().is_empty() && !set.synced);
    }
}
