//! The ack loop: replies to operations in the order they were submitted,
//! while many are in flight, and records outcomes for exactly-once re-sends.

use bytes::Bytes;
use tether_core::ErrorInfo;
use tether_store::Receipt;
use tokio::sync::{mpsc, watch};

use super::outbox::Outbox;
use crate::engine::store_error;
use crate::protocol;
use crate::sessions::Outcome;

/// What the ack loop awaits, in submission order.
pub(super) enum Pending {
    /// An operation in the store's queue; `outcome` records the result for
    /// re-sends of the same sequence number.
    Receipt {
        req: Option<u64>,
        receipt: Receipt,
        outcome: Option<watch::Sender<Outcome>>,
    },
    /// A re-sent operation: answer with the original's outcome.
    Repeat {
        req: Option<u64>,
        outcome: watch::Receiver<Outcome>,
    },
    /// A reply that is already known.
    Ready(Bytes),
}

/// Runs until the connection's reader drops its sender.
pub(super) async fn run(mut pending: mpsc::Receiver<Pending>, outbox: Outbox) {
    let mut open = true;
    while let Some(item) = pending.recv().await {
        let frame = match item {
            Pending::Ready(frame) => frame,
            Pending::Receipt {
                req,
                receipt,
                outcome,
            } => {
                let result = receipt.await.map_err(|e| ErrorInfo::from(store_error(e)));
                if let Some(outcome) = outcome {
                    outcome.send_replace(Some(result.clone()));
                }
                reply(req, &result)
            }
            Pending::Repeat { req, mut outcome } => {
                let result = match outcome.wait_for(Option::is_some).await {
                    Ok(done) => done.clone().unwrap_or_else(|| Err(lost())),
                    Err(_) => Err(lost()),
                };
                reply(req, &result)
            }
        };
        // Once the socket is gone, keep draining: outcomes must still be
        // recorded for a resumed connection's re-sends.
        if open && !outbox.deliver(frame).await {
            open = false;
        }
    }
}

fn reply(req: Option<u64>, result: &Result<tether_store::Ack, ErrorInfo>) -> Bytes {
    match result {
        Ok(ack) => protocol::ack_frame(req, ack),
        Err(err) => protocol::error_frame(req, None, err),
    }
}

/// The original of a re-sent operation vanished without an outcome (its
/// connection ended before the store answered, which only happens when the
/// store is shutting down).
fn lost() -> ErrorInfo {
    ErrorInfo::new(
        tether_core::ErrorCode::ShuttingDown,
        "the original operation's outcome is unknown",
    )
}
