//! Pacing: never send mutations faster than the server accepts them.
//!
//! The server limits mutations per connection with a token bucket and
//! refuses the excess with `42901`. A refused append in the middle of a
//! pipelined stream would leave a hole in the response while the appends
//! after it still land, so the driver holds operations back instead of
//! having them refused. It runs the same bucket as the server
//! (`tether_core::rate`), with the rate and burst the server announces in
//! `connected.limits` (the server's defaults before the first `connected`),
//! a little below the burst to absorb network jitter.

use std::time::{Duration, Instant};

use tether_core::rate::TokenBucket;

use tether_protocol::AnnouncedLimits;

/// The server's defaults, used until a connection announces its limits.
const DEFAULT_RATE: u32 = 500;
const DEFAULT_BURST: u32 = 2000;

/// A bucket per connection, started full like the server's.
#[derive(Debug)]
pub(crate) struct Pace {
    bucket: TokenBucket,
    start: Instant,
    /// Time for one token to come back.
    token_time: Duration,
}

impl Default for Pace {
    /// Before the first `connected` frame: the server's defaults.
    fn default() -> Pace {
        Pace::new(DEFAULT_RATE, DEFAULT_BURST)
    }
}

impl Pace {
    /// The pace the server announced for this connection.
    pub(crate) fn announced(limits: &AnnouncedLimits) -> Pace {
        Pace::new(limits.publish_rate_per_sec, limits.publish_burst)
    }

    fn new(rate: u32, burst: u32) -> Pace {
        let (rate, burst) = (rate.max(1), burst.max(1));
        let margin = burst / 10;
        Pace {
            bucket: TokenBucket::new(rate, (burst - margin).max(1), 0),
            start: Instant::now(),
            token_time: Duration::from_secs_f64(1.0 / f64::from(rate)),
        }
    }

    /// Takes a token for one operation; `false`: wait [`Pace::retry_in`].
    pub(crate) fn try_take(&mut self) -> bool {
        let now = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.bucket.try_take(now)
    }

    /// How long until the next token, at most.
    pub(crate) fn retry_in(&self) -> Duration {
        self.token_time.max(Duration::from_millis(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allows_the_burst_less_a_margin_then_waits() {
        let mut pace = Pace::announced(&AnnouncedLimits {
            max_frame_bytes: 1,
            max_message_bytes: 1,
            max_channels: 1,
            publish_rate_per_sec: 10,
            publish_burst: 20,
        });
        let taken = (0..30).filter(|_| pace.try_take()).count();
        assert!((18..=19).contains(&taken), "{taken}");
        assert_eq!(pace.retry_in(), Duration::from_millis(100));
    }

    #[test]
    fn defaults_to_the_server_defaults() {
        let mut pace = Pace::default();
        let taken = (0..5000).filter(|_| pace.try_take()).count();
        // 1800 at once, and maybe a few more if the loop took milliseconds.
        assert!((1800..1850).contains(&taken), "{taken}");
    }
}
