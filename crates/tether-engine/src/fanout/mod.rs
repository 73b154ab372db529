//! The fan-out seam: everything that travels live on a channel (committed
//! events, ephemeral messages, presence changes) to every subscriber of the
//! channel on this node, in one order.
//!
//! The engine only sees [`Fanout`]; [`LocalFanout`] is the in-process
//! implementation. A multi-node fan-out (Redis) implements the same trait:
//! it learns which channels this node needs from [`Fanout::subscribe`] and
//! [`Fanout::release`], publishes to the other nodes, and hands what they
//! publish to the same per-channel [`Hub`] the local one uses.
//!
//! Nothing here waits for a subscriber: a [`FanoutReceiver`] that falls
//! behind sees [`Missed::Lagged`] and the subscription catches up from the
//! log, which is the same path as a reconnect.

use std::sync::Arc;

use tether_core::{ChannelName, Serial};
use tether_store::{CommitSink, Committed};

use crate::presence::PresenceEvent;

mod encoded;
mod hub;
mod local;

pub use encoded::{CodecId, Encodings};
pub use hub::{FanoutReceiver, Hub, Missed};
pub use local::LocalFanout;

/// Fan-out of live items to this node's subscribers. Also the store's
/// commit sink (through the engine's wiring), so committed batches arrive
/// in serial order, only once durable.
pub trait Fanout: CommitSink + Send + Sync {
    /// Starts receiving the live items of `channel`. Called *before* the
    /// log is read, so nothing committed in between is missed; the first
    /// call for a channel is where a multi-node fan-out starts listening
    /// for it.
    fn subscribe(&self, channel: &ChannelName) -> FanoutReceiver;

    /// Called after a receiver of `channel` was dropped: once the last one
    /// is gone the channel is forgotten (and a multi-node fan-out stops
    /// listening), so idle channels cost nothing.
    fn release(&self, channel: &ChannelName);

    /// Sends an item that is not a log entry (ephemeral, presence) to the
    /// channel's subscribers.
    fn publish(&self, channel: &ChannelName, item: FanoutItem);

    /// Channels with at least one subscriber on this node (for metrics).
    fn active_channels(&self) -> usize;
}

/// Everything that travels live on a channel, in one order. Transport
/// neutral: how a door encodes it is the door's business (and its
/// [`Encodings`] cache).
#[derive(Debug, Clone)]
pub enum FanoutItem {
    /// A committed log entry.
    Committed(Arc<LiveEvent>),
    /// An ephemeral message.
    Ephemeral(Arc<EphemeralMessage>),
    /// A presence change.
    Presence(Arc<PresenceEvent>),
}

/// A committed event on its way to subscribers, with a cache of its
/// encodings, so each front door encodes it once however many subscribers
/// it has.
#[derive(Debug)]
pub struct LiveEvent {
    /// The event and its channel.
    pub committed: Arc<Committed>,
    /// Encoded forms, keyed by the codec (door) that built them.
    pub encodings: Encodings,
}

impl LiveEvent {
    /// Wraps a committed event.
    pub fn new(committed: Arc<Committed>) -> LiveEvent {
        LiveEvent {
            committed,
            encodings: Encodings::default(),
        }
    }

    /// The event's position in its channel log.
    pub fn position(&self) -> Serial {
        self.committed.event.version.serial
    }
}

/// A message delivered live only: never stored, never replayed (typing
/// indicators, "calling a tool" ticks).
#[derive(Debug, Clone, PartialEq)]
pub struct EphemeralMessage {
    /// Client-chosen or generated id.
    pub id: String,
    /// Event type.
    pub name: Option<String>,
    /// Payload.
    pub data: serde_json::Value,
    /// Free-form object.
    pub extras: Option<serde_json::Map<String, serde_json::Value>>,
    /// The sender's identity, set by the server.
    pub client_id: Option<String>,
    /// The sender's connection.
    pub connection_id: Option<String>,
    /// Server time, ms since the Unix epoch.
    pub timestamp: u64,
}
