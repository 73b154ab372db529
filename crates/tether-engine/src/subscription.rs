//! A subscription: everything after a position, exactly once, then live.
//!
//! This is the core promise of Tether, so the mechanism is spelled out:
//!
//! 1. Listen live (a fan-out receiver) *before* reading anything.
//! 2. Catch up from the log after the position, in chunks. A message whose
//!    create lies in the replayed range is sent as ONE snapshot (its current
//!    version) and its later entries up to the snapshot's version are
//!    skipped (the `ahead` map).
//! 3. Switch to live: forward events whose position directly follows the
//!    last one processed. Anything else (an already-seen event is skipped; a
//!    gap or a `Lagged` receiver) sends the subscription back to step 2 from
//!    where it is, which is also how a slow reader catches up without the
//!    fan-out ever waiting for it.
//!
//! A delivery carries a position only when it is *exact*: everything up to
//! it was delivered and nothing after it (no snapshot runs ahead of it).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use crate::EngineError;
use tether_core::{Action, ChannelName, ContinuityLost, Message, ORIGIN, Serial, check_resume};
use tether_store::{Direction, HistoryQuery, StoreError};

use super::{Engine, store_error};
use crate::fanout::{EphemeralMessage, FanoutItem, FanoutReceiver, LiveEvent, Missed};
use crate::presence::{Member, PresenceEvent};

/// Members per `presence-sync` page.
const PRESENCE_PAGE: usize = 100;

/// Log entries read per catch-up step: large enough to be efficient, small
/// enough that a huge backlog does not sit in memory at once.
const CATCH_UP_CHUNK: usize = 512;

/// Where a subscription starts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Start {
    /// Resume after this position; `None` for a fresh attach.
    pub from: Option<Serial>,
    /// On a fresh attach (or when `from` cannot be served), first send the
    /// current version of the last `rewind` messages.
    pub rewind: usize,
    /// Also deliver presence: a sync of the current members, then changes.
    pub presence: bool,
}

/// How the start position was honoured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Continuity {
    /// No position was given.
    New,
    /// Everything after the position follows, exactly.
    Resumed,
    /// The position could not be served; current state follows. The client
    /// must drop what it holds for the channel.
    Lost,
}

impl Continuity {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Continuity::New => "new",
            Continuity::Resumed => "resumed",
            Continuity::Lost => "lost",
        }
    }
}

/// An event as delivered: shared with other subscribers when live, or read
/// from the store for this subscriber alone.
#[derive(Debug, Clone)]
pub enum EventRef {
    /// Straight from the fan-out; its encodings are cached and shared.
    Live(Arc<LiveEvent>),
    /// From the log or a snapshot.
    Stored(Arc<Message>),
}

impl EventRef {
    /// The event.
    pub fn message(&self) -> &Message {
        match self {
            EventRef::Live(live) => &live.committed.event,
            EventRef::Stored(message) => message,
        }
    }
}

/// What a subscription produces, in order.
#[derive(Debug, Clone)]
pub enum Delivery {
    /// First delivery of an attach, and again if continuity is lost later.
    Attached {
        /// How the position was honoured.
        continuity: Continuity,
        /// Why continuity was lost.
        error: Option<EngineError>,
    },
    /// One event.
    Event {
        /// The event.
        event: EventRef,
        /// Set when the client can resume exactly from here.
        position: Option<Serial>,
    },
    /// The catch-up is done; from here on events are live.
    Synced {
        /// Set when the client can resume exactly from here.
        position: Option<Serial>,
    },
    /// A live-only message (never stored or replayed).
    Ephemeral(Arc<EphemeralMessage>),
    /// A page of the current presence members; the client replaces its set
    /// with the pages up to the one marked `complete`.
    PresenceSync {
        /// Members on this page.
        members: Vec<Member>,
        /// Whether this is the last page.
        complete: bool,
    },
    /// A presence change after the sync.
    Presence(Arc<PresenceEvent>),
}

/// A subscription to one channel. Pull deliveries with [`Subscription::next`].
pub struct Subscription {
    engine: Engine,
    channel: ChannelName,
    live: Option<FanoutReceiver>,
    start: Option<Start>,
    /// Last log position processed (delivered or knowingly skipped).
    position: Serial,
    /// Messages sent as snapshots, with the version each snapshot holds.
    ahead: HashMap<Serial, Serial>,
    /// The highest version any snapshot in `ahead` holds.
    max_ahead: Option<Serial>,
    queue: VecDeque<Delivery>,
    catching_up: bool,
    synced: bool,
    /// Whether presence is delivered.
    presence: bool,
    /// The presence version the client holds; changes at or below it are
    /// already in its set.
    presence_version: u64,
}

impl Subscription {
    pub(super) fn new(engine: Engine, channel: ChannelName, start: Start) -> Subscription {
        let live = engine.fanout().subscribe(&channel);
        Subscription {
            engine,
            channel,
            live: Some(live),
            start: Some(start),
            position: ORIGIN,
            ahead: HashMap::new(),
            max_ahead: None,
            queue: VecDeque::new(),
            catching_up: false,
            synced: false,
            presence: start.presence,
            presence_version: 0,
        }
    }

    /// The channel subscribed to.
    pub fn channel(&self) -> &ChannelName {
        &self.channel
    }

    /// The next delivery. Errors end the subscription: the store failed, or
    /// the server is shutting down.
    ///
    /// Not cancel-safe: run it to completion (a task per subscription) rather
    /// than racing it against timers.
    pub async fn next(&mut self) -> Result<Delivery, EngineError> {
        loop {
            if let Some(delivery) = self.queue.pop_front() {
                return Ok(delivery);
            }
            if let Some(start) = self.start.take() {
                self.begin(start).await?;
            } else if self.catching_up {
                self.catch_up_step().await?;
            } else {
                self.live_step().await?;
            }
        }
    }

    /// Queues the presence members as sync pages, remembering the version.
    fn sync_presence(&mut self) {
        let (members, version) = self.engine.presence().snapshot(&self.channel);
        self.presence_version = version;
        let mut pages: Vec<Vec<Member>> = members
            .chunks(PRESENCE_PAGE)
            .map(<[Member]>::to_vec)
            .collect();
        if pages.is_empty() {
            pages.push(Vec::new());
        }
        let last = pages.len() - 1;
        for (i, members) in pages.into_iter().enumerate() {
            self.queue.push_back(Delivery::PresenceSync {
                members,
                complete: i == last,
            });
        }
    }

    async fn begin(&mut self, start: Start) -> Result<(), EngineError> {
        self.begin_messages(start).await?;
        if self.presence {
            self.sync_presence();
        }
        Ok(())
    }

    async fn begin_messages(&mut self, start: Start) -> Result<(), EngineError> {
        let Some(from) = start.from else {
            self.queue.push_back(Delivery::Attached {
                continuity: Continuity::New,
                error: None,
            });
            return self.rewind(start.rewind).await;
        };
        let bounds = self.engine.bounds(&self.channel).await?;
        match check_resume(from, bounds.as_ref()) {
            Ok(()) => {
                self.queue.push_back(Delivery::Attached {
                    continuity: Continuity::Resumed,
                    error: None,
                });
                self.position = from;
                self.catching_up = true;
                Ok(())
            }
            Err(lost) => self.lose(lost, start.rewind).await,
        }
    }

    /// Tells the client its position is gone and sends current state.
    async fn lose(&mut self, lost: ContinuityLost, rewind: usize) -> Result<(), EngineError> {
        metrics::counter!("tether_continuity_lost_total").increment(1);
        self.queue.push_back(Delivery::Attached {
            continuity: Continuity::Lost,
            error: Some(EngineError::ContinuityLost(lost)),
        });
        let rewind = if rewind == 0 {
            self.engine.rewind_on_lost()
        } else {
            rewind
        };
        self.rewind(rewind).await
    }

    /// Sends the current version of the last `count` messages, then catches
    /// up from the head as it was *before* those were read (so nothing
    /// committed meanwhile is missed; the snapshots' versions skip what they
    /// already hold).
    async fn rewind(&mut self, count: usize) -> Result<(), EngineError> {
        let head = self
            .engine
            .bounds(&self.channel)
            .await?
            .map_or(ORIGIN, |b| b.head());
        self.position = head;
        self.ahead.clear();
        self.max_ahead = None;
        if count > 0 {
            let page = self
                .engine
                .history(
                    &self.channel,
                    HistoryQuery {
                        direction: Direction::Backwards,
                        limit: count,
                        ..HistoryQuery::default()
                    },
                )
                .await?;
            for message in page.messages.into_iter().rev() {
                self.note_ahead(message.serial, message.version.serial);
                self.queue.push_back(Delivery::Event {
                    event: EventRef::Stored(Arc::new(message)),
                    position: None,
                });
            }
        }
        self.catching_up = true;
        Ok(())
    }

    async fn catch_up_step(&mut self) -> Result<(), EngineError> {
        let store = self.engine.store();
        let entries = match store
            .read_log(&self.channel, self.position, CATCH_UP_CHUNK)
            .await
        {
            Ok(entries) => entries,
            Err(StoreError::ContinuityLost(lost)) => return self.lose(lost, 0).await,
            Err(err) => return Err(store_error(err)),
        };
        let done = entries.len() < CATCH_UP_CHUNK;
        for entry in entries {
            self.process(EventRef::Stored(Arc::new(entry)), true)
                .await?;
        }
        if done {
            self.catching_up = false;
            if !self.synced {
                self.synced = true;
                let position = self.exact_position();
                self.queue.push_back(Delivery::Synced { position });
            }
        }
        Ok(())
    }

    async fn live_step(&mut self) -> Result<(), EngineError> {
        let Some(live) = self.live.as_mut() else {
            return Err(shutting_down());
        };
        match live.recv().await {
            Ok(FanoutItem::Ephemeral(message)) => {
                self.queue.push_back(Delivery::Ephemeral(message));
                Ok(())
            }
            Ok(FanoutItem::Presence(event)) => {
                if self.presence && event.version > self.presence_version {
                    self.presence_version = event.version;
                    self.queue.push_back(Delivery::Presence(event));
                }
                Ok(())
            }
            Ok(FanoutItem::Committed(event)) => {
                let p = event.position();
                if p.epoch() == self.position.epoch() && p.seq() <= self.position.seq() {
                    return Ok(()); // already processed during catch-up
                }
                if follows(self.position, p) {
                    self.process(EventRef::Live(event), false).await
                } else {
                    self.catching_up = true;
                    Ok(())
                }
            }
            Err(Missed::Lagged(_)) => {
                metrics::counter!("tether_subscriber_lagged_total").increment(1);
                self.catching_up = true;
                // Presence changes were lost with the lag: send the set again.
                if self.presence {
                    self.sync_presence();
                }
                Ok(())
            }
            Err(Missed::Closed) => Err(shutting_down()),
        }
    }

    /// Handles one log entry in order: skip it if a snapshot holds it, send
    /// a snapshot instead if it starts a message during catch-up, otherwise
    /// pass it through.
    async fn process(&mut self, event: EventRef, catching_up: bool) -> Result<(), EngineError> {
        let message = event.message();
        let p = message.version.serial;
        let serial = message.serial;
        if self.ahead.get(&serial).is_some_and(|&v| p <= v) {
            self.position = p;
            return Ok(());
        }
        if catching_up && message.action == Action::Create {
            let state = self
                .engine
                .store()
                .message(&self.channel, serial)
                .await
                .map_err(store_error)?;
            // Only now, after the last await, does the position move: a step
            // cancelled half-way leaves the subscription where it was.
            self.position = p;
            match state {
                // Dropped by retention since: nothing to send.
                None => return Ok(()),
                Some(state) if state.version.serial > p => {
                    self.note_ahead(serial, state.version.serial);
                    self.queue.push_back(Delivery::Event {
                        event: EventRef::Stored(Arc::new(state)),
                        position: None,
                    });
                    return Ok(());
                }
                Some(_) => {}
            }
        }
        self.position = p;
        let position = self.exact_position();
        self.queue.push_back(Delivery::Event { event, position });
        Ok(())
    }

    fn note_ahead(&mut self, serial: Serial, version: Serial) {
        self.ahead.insert(serial, version);
        self.max_ahead = self.max_ahead.max(Some(version));
    }

    /// The current position if no snapshot runs ahead of it.
    fn exact_position(&mut self) -> Option<Serial> {
        if self.max_ahead.is_some_and(|a| a > self.position) {
            return None;
        }
        self.ahead.clear();
        self.max_ahead = None;
        Some(self.position)
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        // Drop the receiver first so the fan-out sees the channel unused.
        drop(self.live.take());
        self.engine.fanout().release(&self.channel);
    }
}

/// Whether `next` is the entry right after `position` in the same log (or
/// the first entry of a log the client saw empty).
fn follows(position: Serial, next: Serial) -> bool {
    if position.seq() == 0 {
        return next.seq() == 1 && (position.epoch() == 0 || position.epoch() == next.epoch());
    }
    next.epoch() == position.epoch() && next.seq() == position.seq() + 1
}

fn shutting_down() -> EngineError {
    EngineError::ShuttingDown("the server is shutting down")
}

#[cfg(test)]
mod tests {
    use super::follows;
    use tether_core::Serial;

    fn s(e: u64, q: u64) -> Serial {
        Serial::new(e, q).unwrap()
    }

    #[test]
    fn follows_rules() {
        assert!(follows(s(5, 3), s(5, 4)));
        assert!(!follows(s(5, 3), s(5, 5)));
        assert!(!follows(s(5, 3), s(6, 4)));
        assert!(follows(s(0, 0), s(9, 1)));
        assert!(follows(s(9, 0), s(9, 1)));
        assert!(!follows(s(8, 0), s(9, 1)));
        assert!(!follows(s(0, 0), s(9, 2)));
    }
}
