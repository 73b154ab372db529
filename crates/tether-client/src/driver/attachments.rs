//! Attached channels: attaching and re-attaching from the last position,
//! folding events into each channel's view, presence, and fan-out to
//! subscriptions.
//!
//! The resume rule (docs/protocol.md, "Resume: the guarantee"): keep the
//! last `position` the server gave (events and `synced` frames carry one
//! only when it is exact) and attach with `from` it after a reconnect, or
//! name it in the `resume` frame, after which the server re-attaches the
//! channel by itself. Events replayed around snapshots may repeat; the
//! view's rule "fold only a version newer than the one held" absorbs them,
//! and only events that changed the view reach subscribers.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use tether_core::{ChannelName, ErrorCode, ErrorInfo, Message, Serial, View};
use tokio::sync::{mpsc, oneshot};

use crate::channel::EphemeralMessage;
use crate::channel::{ChannelShared, ChannelState, Continuity, Event, SubscribeOptions};
use crate::error::Error;
use crate::presence::PresenceEvent;
use crate::presence::{Member, PresenceAction};
use tether_protocol::{ClientFrame, ResumedAttachment};

/// Where a subscription's items go.
#[derive(Debug)]
pub(crate) enum Sink {
    /// Message and ephemeral events ([`crate::Subscription`]).
    Events(mpsc::UnboundedSender<Event>),
    /// Presence changes ([`crate::presence::PresenceSubscription`]); the
    /// channel is attached with presence while one is alive.
    Presence(mpsc::UnboundedSender<PresenceEvent>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    /// To be attached on the current (or next) connection.
    Pending,
    /// Attach sent as this request; waiting for `attached`.
    Attaching(u64),
    /// Re-attached by the server after a `resume`; waiting for its
    /// `attached` (which has no `req`).
    Resuming,
    /// Events flow.
    Attached,
}

/// One [`crate::Subscription`] of a channel.
#[derive(Debug)]
struct Subscriber {
    id: u64,
    events: mpsc::UnboundedSender<Event>,
    /// Wants [`Event::Synced`].
    synced: bool,
}

#[derive(Debug)]
struct Attachment {
    shared: Arc<ChannelShared>,
    subscribers: Vec<Subscriber>,
    watchers: Vec<(u64, mpsc::UnboundedSender<PresenceEvent>)>,
    ready: Vec<oneshot::Sender<Result<Continuity, Error>>>,
    rewind: Option<usize>,
    /// Whether presence is asked for: once a watcher came, for as long as
    /// the channel stays attached (re-attaching to drop it is not worth it).
    presence: bool,
    /// The last exact position received: where a re-attach resumes.
    resume_from: Option<Serial>,
    status: Status,
    /// The current attach has caught up (`synced` came).
    caught_up: bool,
}

impl Attachment {
    /// Moves the resume position, and shows it to [`crate::Channel::position`].
    fn set_position(&mut self, position: Option<Serial>) {
        self.resume_from = position;
        *self.shared.position() = position;
    }

    fn fan_out(&mut self, event: Event) {
        self.subscribers
            .retain(|sub| sub.events.send(event.clone()).is_ok());
    }

    /// The catch-up is done: tell the subscriptions that asked.
    fn fan_out_synced(&mut self) {
        let position = self.resume_from;
        self.subscribers
            .retain(|sub| !sub.synced || sub.events.send(Event::Synced { position }).is_ok());
    }

    fn fan_out_presence(&mut self, events: Vec<PresenceEvent>) {
        for event in events {
            self.watchers
                .retain(|(_, tx)| tx.send(event.clone()).is_ok());
        }
    }

    fn is_unwatched(&self) -> bool {
        self.subscribers.is_empty() && self.watchers.is_empty()
    }

    /// Re-attach on the current connection (from the position).
    fn restart(&mut self) {
        self.status = Status::Pending;
        self.caught_up = false;
        self.shared.presence().suspend();
        self.shared.state.send_replace(ChannelState::Attaching);
    }
}

/// Every channel someone subscribes to.
#[derive(Debug, Default)]
pub(crate) struct Attachments {
    map: HashMap<ChannelName, Attachment>,
    /// Channels to detach on the current connection.
    detaches: Vec<ChannelName>,
}

impl Attachments {
    pub(crate) fn subscribe(
        &mut self,
        channel: ChannelName,
        shared: Arc<ChannelShared>,
        options: SubscribeOptions,
        id: u64,
        sink: Sink,
        ready: oneshot::Sender<Result<Continuity, Error>>,
    ) {
        let attachment = self.map.entry(channel).or_insert_with(|| {
            *shared.view() = View::new();
            shared.presence().clear();
            *shared.position() = options.from;
            shared.state.send_replace(ChannelState::Attaching);
            Attachment {
                shared,
                subscribers: Vec::new(),
                watchers: Vec::new(),
                ready: Vec::new(),
                rewind: options.rewind,
                presence: false,
                resume_from: options.from,
                status: Status::Pending,
                caught_up: false,
            }
        });
        match sink {
            Sink::Events(events) => {
                if options.synced && attachment.caught_up {
                    let position = attachment.resume_from;
                    let _ = events.send(Event::Synced { position });
                }
                attachment.subscribers.push(Subscriber {
                    id,
                    events,
                    synced: options.synced,
                });
            }
            Sink::Presence(events) => {
                attachment.watchers.push((id, events));
                if !attachment.presence {
                    attachment.presence = true;
                    if attachment.status != Status::Pending {
                        attachment.restart();
                    }
                }
            }
        }
        match (attachment.status, &*attachment.shared.state.borrow()) {
            (Status::Attached, ChannelState::Attached { continuity }) => {
                let _ = ready.send(Ok(*continuity));
            }
            _ => attachment.ready.push(ready),
        }
    }

    /// A subscription was dropped; the channel is detached with its last.
    pub(crate) fn unsubscribe(&mut self, channel: &ChannelName, id: u64, connected: bool) {
        let Some(attachment) = self.map.get_mut(channel) else {
            return;
        };
        attachment.subscribers.retain(|sub| sub.id != id);
        attachment.watchers.retain(|(sub, _)| *sub != id);
        if attachment.is_unwatched() {
            self.remove(channel, connected);
        }
    }

    fn remove(&mut self, channel: &ChannelName, connected: bool) {
        let Some(attachment) = self.map.remove(channel) else {
            return;
        };
        if connected && attachment.status != Status::Pending {
            self.detaches.push(channel.clone());
        }
        *attachment.shared.view() = View::new();
        attachment.shared.presence().clear();
        attachment.shared.state.send_replace(ChannelState::Detached);
    }

    /// Frames to send now: detaches, then attaches of pending channels.
    pub(crate) fn frames(&mut self, next_req: &mut impl FnMut() -> u64) -> Vec<String> {
        let mut frames: Vec<String> = self
            .detaches
            .drain(..)
            .map(|channel| {
                ClientFrame::Detach {
                    req: Some(next_req()),
                    channel: channel.as_str().to_owned(),
                }
                .to_json()
            })
            .collect();
        for (channel, attachment) in &mut self.map {
            if attachment.status != Status::Pending {
                continue;
            }
            let req = next_req();
            attachment.status = Status::Attaching(req);
            frames.push(
                ClientFrame::Attach {
                    req: Some(req),
                    channel: channel.as_str().to_owned(),
                    from: attachment.resume_from.map(|serial| serial.to_string()),
                    // With a position the server uses it only if it cannot
                    // resume: how much current state to send after a loss.
                    rewind: attachment.rewind,
                    presence: attachment.presence,
                }
                .to_json(),
            );
        }
        frames
    }

    pub(crate) fn has_frames(&self) -> bool {
        !self.detaches.is_empty() || self.map.values().any(|a| a.status == Status::Pending)
    }

    /// The last exact position of every channel, for the `resume` frame.
    pub(crate) fn positions(&self) -> BTreeMap<&str, Serial> {
        self.map
            .iter()
            .filter_map(|(channel, a)| Some((channel.as_str(), a.resume_from?)))
            .collect()
    }

    /// The connection was resumed and the server re-attached `resumed` by
    /// itself: those channels wait for its `attached`; a channel it
    /// re-attached that nobody wants any more is detached, and one
    /// re-attached without the presence asked for is attached again.
    pub(crate) fn resumed(&mut self, resumed: &[ResumedAttachment]) {
        for attachment in resumed {
            let Ok(name) = ChannelName::new(&attachment.channel) else {
                continue;
            };
            let Some(ours) = self.map.get_mut(&name) else {
                self.detaches.push(name);
                continue;
            };
            if ours.status != Status::Pending || (ours.presence && !attachment.presence) {
                continue;
            }
            ours.status = Status::Resuming;
            if ours.resume_from.is_none() && attachment.position.is_some() {
                ours.set_position(attachment.position);
            }
        }
    }

    pub(crate) fn on_attached(
        &mut self,
        req: Option<u64>,
        channel: &str,
        continuity: Continuity,
        error: Option<ErrorInfo>,
    ) {
        let Some(attachment) = self.find(channel) else {
            return;
        };
        // Our reply, the server's re-attach after a resume, or the server
        // re-announcing a loss mid-subscription; anything else is left over
        // from an earlier attach.
        let current = match (attachment.status, req) {
            (Status::Attaching(sent), Some(req)) => sent == req,
            (Status::Resuming | Status::Attached, None) => true,
            _ => false,
        };
        if !current {
            return;
        }
        attachment.status = Status::Attached;
        attachment.caught_up = false;
        // The sync that follows (if presence is delivered) replaces the set.
        attachment.shared.presence().suspend();
        if continuity == Continuity::Lost {
            *attachment.shared.view() = View::new();
            attachment.set_position(None);
            let error = error
                .unwrap_or_else(|| ErrorInfo::new(ErrorCode::ContinuityLost, "continuity lost"));
            attachment.fan_out(Event::ContinuityLost(error));
        }
        attachment
            .shared
            .state
            .send_replace(ChannelState::Attached { continuity });
        for ready in attachment.ready.drain(..) {
            let _ = ready.send(Ok(continuity));
        }
    }

    pub(crate) fn on_synced(&mut self, channel: &str, position: Option<Serial>) {
        let Some(attachment) = self.attached(channel) else {
            return;
        };
        if position.is_some() {
            attachment.set_position(position);
        }
        attachment.caught_up = true;
        attachment.fan_out_synced();
    }

    /// Folds an event and passes it on if it was new; a channel whose last
    /// subscription is gone is detached.
    pub(crate) fn on_message(
        &mut self,
        channel: &str,
        position: Option<Serial>,
        message: Message,
        connected: bool,
    ) {
        let Ok(name) = ChannelName::new(channel) else {
            return;
        };
        let Some(attachment) = self.map.get_mut(&name) else {
            return;
        };
        if attachment.status != Status::Attached {
            return; // left over from a previous attach of the channel
        }
        let fresh = {
            let mut view = attachment.shared.view();
            let held = view.get(message.serial).map(|m| m.version.serial);
            if held.is_some_and(|held| held >= message.version.serial) {
                false
            } else {
                // A fragment of a message the view never saw (attached
                // mid-stream without rewind) is not folded but still passed
                // on: the subscriber may care.
                view.apply(&message);
                true
            }
        };
        if position.is_some() {
            attachment.set_position(position);
        }
        if !fresh {
            return;
        }
        attachment.fan_out(Event::Message(message));
        if attachment.is_unwatched() {
            self.remove(&name, connected);
        }
    }

    /// A live-only message: passed on, not folded.
    pub(crate) fn on_ephemeral(&mut self, channel: &str, message: EphemeralMessage) {
        if let Some(attachment) = self.attached(channel) {
            attachment.fan_out(Event::Ephemeral(message));
        }
    }

    /// One page of the member set.
    pub(crate) fn on_presence_sync(&mut self, channel: &str, members: Vec<Member>, complete: bool) {
        if let Some(attachment) = self.attached(channel) {
            let events = attachment.shared.presence().on_sync(members, complete);
            attachment.fan_out_presence(events);
        }
    }

    /// One member change.
    pub(crate) fn on_presence(&mut self, channel: &str, action: PresenceAction, member: Member) {
        if let Some(attachment) = self.attached(channel) {
            let event = attachment.shared.presence().on_change(action, member);
            attachment.fan_out_presence(event.into_iter().collect());
        }
    }

    /// An error reply to an attach: the subscriptions end. Returns whether
    /// `req` was an attach.
    pub(crate) fn on_attach_error(&mut self, req: u64, info: &ErrorInfo) -> bool {
        let Some(channel) = self
            .map
            .iter()
            .find(|(_, a)| a.status == Status::Attaching(req))
            .map(|(c, _)| c.clone())
        else {
            return false;
        };
        if let Some(attachment) = self.map.remove(&channel) {
            for ready in attachment.ready {
                let _ = ready.send(Err(Error::Server(info.clone())));
            }
            *attachment.shared.view() = View::new();
            attachment.shared.presence().clear();
            attachment
                .shared
                .state
                .send_replace(ChannelState::Failed(info.clone()));
        }
        true
    }

    /// Whether the server is sending us events of `channel`.
    pub(crate) fn is_attached(&self, channel: &str) -> bool {
        ChannelName::new(channel)
            .ok()
            .and_then(|c| self.map.get(&c))
            .is_some_and(|a| a.status == Status::Attached)
    }

    /// The connection dropped: every channel is re-attached on the next.
    pub(crate) fn disconnected(&mut self) {
        self.detaches.clear();
        for attachment in self.map.values_mut() {
            attachment.restart();
        }
    }

    /// The client is closing: subscriptions end, waiters fail.
    pub(crate) fn close(&mut self) {
        for (_, attachment) in self.map.drain() {
            for ready in attachment.ready {
                let _ = ready.send(Err(Error::Closed));
            }
            attachment.shared.state.send_replace(ChannelState::Detached);
        }
    }

    fn find(&mut self, channel: &str) -> Option<&mut Attachment> {
        let name = ChannelName::new(channel).ok()?;
        self.map.get_mut(&name)
    }

    /// The attachment of `channel` if its events are current.
    fn attached(&mut self, channel: &str) -> Option<&mut Attachment> {
        self.find(channel).filter(|a| a.status == Status::Attached)
    }
}
