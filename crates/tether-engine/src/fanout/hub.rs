//! The per-channel broadcast that hands live items to this node's
//! subscribers, shared by every [`super::Fanout`] implementation: the local
//! one feeds it committed batches, a multi-node one what other nodes send.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tether_core::ChannelName;
use tether_store::Committed;
use tokio::sync::broadcast;

use super::{FanoutItem, LiveEvent};

/// One bounded broadcast per channel with subscribers.
pub struct Hub {
    /// A std mutex: held only to look up, insert or remove a sender, never
    /// across an await.
    channels: Mutex<HashMap<ChannelName, broadcast::Sender<FanoutItem>>>,
    /// Items buffered per channel for the slowest subscriber before it lags.
    capacity: usize,
}

/// Why a receiver got no item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Missed {
    /// It fell behind and this many items were dropped for it: read the
    /// log to catch up.
    Lagged(u64),
    /// The fan-out is gone (the server is shutting down).
    Closed,
}

/// One subscriber's stream of a channel's live items.
pub struct FanoutReceiver {
    rx: broadcast::Receiver<FanoutItem>,
}

impl FanoutReceiver {
    /// The next item, or why there is none.
    pub async fn recv(&mut self) -> Result<FanoutItem, Missed> {
        self.rx.recv().await.map_err(|err| match err {
            broadcast::error::RecvError::Lagged(n) => Missed::Lagged(n),
            broadcast::error::RecvError::Closed => Missed::Closed,
        })
    }
}

impl Hub {
    /// A hub whose per-channel buffers hold `capacity` items (at least 16).
    pub fn new(capacity: usize) -> Hub {
        Hub {
            channels: Mutex::new(HashMap::new()),
            capacity: capacity.max(16),
        }
    }

    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<ChannelName, broadcast::Sender<FanoutItem>>> {
        self.channels.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A receiver for `channel`, and whether it is the channel's first on
    /// this node.
    pub fn subscribe(&self, channel: &ChannelName) -> (FanoutReceiver, bool) {
        let mut channels = self.lock();
        let first = !channels.contains_key(channel);
        let rx = channels
            .entry(channel.clone())
            .or_insert_with(|| broadcast::channel(self.capacity).0)
            .subscribe();
        (FanoutReceiver { rx }, first)
    }

    /// Forgets `channel` if no receiver is left; returns whether it did.
    pub fn release(&self, channel: &ChannelName) -> bool {
        let mut channels = self.lock();
        let unused = channels
            .get(channel)
            .is_some_and(|tx| tx.receiver_count() == 0);
        if unused {
            channels.remove(channel);
        }
        unused
    }

    /// Sends `item` to the current receivers of `channel` (none: dropped).
    pub fn send(&self, channel: &ChannelName, item: FanoutItem) {
        if let Some(tx) = self.lock().get(channel) {
            // An error only means nobody listens right now.
            let _ = tx.send(item);
        }
    }

    /// Sends a committed batch, in order, under one lock; an event is
    /// wrapped (and gets its encodings cache) only if its channel has
    /// receivers here.
    pub fn send_committed(&self, batch: Vec<Arc<Committed>>) {
        let channels = self.lock();
        for committed in batch {
            if let Some(tx) = channels.get(&committed.channel) {
                let _ = tx.send(FanoutItem::Committed(Arc::new(LiveEvent::new(committed))));
            }
        }
    }

    /// Channels with at least one receiver.
    pub fn active_channels(&self) -> usize {
        self.lock().len()
    }
}
