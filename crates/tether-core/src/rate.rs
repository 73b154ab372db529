//! A token bucket for per-connection rate limits. Pure: the caller passes
//! the time in, so tests need no clock.

/// Allows `rate` operations per second on average, and bursts of `burst`.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last_ms: u64,
}

impl TokenBucket {
    /// A full bucket at time `now_ms`.
    pub fn new(rate_per_sec: u32, burst: u32, now_ms: u64) -> TokenBucket {
        TokenBucket {
            rate: f64::from(rate_per_sec),
            burst: f64::from(burst.max(1)),
            tokens: f64::from(burst.max(1)),
            last_ms: now_ms,
        }
    }

    /// Takes one token if there is one at `now_ms`.
    pub fn try_take(&mut self, now_ms: u64) -> bool {
        let elapsed = now_ms.saturating_sub(self.last_ms) as f64 / 1000.0;
        self.last_ms = self.last_ms.max(now_ms);
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_rate() {
        let mut b = TokenBucket::new(10, 5, 0);
        assert_eq!((0..8).filter(|_| b.try_take(0)).count(), 5);
        // 100 ms later one token has come back.
        assert!(b.try_take(100));
        assert!(!b.try_take(100));
        // A long pause refills only up to the burst.
        assert_eq!((0..20).filter(|_| b.try_take(60_000)).count(), 5);
    }

    #[test]
    fn clock_going_backwards_grants_nothing() {
        let mut b = TokenBucket::new(1000, 1, 1_000);
        assert!(b.try_take(1_000));
        assert!(!b.try_take(500));
    }
}
