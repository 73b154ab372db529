//! A subscription as a transport consumes it: deliveries rolled up per the
//! subscriber's window, with a cancel-safe `next` that can be raced against
//! timers (keep-alives, shutdown).
//!
//! The subscription runs in its own small task feeding a bounded channel;
//! the transport's task owns the [`Rollup`] and the flush timer.

use std::collections::VecDeque;
use std::time::Duration;

use tether_core::ChannelName;

use crate::error::EngineError;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::rollup::Rollup;
use super::subscription::{Delivery, Subscription};

/// Deliveries buffered between the subscription task and the transport.
/// Small: a slow consumer should make the subscription lag and catch up
/// from the log, not pile up here.
const FEED_BUFFER: usize = 16;

/// A running subscription with roll-up.
pub struct Feed {
    channel: ChannelName,
    rx: mpsc::Receiver<Result<Delivery, EngineError>>,
    rollup: Rollup,
    ready: VecDeque<Delivery>,
    /// The error that ended the subscription, reported after what was
    /// pending.
    failed: Option<EngineError>,
    pump: JoinHandle<()>,
}

impl Feed {
    /// Starts pumping `subscription`, rolling appends up over `window`.
    pub fn new(mut subscription: Subscription, window: Duration) -> Feed {
        let channel = subscription.channel().clone();
        let (tx, rx) = mpsc::channel(FEED_BUFFER);
        let pump = tokio::spawn(async move {
            loop {
                let next = tokio::select! {
                    _ = tx.closed() => return,
                    next = subscription.next() => next,
                };
                let end = next.is_err();
                if tx.send(next).await.is_err() || end {
                    return;
                }
            }
        });
        Feed {
            channel,
            rx,
            rollup: Rollup::new(window),
            ready: VecDeque::new(),
            failed: None,
            pump,
        }
    }

    /// The channel.
    pub fn channel(&self) -> &ChannelName {
        &self.channel
    }

    /// The next delivery. Cancel-safe: nothing is lost if the future is
    /// dropped before it completes.
    pub async fn next(&mut self) -> Result<Delivery, EngineError> {
        loop {
            if let Some(delivery) = self.ready.pop_front() {
                return Ok(delivery);
            }
            if let Some(err) = self.failed.take() {
                return Err(err);
            }
            let deadline = self.rollup.deadline();
            let flush_at = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                received = self.rx.recv() => match received {
                    Some(Ok(delivery)) => {
                        let now = tokio::time::Instant::now();
                        self.ready.extend(self.rollup.push(delivery, now));
                    }
                    Some(Err(err)) => {
                        self.ready.extend(self.rollup.flush());
                        self.failed = Some(err);
                    }
                    None => return Err(EngineError::ShuttingDown("the subscription ended")),
                },
                _ = flush_at => self.ready.extend(self.rollup.flush()),
            }
        }
    }
}

impl Drop for Feed {
    fn drop(&mut self) {
        self.pump.abort();
    }
}
