//! Tether's load generator.
//!
//! A library so the smoke test can drive the same workloads against an
//! in-process server; `main.rs` is the `tether-bench` CLI around it.
//!
//! - [`target`]: the server under test (spawned release binary, a peer
//!   process, or an external URL) and its CPU/RSS ([`procstat`]).
//! - [`wire`]: frame building and allocation-free scanning of the frames
//!   that matter (acks, message events), and the timestamped tokens.
//! - [`stats`]: latency histograms and flat metric maps.
//! - [`workloads`]: W1-W5 and the peer comparisons.
//! - [`report`]: medians over repeats, ratios, the JSON file, the human
//!   summary and the SVG plot.

pub mod procstat;
pub mod progress;
pub mod report;
pub mod stats;
pub mod target;
pub mod wire;
pub mod workloads;
pub mod ws;

/// Errors are reported, not handled: a boxed error with context is enough.
pub type Error = Box<dyn std::error::Error + Send + Sync>;
/// Result with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Builds an [`Error`] from a message.
pub fn err(message: impl Into<String>) -> Error {
    message.into().into()
}

/// Knobs every workload shares.
#[derive(Debug, Clone, Default)]
pub struct Ctx {
    /// No progress bar (tests, non-interactive runs).
    pub quiet: bool,
}

/// The monotonic clock every timestamp of one process is taken from, so
/// that a token stamped by a publisher task can be compared with the time a
/// subscriber task receives it.
pub mod clock {
    use std::sync::OnceLock;
    use std::time::{Duration, Instant};

    static EPOCH: OnceLock<Instant> = OnceLock::new();

    /// The process's time origin.
    pub fn epoch() -> Instant {
        *EPOCH.get_or_init(Instant::now)
    }

    /// Nanoseconds since [`epoch`].
    pub fn now_ns() -> u64 {
        to_ns(epoch().elapsed())
    }

    /// The [`now_ns`] value of an instant.
    pub fn ns_at(at: Instant) -> u64 {
        to_ns(at.saturating_duration_since(epoch()))
    }

    fn to_ns(d: Duration) -> u64 {
        u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
    }
}
