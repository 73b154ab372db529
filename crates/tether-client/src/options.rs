//! How a [`crate::Client`] connects and reconnects.

use std::future::Future;
use std::time::Duration;

use crate::auth::AuthCallback;

/// Settings of a [`crate::Client`]. Start from [`ClientOptions::default`]
/// and change what you need:
///
/// ```
/// use std::time::Duration;
/// use tether_client::ClientOptions;
///
/// let options = ClientOptions::default()
///     .token("secret")
///     .max_backoff(Duration::from_secs(5));
/// assert_eq!(options.token.as_deref(), Some("secret"));
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ClientOptions {
    /// A token (JWT). Sent as the `token` query parameter of the WebSocket
    /// URL (browsers cannot set headers there, so the server accepts it
    /// there) and as `Authorization: Bearer` on REST requests. Without
    /// [`ClientOptions::auth_callback`] it cannot be renewed: once it
    /// expires the server closes the connection and refuses reconnects.
    pub token: Option<String>,
    /// Returns a fresh token; called before the current one expires (the
    /// new one is sent on the live connection as an `auth` frame, so
    /// attachments continue), when the server says it expired, and for the
    /// first connection if [`ClientOptions::token`] is not set.
    pub auth_callback: Option<AuthCallback>,
    /// An API key, `name:secret`, for trusted back ends (agents, servers);
    /// never give one to a browser or device: give it a token minted with
    /// the key instead. Sent as the `key` query parameter and as Basic auth
    /// on REST. A token, when set, is used instead.
    pub key: Option<String>,
    /// The identity to act as. Honoured in development mode and for API
    /// key holders; a token fixes its own.
    pub client_id: Option<String>,
    /// The append roll-up window asked of the server, in milliseconds:
    /// fragments of a streaming message that arrive within the window come
    /// as one append event. The folded view is the same either way; only
    /// the number of events changes. `None`: the server's default;
    /// `Some(0)`: every fragment as its own event.
    pub rollup_ms: Option<u64>,
    /// How long one connection attempt (TCP, handshake, `connected` frame)
    /// may take.
    pub connect_timeout: Duration,
    /// First reconnect delay after a failed attempt; doubles each attempt.
    pub initial_backoff: Duration,
    /// Longest reconnect delay.
    pub max_backoff: Duration,
    /// Most operations waiting for an acknowledgement (sent or queued while
    /// disconnected); beyond it operations fail with [`crate::Error::Backlog`]
    /// rather than growing memory without bound.
    pub max_pending: usize,
}

impl Default for ClientOptions {
    fn default() -> ClientOptions {
        ClientOptions {
            token: None,
            auth_callback: None,
            key: None,
            client_id: None,
            rollup_ms: None,
            connect_timeout: Duration::from_secs(10),
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(10),
            max_pending: 65_536,
        }
    }
}

impl ClientOptions {
    /// Sets [`ClientOptions::token`].
    pub fn token(mut self, token: impl Into<String>) -> ClientOptions {
        self.token = Some(token.into());
        self
    }

    /// Sets [`ClientOptions::auth_callback`]: an async function returning
    /// a fresh token, or an error saying why there is none.
    ///
    /// ```
    /// use tether_client::ClientOptions;
    ///
    /// let options = ClientOptions::default().auth_callback(|| async {
    ///     // Ask your back end, which mints tokens with its key.
    ///     Ok::<_, String>("eyJ...".to_owned())
    /// });
    /// assert!(options.auth_callback.is_some());
    /// ```
    pub fn auth_callback<F, Fut, E>(mut self, callback: F) -> ClientOptions
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<String, E>> + Send + 'static,
        E: std::fmt::Display,
    {
        self.auth_callback = Some(AuthCallback::new(callback));
        self
    }

    /// Sets [`ClientOptions::key`] (`name:secret`).
    pub fn key(mut self, key: impl Into<String>) -> ClientOptions {
        self.key = Some(key.into());
        self
    }

    /// Sets [`ClientOptions::client_id`].
    pub fn client_id(mut self, client_id: impl Into<String>) -> ClientOptions {
        self.client_id = Some(client_id.into());
        self
    }

    /// Sets [`ClientOptions::rollup_ms`].
    pub fn rollup_ms(mut self, window_ms: u64) -> ClientOptions {
        self.rollup_ms = Some(window_ms);
        self
    }

    /// Sets [`ClientOptions::connect_timeout`].
    pub fn connect_timeout(mut self, timeout: Duration) -> ClientOptions {
        self.connect_timeout = timeout;
        self
    }

    /// Sets [`ClientOptions::initial_backoff`].
    pub fn initial_backoff(mut self, delay: Duration) -> ClientOptions {
        self.initial_backoff = delay;
        self
    }

    /// Sets [`ClientOptions::max_backoff`].
    pub fn max_backoff(mut self, delay: Duration) -> ClientOptions {
        self.max_backoff = delay;
        self
    }

    /// Sets [`ClientOptions::max_pending`].
    pub fn max_pending(mut self, limit: usize) -> ClientOptions {
        self.max_pending = limit.max(1);
        self
    }
}

/// A connection that lived this long was healthy: the next drop is retried
/// at once and the backoff starts over. A server that accepts and then
/// closes at once therefore still gets an increasing delay.
pub(crate) const STABLE_AFTER: Duration = Duration::from_secs(5);

/// Exponential backoff with "equal jitter": attempt `n` waits a random time
/// between half and all of `min(max, initial * 2^(n-1))`. The random half
/// spreads a crowd of clients that lost the same server; the fixed half
/// keeps a single client from retrying in a tight loop.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    initial: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    pub(crate) fn new(options: &ClientOptions) -> Backoff {
        Backoff {
            initial: options.initial_backoff,
            max: options.max_backoff.max(options.initial_backoff),
            attempt: 0,
        }
    }

    /// Delay before the next attempt. The first one after a reset is
    /// immediate: a healthy connection that drops is most likely to come
    /// back right away (a restarted server, a load balancer recycling).
    pub(crate) fn next_delay(&mut self) -> Duration {
        let attempt = self.attempt;
        self.attempt = self.attempt.saturating_add(1);
        if attempt == 0 {
            return Duration::ZERO;
        }
        let ceiling = self.ceiling(attempt);
        let half = ceiling / 2;
        let jitter = rand::random_range(0.0..=1.0);
        half + half.mul_f64(jitter)
    }

    /// The upper bound of attempt `n`'s delay (n >= 1).
    fn ceiling(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1).min(31));
        self.initial.saturating_mul(factor).min(self.max)
    }

    /// Forgets past failures.
    pub(crate) fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_exponentially_with_jitter_and_is_capped() {
        let options = ClientOptions::default()
            .initial_backoff(Duration::from_millis(100))
            .max_backoff(Duration::from_secs(2));
        let mut backoff = Backoff::new(&options);
        assert_eq!(backoff.next_delay(), Duration::ZERO);
        let expected_ceilings = [100, 200, 400, 800, 1600, 2000, 2000, 2000];
        for ceiling in expected_ceilings {
            let delay = backoff.next_delay();
            let ceiling = Duration::from_millis(ceiling);
            assert!(
                delay >= ceiling / 2 && delay <= ceiling,
                "{delay:?} not in [{:?}, {ceiling:?}]",
                ceiling / 2
            );
        }
        for _ in 0..100 {
            assert!(backoff.next_delay() <= Duration::from_secs(2));
        }
        backoff.reset();
        assert_eq!(backoff.next_delay(), Duration::ZERO);
    }

    #[test]
    fn huge_attempt_counts_do_not_overflow() {
        let mut backoff = Backoff::new(&ClientOptions::default());
        backoff.attempt = u32::MAX - 1;
        assert!(backoff.next_delay() <= ClientOptions::default().max_backoff);
        assert!(backoff.next_delay() <= ClientOptions::default().max_backoff);
    }
}
