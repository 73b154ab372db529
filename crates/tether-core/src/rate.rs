//! A token bucket for rate limits (the server keeps one per credential). Pure: the caller passes
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
        self.try_take_n(1, now_ms)
    }

    /// Takes `n` tokens at once if there are that many at `now_ms`, and
    /// none otherwise: an array of operations is admitted whole or not at
    /// all. More than the burst is never granted.
    pub fn try_take_n(&mut self, n: u32, now_ms: u64) -> bool {
        self.refill(now_ms);
        let n = f64::from(n);
        if self.tokens >= n {
            self.tokens -= n;
            true
        } else {
            false
        }
    }

    /// Whether the bucket has refilled completely by `now_ms`: it then
    /// behaves exactly like a new one, so a registry may forget it.
    pub fn is_full(&self, now_ms: u64) -> bool {
        let elapsed = now_ms.saturating_sub(self.last_ms) as f64 / 1000.0;
        self.tokens + elapsed * self.rate >= self.burst
    }

    /// The most tokens one take can ever get.
    pub fn burst(&self) -> u32 {
        self.burst as u32
    }

    fn refill(&mut self, now_ms: u64) {
        let elapsed = now_ms.saturating_sub(self.last_ms) as f64 / 1000.0;
        self.last_ms = self.last_ms.max(now_ms);
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
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
    fn many_at_once_is_all_or_nothing() {
        let mut b = TokenBucket::new(10, 5, 0);
        assert!(!b.try_take_n(6, 0), "more than the burst is never granted");
        assert!(b.try_take_n(3, 0));
        assert!(!b.try_take_n(3, 0), "two are left, three are refused whole");
        assert!(b.try_take_n(2, 0));
        assert!(!b.is_full(0));
        assert!(!b.is_full(400));
        assert!(b.is_full(500));
        assert_eq!(b.burst(), 5);
    }

    #[test]
    fn clock_going_backwards_grants_nothing() {
        let mut b = TokenBucket::new(1000, 1, 1_000);
        assert!(b.try_take(1_000));
        assert!(!b.try_take(500));
    }
}
