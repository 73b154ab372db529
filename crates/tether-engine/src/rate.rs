//! Per-credential rate limits on mutations, shared by every front door.
//!
//! One [`TokenBucket`] per credential (see
//! [`crate::principal::Principal::credential_id`]), so a caller's budget is the
//! same whether it publishes over REST, over one WebSocket or over ten. The
//! engine takes from it on the submit path, right after authorization, so
//! no door can skip it.
//!
//! Memory stays bounded by activity: a bucket that has refilled completely
//! is indistinguishable from a new one, so sweeps (at most one a second,
//! done by whichever caller comes along) forget such buckets. Only
//! credentials that mutated within the last `burst / rate` seconds (plus one)
//! are remembered.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::error::EngineError;
use tether_core::rate::TokenBucket;

/// How often idle buckets are swept out, at most.
const SWEEP_EVERY_MS: u64 = 1_000;

/// The buckets of every credential that mutated recently.
pub struct RateLimits {
    rate_per_sec: u32,
    burst: u32,
    /// A std mutex: held for a map lookup and a little arithmetic, never
    /// across an await.
    state: Mutex<State>,
}

struct State {
    buckets: HashMap<String, TokenBucket>,
    last_sweep_ms: u64,
}

impl RateLimits {
    /// `rate_per_sec` mutations per second on average per credential, in
    /// bursts of up to `burst`.
    pub fn new(rate_per_sec: u32, burst: u32) -> RateLimits {
        RateLimits {
            rate_per_sec,
            burst: burst.max(1),
            state: Mutex::new(State {
                buckets: HashMap::new(),
                last_sweep_ms: 0,
            }),
        }
    }

    /// Takes `n` operations' worth from `credential`'s budget at `now_ms`,
    /// all or nothing; `42901` when the budget does not hold them (nothing
    /// is taken then).
    pub fn take(&self, credential: &str, n: usize, now_ms: u64) -> Result<(), EngineError> {
        if n == 0 {
            return Ok(());
        }
        let count = u32::try_from(n).unwrap_or(u32::MAX);
        if count > self.burst {
            return Err(EngineError::RateLimited(format!(
                "{n} operations at once is more than the burst of {} this credential may send; send at most {} per request",
                self.burst, self.burst
            )));
        }
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if now_ms.saturating_sub(state.last_sweep_ms) >= SWEEP_EVERY_MS {
            state.buckets.retain(|_, bucket| !bucket.is_full(now_ms));
            state.last_sweep_ms = now_ms;
        }
        let (rate, burst) = (self.rate_per_sec, self.burst);
        let granted = match state.buckets.get_mut(credential) {
            Some(bucket) => bucket.try_take_n(count, now_ms),
            None => {
                let mut bucket = TokenBucket::new(rate, burst, now_ms);
                let granted = bucket.try_take_n(count, now_ms);
                state.buckets.insert(credential.to_owned(), bucket);
                granted
            }
        };
        if granted {
            Ok(())
        } else {
            Err(EngineError::RateLimited(format!(
                "more than {rate} operations per second (bursts of {burst}) from this credential, across all its connections and requests; slow down"
            )))
        }
    }

    /// How many credentials have a bucket right now.
    pub fn tracked(&self) -> usize {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .buckets
            .len()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn credentials_have_separate_budgets_and_arrays_count_whole() {
        let limits = RateLimits::new(10, 5);
        assert!(limits.take("a", 3, 0).is_ok());
        let refused = limits.take("a", 3, 0).unwrap_err();
        assert_eq!(refused.code(), tether_core::ErrorCode::RateLimited);
        // Nothing was taken by the refusal: two are still there.
        assert!(limits.take("a", 2, 0).is_ok());
        assert!(limits.take("b", 5, 0).is_ok());
        assert!(limits.take("c", 6, 0).is_err(), "over the burst, never");
        assert!(limits.take("c", 0, 0).is_ok());
    }

    #[test]
    fn idle_buckets_are_forgotten() {
        let limits = RateLimits::new(10, 5);
        for i in 0..100 {
            limits.take(&format!("client-{i}"), 1, 1_000).unwrap();
        }
        assert_eq!(limits.tracked(), 100);
        // 100 ms later they are not full yet: kept.
        limits.take("other", 1, 2_000 - 900).unwrap();
        assert_eq!(limits.tracked(), 101);
        // After a full refill every old bucket goes at the next sweep.
        limits.take("last", 1, 3_000).unwrap();
        assert_eq!(limits.tracked(), 1);
    }
}
