//! `fixed`: an exact amount of work, for instruction counts. `streams`
//! channels, each with one subscriber, get one message and `appends`
//! appends (32 bytes, a window of unacknowledged appends per publisher);
//! it ends when every subscriber has received every fragment.
//!
//! No clock decides how much work is done, so the server's instruction
//! count under `valgrind --tool=callgrind` (`bench/instructions.sh`) is the
//! same from run to run whatever else the machine is doing.

use futures::SinkExt;
use serde::Serialize;
use tokio::time::Duration;
use tokio_tungstenite::tungstenite::Message;

use super::{concurrently, run_id};
use crate::stats::Metrics;
use crate::target::Server;
use crate::ws::{self, Ws};
use crate::{Result, err, wire};

/// What to run.
#[derive(Debug, Clone, Serialize)]
pub struct FixedSpec {
    /// Channels, each with a publisher and a subscriber.
    pub streams: usize,
    /// Appends per channel (one message).
    pub appends: usize,
    /// Unacknowledged appends per publisher.
    pub window: usize,
}

impl Default for FixedSpec {
    fn default() -> FixedSpec {
        FixedSpec {
            streams: 100,
            appends: 100,
            window: 16,
        }
    }
}

/// How long a stream may go without progress before the run fails.
const STALL: Duration = Duration::from_secs(120);

/// Reads until `count` frames of type `kind` arrived.
async fn count_frames(ws: &mut Ws, kind: &str, count: usize) -> Result<()> {
    let mut seen = 0;
    while seen < count {
        let text = tokio::time::timeout(STALL, ws::next_text(ws))
            .await
            .map_err(|_| err(format!("no {kind} for {STALL:?}")))??
            .ok_or_else(|| err("server closed during the fixed workload"))?;
        match wire::frame_type(&text) {
            Some(t) if t == kind => seen += 1,
            Some("error") => return Err(err(format!("server error: {text}"))),
            _ => {}
        }
    }
    Ok(())
}

/// One stream: subscriber attached, then the publisher's message and
/// appends; returns when the subscriber has them all.
async fn one(server: &Server, id: &str, i: usize, spec: &FixedSpec) -> Result<()> {
    let channel = format!("fixed-{id}-{i}");
    let mut sub = ws::connect_tether(&server.ws_url("rollup_ms=0")).await?;
    ws::attach(&mut sub, 1, &channel, None).await?;
    let mut publisher = ws::connect_tether(&server.ws_url("")).await?;
    // The create, then every fragment, each its own frame (no roll-up).
    let expected = 1 + spec.appends;
    let subscriber = tokio::spawn(async move { count_frames(&mut sub, "message", expected).await });
    let serial = ws::publish(&mut publisher, 1, &channel, "").await?;
    let fragment = "0123456789abcdef0123456789abcde.";
    let mut req = 1u64;
    let mut sent = 0;
    let mut acked = 0;
    while acked < spec.appends {
        while sent < spec.appends && sent - acked < spec.window.max(1) {
            req += 1;
            publisher
                .feed(Message::text(wire::append(
                    req, &channel, &serial, fragment,
                )))
                .await?;
            sent += 1;
        }
        publisher.flush().await?;
        count_frames(&mut publisher, "ack", 1).await?;
        acked += 1;
    }
    subscriber
        .await
        .map_err(|e| err(format!("subscriber task: {e}")))?
}

/// Runs `spec` against `server`.
pub async fn run(server: &Server, spec: &FixedSpec) -> Result<Metrics> {
    let id = run_id();
    concurrently(spec.streams, spec.streams, |i| one(server, &id, i, spec)).await?;
    let mut m = Metrics::new();
    m.insert("appends".into(), (spec.streams * spec.appends) as f64);
    Ok(m)
}
