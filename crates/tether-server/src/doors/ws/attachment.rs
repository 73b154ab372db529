//! One attached channel: pulls its [`Subscription`] and forwards each
//! delivery into the connection's outbox, recording the last exact
//! position so a resumed connection knows where each channel stood.
//! Presence is forwarded only while the attachment's `presence` option is
//! on: a renewal that drops `presence-subscribe` turns it off mid-stream.

use super::outbox::Outbox;
use crate::engine::{Delivery, Feed};
use crate::protocol;
use crate::sessions::Attachments;

/// Runs until the subscription ends or the connection closes.
pub(super) async fn run(
    mut subscription: Feed,
    outbox: Outbox,
    mut req: Option<u64>,
    attachments: Attachments,
) {
    metrics::gauge!("tether_attachments").increment(1.0);
    let _guard = GaugeGuard("tether_attachments");
    loop {
        let delivery = match subscription.next().await {
            Ok(delivery) => delivery,
            Err(err) => {
                outbox.send(protocol::error_frame(
                    req,
                    Some(subscription.channel().as_str()),
                    &err.into(),
                ));
                return;
            }
        };
        if matches!(
            delivery,
            Delivery::Presence(_) | Delivery::PresenceSync { .. }
        ) && !presence_wanted(&attachments, subscription.channel())
        {
            continue;
        }
        let reply_to = match delivery {
            Delivery::Attached { .. } => req.take(),
            _ => None,
        };
        let position = match &delivery {
            Delivery::Event { position, .. } | Delivery::Synced { position } => *position,
            _ => None,
        };
        if matches!(delivery, Delivery::Event { .. }) {
            metrics::counter!("tether_messages_delivered_total").increment(1);
        }
        let frame = protocol::ws_delivery(subscription.channel(), reply_to, &delivery);
        if !outbox.deliver(frame).await {
            return;
        }
        if position.is_some() {
            let mut attachments = attachments.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(start) = attachments.get_mut(subscription.channel()) {
                start.from = position;
            }
        }
    }
}

/// Whether the connection still wants (and may see) presence on `channel`.
fn presence_wanted(attachments: &Attachments, channel: &tether_core::ChannelName) -> bool {
    let attachments = attachments.lock().unwrap_or_else(|p| p.into_inner());
    attachments.get(channel).is_some_and(|start| start.presence)
}

/// Decrements a gauge when a task ends, however it ends (including abort).
struct GaugeGuard(&'static str);

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        metrics::gauge!(self.0).decrement(1.0);
    }
}
