//! The named workloads. Each takes a running server and returns flat
//! [`Metrics`](crate::stats::Metrics).
//!
//! - [`stream`]: publishers appending timestamped tokens, subscribers
//!   measuring append→delivery latency: W1 (token storm: many channels,
//!   one subscriber each), W2 (fan-out: one channel, many subscribers),
//!   W5 (W1 under two fsync modes) and the sweep behind the plot.
//! - [`idle`]: W3, memory per idle connection.
//! - [`resume`]: W4, catching up after missed appends, one by one and all
//!   at once.
//! - [`peers`]: the same measurements against the Durable Streams
//!   reference server and Sockudo.
//! - [`fixed`]: an exact amount of streaming (N streams × M appends, one
//!   subscriber each) for instruction counts under callgrind.
//! - [`write_amp`]: disk bytes written per appended byte, for one long
//!   message and for many short ones.
//! - [`soak`]: minutes of steady W1-style load with the server's RSS
//!   sampled throughout and after: memory must plateau.

pub mod fixed;
pub mod idle;
pub mod peers;
pub mod resume;
pub mod soak;
pub mod stream;
pub mod write_amp;

use std::time::Duration;

use futures::{StreamExt, TryStreamExt};

use crate::Result;

/// Runs `f(i)` for `0..n` with at most `concurrency` at a time; results in
/// index order.
pub async fn concurrently<T, F, Fut>(n: usize, concurrency: usize, f: F) -> Result<Vec<T>>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let mut out: Vec<(usize, T)> = futures::stream::iter(0..n)
        .map(|i| {
            let fut = f(i);
            async move { fut.await.map(|t| (i, t)) }
        })
        .buffer_unordered(concurrency.max(1))
        .try_collect()
        .await?;
    out.sort_by_key(|(i, _)| *i);
    Ok(out.into_iter().map(|(_, t)| t).collect())
}

/// A run-unique suffix for channel names, so runs against one external
/// server do not see each other's data.
pub fn run_id() -> String {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or(Duration::ZERO);
    format!("{:x}", t.as_micros() % 0xffff_ffff)
}

/// Seconds as f64, never zero.
pub fn secs(d: Duration) -> f64 {
    d.as_secs_f64().max(1e-9)
}
