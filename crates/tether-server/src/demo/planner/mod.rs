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
//! Every agent is an ordinary WebSocket client ([`Link`]); a refreshed page
//! loses nothing because everything but the progress bars is in the log.
//!
//! Files: `trip.rs` (the trip request and the fake findings, pure),
//! `coordinator.rs`, `specialist.rs` (the agents); the streaming helpers
//! both use are here.

use std::time::Duration;

use tether_core::Message;

use super::link::Link;
use tether_fake_llm::tokenize;

mod coordinator;
mod specialist;
mod trip;

pub use coordinator::coordinator;
pub use specialist::specialist;
pub use trip::{Part, Specialist, Trip, findings, plan_text};

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
pub(super) async fn stream_text(
    link: &Link,
    channel: &str,
    serial: &str,
    text: &str,
    interval: Duration,
) {
    stream_with_progress(link, channel, serial, text, interval, |_| {}).await;
}

pub(super) async fn stream_with_progress(
    link: &Link,
    channel: &str,
    serial: &str,
    text: &str,
    interval: Duration,
    mut progress: impl FnMut(f64),
) -> bool {
    let tokens = tokenize(text);
    let start = tokio::time::Instant::now();
    let mut last = None;
    for (i, token) in tokens.iter().enumerate() {
        tokio::time::sleep_until(start + interval * i as u32).await;
        let reply = link.append(channel, serial, token);
        if i % 8 == 7 {
            // Check the previous batch: a refused append means the message
            // was cancelled or deleted.
            if let Some(previous) = last.take() {
                let previous: super::link::Reply = previous;
                if previous.wait().await.is_err() {
                    return false;
                }
            }
            last = Some(reply);
            progress(i as f64 / tokens.len() as f64);
        }
    }
    match last {
        Some(reply) => reply.wait().await.is_ok(),
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
