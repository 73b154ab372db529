//! `write-amp`: bytes the server writes to disk per appended byte, from
//! `/proc/PID/io` `write_bytes` (what reaches the block layer: journal,
//! memtable flushes, compactions).
//!
//! - long: one message of `appends` appends of 32 bytes, one in flight at a
//!   time (a slow stream gets one append per group commit, the worst case
//!   for a store that rewrites state per group). The bytes written per
//!   append over a window ending at the 1,000th append and over the last
//!   window tell whether the cost grows with the message.
//! - many: `messages` messages of `appends_each` appends, pipelined per
//!   message; total bytes written per appended byte.

use serde::Serialize;
use tokio::time::{Duration, sleep};

use super::run_id;
use crate::stats::Metrics;
use crate::target::Server;
use crate::ws::{self, Ws};
use crate::{Result, err, wire};

/// What to run.
#[derive(Debug, Clone, Serialize)]
pub struct WriteAmpSpec {
    /// Appends to the one long message.
    pub appends: usize,
    /// Appends per measurement window.
    pub window: usize,
    /// Messages of the many-messages part.
    pub messages: usize,
    /// Appends to each of them.
    pub appends_each: usize,
}

impl Default for WriteAmpSpec {
    fn default() -> WriteAmpSpec {
        WriteAmpSpec {
            appends: 20_000,
            window: 200,
            messages: 1_000,
            appends_each: 200,
        }
    }
}

/// A 32-byte fragment.
fn fragment(i: usize) -> String {
    format!("{i:031}.")
}

/// The server's `write_bytes` once its background flushes settle.
async fn written(server: &Server) -> Result<u64> {
    sleep(Duration::from_millis(300)).await;
    server
        .sample()
        .map(|s| s.write_bytes)
        .ok_or_else(|| err("write-amp needs the server's pid (spawned, or --url with --pid)"))
}

/// Sends one append and waits for its ack.
async fn append_one(ws: &mut Ws, req: u64, channel: &str, serial: &str, data: &str) -> Result<()> {
    ws::send(ws, wire::append(req, channel, serial, data)).await?;
    ws::expect(
        ws,
        |t, ty| ty == "ack" && wire::req(t) == Some(req),
        Duration::from_secs(30),
    )
    .await?;
    Ok(())
}

/// Runs both parts on `server`.
pub async fn run(server: &Server, spec: &WriteAmpSpec) -> Result<Metrics> {
    let mut m = Metrics::new();
    let mut ws = ws::connect_tether(&server.ws_url("")).await?;
    let id = run_id();
    let window = spec.window.clamp(1, spec.appends.max(1));

    // One long message, one append in flight.
    let channel = format!("wa-long-{id}");
    let serial = ws::publish(&mut ws, 1, &channel, "").await?;
    let mut req = 1u64;
    let mut window_start = written(server).await?;
    let start = window_start;
    let mut at_1k = None;
    let mut last = 0.0;
    for i in 0..spec.appends {
        let n = i + 1;
        if n % window == 1 || window == 1 {
            window_start = server.sample().map_or(window_start, |s| s.write_bytes);
        }
        req += 1;
        append_one(&mut ws, req, &channel, &serial, &fragment(i)).await?;
        if n % window == 0 {
            let now = server.sample().map_or(window_start, |s| s.write_bytes);
            let per_append = now.saturating_sub(window_start) as f64 / window as f64;
            if n == 1_000.max(window).min(spec.appends) {
                at_1k = Some(per_append);
            }
            last = per_append;
        }
    }
    let total = written(server).await?.saturating_sub(start);
    let appended = (spec.appends * 32) as f64;
    m.insert(
        "long_bytes_per_append_at_1k".into(),
        at_1k.unwrap_or(f64::NAN),
    );
    m.insert("long_bytes_per_append_at_end".into(), last);
    m.insert(
        "long_end_over_1k".into(),
        last / at_1k.unwrap_or(f64::NAN).max(1.0),
    );
    m.insert(
        "long_written_per_appended_byte".into(),
        total as f64 / appended,
    );

    // Many messages, pipelined per message.
    let before = written(server).await?;
    for k in 0..spec.messages {
        let channel = format!("wa-many-{id}-{}", k % 100);
        req += 1;
        let serial = ws::publish(&mut ws, req, &channel, "").await?;
        let first = req + 1;
        for i in 0..spec.appends_each {
            req += 1;
            let frame = wire::append(req, &channel, &serial, &fragment(i));
            futures::SinkExt::feed(
                &mut ws,
                tokio_tungstenite::tungstenite::Message::text(frame),
            )
            .await?;
        }
        futures::SinkExt::flush(&mut ws).await?;
        let mut acked = 0;
        while acked < spec.appends_each {
            let text = ws::next_text(&mut ws)
                .await?
                .ok_or_else(|| err("server closed during write-amp"))?;
            match wire::frame_type(&text) {
                Some("ack") if wire::req(&text).is_some_and(|r| r >= first) => acked += 1,
                Some("error") => return Err(err(format!("append refused: {text}"))),
                _ => {}
            }
        }
    }
    let many = written(server).await?.saturating_sub(before);
    let appended = (spec.messages * spec.appends_each * 32) as f64;
    m.insert(
        "many_written_per_appended_byte".into(),
        many as f64 / appended,
    );
    Ok(m)
}
