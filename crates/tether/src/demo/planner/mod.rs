//! The multi-agent trip planner.
//!
//! - The **coordinator** watches one trip channel (`trip:...`). On a
//!   `trip-request` it posts a visible `dispatch` note, then one `task`
//!   message on each specialist's task channel (`tasks:flights`,
//!   `tasks:hotels`, `tasks:weather`). It never relays the specialists'
//!   tokens: it watches the trip channel until every `part` for the request
//!   has ended, then streams the combined `plan`.
//! - Each **specialist** watches its task channel. For a task it enters
//!   presence on the trip channel with its progress (`{status: "working",
//!   progress, step}`), streams its `part` (fake data) straight into the trip
//!   channel, ends it `complete` with a `summary` and `facts` for the
//!   coordinator, reports `done` and leaves.
//!
//! Every agent is an ordinary client on the Rust SDK (`tether_client`),
//! which reconnects and resumes by itself; a refreshed page loses nothing
//! because everything but the progress bars is in the log.
//!
//! Files: `trip.rs` (the trip request and the fake findings, pure),
//! `coordinator.rs`, `specialist.rs` (the agents); the streaming helpers
//! both use are here.

use std::time::Duration;

use tether_client::{AckFuture, Channel, Serial};
use tether_core::Message;
use tether_fake_llm::tokenize;

mod coordinator;
mod specialist;
mod trip;

pub use coordinator::coordinator;
pub use specialist::specialist;
pub use trip::{Specialist, Trip, findings, plan_text};

/// The coordinator's identity on the wire.
pub const COORDINATOR_ID: &str = "planner";
/// The specialists, in the order their parts are shown.
pub const SPECIALISTS: [Specialist; 3] =
    [Specialist::Flights, Specialist::Hotels, Specialist::Weather];
/// A plan is written with whatever parts arrived after this long.
const PARTS_TIMEOUT: Duration = Duration::from_secs(90);
const ANSWER_WITHIN_MS: u64 = 120_000;

/// Appends `text` to `serial` token by token at `interval`. Stops early if
/// the message was ended by someone else (an append is refused).
pub(super) async fn stream_text(channel: &Channel, serial: Serial, text: &str, interval: Duration) {
    stream_with_progress(channel, serial, text, interval, |_| {}).await;
}

/// [`stream_text`], calling `progress` with the fraction streamed every
/// few tokens; `false` when an append was refused (the message was
/// cancelled or deleted).
pub(super) async fn stream_with_progress(
    channel: &Channel,
    serial: Serial,
    text: &str,
    interval: Duration,
    mut progress: impl FnMut(f64),
) -> bool {
    let tokens = tokenize(text);
    let start = tokio::time::Instant::now();
    let mut last: Option<AckFuture> = None;
    for (i, token) in tokens.iter().enumerate() {
        tokio::time::sleep_until(start + interval * i as u32).await;
        // Queued now, in order; the acknowledgement is checked a batch
        // later, so appends stay pipelined.
        let ack = channel.append(serial, token.as_str());
        if i % 8 == 7 {
            if let Some(previous) = last.take()
                && previous.await.is_err()
            {
                return false;
            }
            last = Some(ack);
            progress(i as f64 / tokens.len() as f64);
        }
    }
    match last {
        Some(ack) => ack.await.is_ok(),
        None => true,
    }
}

pub(super) fn interval(tokens_per_second: f64) -> Duration {
    if tokens_per_second > 0.0 {
        Duration::from_secs_f64(1.0 / tokens_per_second)
    } else {
        Duration::ZERO
    }
}

pub(super) fn request_of(message: &Message) -> Option<&str> {
    message.extras.as_ref()?.get("request")?.as_str()
}

pub(super) fn agent_of(message: &Message) -> Option<&str> {
    message.extras.as_ref()?.get("agent")?.as_str()
}
