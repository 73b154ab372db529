//! The in-process fan-out: one node, no network. Committed batches from the
//! store's writer and the engine's ephemeral and presence items go straight
//! to the [`Hub`].

use std::sync::Arc;

use tether_core::ChannelName;
use tether_store::{CommitSink, Committed};

use super::{Fanout, FanoutItem, FanoutReceiver, Hub};

/// Fan-out within this process.
pub struct LocalFanout {
    hub: Hub,
}

impl LocalFanout {
    /// A fan-out whose per-channel buffers hold `capacity` items.
    pub fn new(capacity: usize) -> LocalFanout {
        LocalFanout {
            hub: Hub::new(capacity),
        }
    }
}

impl Fanout for LocalFanout {
    fn subscribe(&self, channel: &ChannelName) -> FanoutReceiver {
        self.hub.subscribe(channel).0
    }

    fn release(&self, channel: &ChannelName) {
        self.hub.release(channel);
    }

    fn publish(&self, channel: &ChannelName, item: FanoutItem) {
        self.hub.send(channel, item);
    }

    fn active_channels(&self) -> usize {
        self.hub.active_channels()
    }
}

impl CommitSink for LocalFanout {
    fn deliver(&self, batch: Vec<Arc<Committed>>) {
        metrics::counter!("tether_messages_committed_total").increment(batch.len() as u64);
        self.hub.send_committed(batch);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::fanout::{EphemeralMessage, Missed};

    fn item(id: &str) -> FanoutItem {
        FanoutItem::Ephemeral(Arc::new(EphemeralMessage {
            id: id.into(),
            name: None,
            data: serde_json::Value::Null,
            extras: None,
            client_id: None,
            connection_id: None,
            timestamp: 0,
        }))
    }

    fn id(item: FanoutItem) -> String {
        match item {
            FanoutItem::Ephemeral(m) => m.id.clone(),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[tokio::test]
    async fn delivers_in_order_and_forgets_idle_channels() {
        let fanout = LocalFanout::new(16);
        let channel = ChannelName::new("room:a").unwrap();
        let other = ChannelName::new("room:b").unwrap();
        fanout.publish(&channel, item("before"));
        let mut rx = fanout.subscribe(&channel);
        assert_eq!(fanout.active_channels(), 1);
        fanout.publish(&other, item("elsewhere"));
        fanout.publish(&channel, item("1"));
        fanout.publish(&channel, item("2"));
        assert_eq!(id(rx.recv().await.unwrap()), "1", "nothing from before");
        assert_eq!(id(rx.recv().await.unwrap()), "2");
        fanout.release(&channel);
        assert_eq!(fanout.active_channels(), 1, "kept while a receiver lives");
        drop(rx);
        fanout.release(&channel);
        assert_eq!(fanout.active_channels(), 0);
    }

    #[tokio::test]
    async fn a_slow_receiver_lags_instead_of_blocking() {
        let fanout = LocalFanout::new(16);
        let channel = ChannelName::new("room:a").unwrap();
        let mut rx = fanout.subscribe(&channel);
        for i in 0..40 {
            fanout.publish(&channel, item(&i.to_string()));
        }
        assert_eq!(rx.recv().await.unwrap_err(), Missed::Lagged(24));
        assert_eq!(id(rx.recv().await.unwrap()), "24");
    }
}
