//! Fan-out: hands committed events to every local subscriber of a channel.
//!
//! The store's writer calls [`Broker::deliver`] (as its
//! [`CommitSink`]) with each durable batch in serial order; each subscriber
//! holds a bounded `broadcast` receiver per channel. Nothing here waits for
//! a subscriber: one that falls behind sees `Lagged` and catches up from the
//! log (see `engine::subscription`), which is the same path as a reconnect.
//!
//! A multi-node broker (Redis) will sit behind the same two calls.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use tether_core::{ChannelName, Serial};

use crate::presence::PresenceEvent;
use tether_store::{CommitSink, Committed};
use tokio::sync::broadcast;

/// A committed event on its way to subscribers, with its encodings cached so
/// that each transport encodes it once however many subscribers it has.
#[derive(Debug)]
pub struct LiveEvent {
    /// The event and its channel.
    pub committed: Arc<Committed>,
    /// The WebSocket `message` frame carrying it with its position.
    pub ws_frame: OnceLock<Bytes>,
    /// The SSE event carrying it with its position as `id:`.
    pub sse_frame: OnceLock<Bytes>,
}

impl LiveEvent {
    /// Wraps a committed event.
    pub fn new(committed: Arc<Committed>) -> LiveEvent {
        LiveEvent {
            committed,
            ws_frame: OnceLock::new(),
            sse_frame: OnceLock::new(),
        }
    }

    /// The event's position in its channel log.
    pub fn position(&self) -> Serial {
        self.committed.event.version.serial
    }
}

/// A message delivered live only: never stored, never replayed (typing
/// indicators, "calling a tool" ticks).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct EphemeralMessage {
    /// Client-chosen or generated id.
    pub id: String,
    /// Event type.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Payload.
    pub data: serde_json::Value,
    /// Free-form object.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub extras: Option<serde_json::Map<String, serde_json::Value>>,
    /// The sender's identity, set by the server.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// The sender's connection.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connection_id: Option<String>,
    /// Server time, ms since the Unix epoch.
    pub timestamp: u64,
}

/// Everything that travels live on a channel, in one order.
#[derive(Debug, Clone)]
pub enum LiveItem {
    /// A committed log entry.
    Committed(Arc<LiveEvent>),
    /// An ephemeral message.
    Ephemeral(Arc<EphemeralMessage>),
    /// A presence change.
    Presence(Arc<PresenceEvent>),
}

/// In-process fan-out, one broadcast channel per channel with subscribers.
pub struct Broker {
    /// A std mutex: held only to look up or insert a sender, never across an
    /// await.
    channels: Mutex<HashMap<ChannelName, broadcast::Sender<LiveItem>>>,
    /// Events buffered per channel for the slowest subscriber before it lags.
    capacity: usize,
}

impl Broker {
    /// A broker whose per-channel buffers hold `capacity` events.
    pub fn new(capacity: usize) -> Broker {
        Broker {
            channels: Mutex::new(HashMap::new()),
            capacity: capacity.max(16),
        }
    }

    /// Starts receiving live events of `channel`. Subscribe *before* reading
    /// the log so nothing committed in between is missed.
    pub fn subscribe(&self, channel: &ChannelName) -> broadcast::Receiver<LiveItem> {
        let mut channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        channels
            .entry(channel.clone())
            .or_insert_with(|| broadcast::channel(self.capacity).0)
            .subscribe()
    }

    /// Forgets a channel once its last subscriber is gone, so idle channels
    /// cost nothing.
    pub fn release(&self, channel: &ChannelName) {
        let mut channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        if channels
            .get(channel)
            .is_some_and(|tx| tx.receiver_count() == 0)
        {
            channels.remove(channel);
        }
    }

    /// Sends an item that is not a log entry (ephemeral, presence) to the
    /// channel's current subscribers.
    pub fn send(&self, channel: &ChannelName, item: LiveItem) {
        let channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(tx) = channels.get(channel) {
            let _ = tx.send(item);
        }
    }

    /// Channels with at least one local subscriber.
    pub fn active_channels(&self) -> usize {
        self.channels
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }
}

impl CommitSink for Broker {
    fn deliver(&self, batch: Vec<Arc<Committed>>) {
        metrics::counter!("tether_messages_committed_total").increment(batch.len() as u64);
        let channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        for committed in batch {
            if let Some(tx) = channels.get(&committed.channel) {
                // An error only means nobody listens right now.
                let _ = tx.send(LiveItem::Committed(Arc::new(LiveEvent::new(committed))));
            }
        }
    }
}
