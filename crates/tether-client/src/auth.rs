//! Credentials: a fixed token, a token renewed through a callback before it
//! expires, or (for back ends) an API key; shared by the WebSocket and the
//! REST client of one [`crate::Client`], so a renewal serves both.
//!
//! The SDK never verifies a token. It reads the payload's `exp` to know
//! when to renew, and the server's `authorized` frame (its `expires_at`)
//! overrides that once a renewal is accepted. Renewal happens a third of
//! the token's lifetime before it expires (at least 1 s, at most 60 s
//! before), and again whenever the server says the token expired.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;

use crate::error::Error;
use crate::options::ClientOptions;

type TokenFuture = Pin<Box<dyn Future<Output = Result<String, Error>> + Send>>;

/// A function the client calls for a fresh token: before the current one
/// expires, and when the server refused it. Set it with
/// [`ClientOptions::auth_callback`]; it usually asks your back end, which
/// mints tokens with its API key.
#[derive(Clone)]
pub struct AuthCallback(Arc<dyn Fn() -> TokenFuture + Send + Sync>);

impl AuthCallback {
    /// Wraps an async function returning a token (a JWT) or an error that
    /// says why there is none.
    pub fn new<F, Fut, E>(callback: F) -> AuthCallback
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<String, E>> + Send + 'static,
        E: fmt::Display,
    {
        AuthCallback(Arc::new(move || {
            let future = callback();
            Box::pin(async move { future.await.map_err(|e| Error::Auth(e.to_string())) })
        }))
    }

    fn call(&self) -> TokenFuture {
        (self.0)()
    }
}

impl fmt::Debug for AuthCallback {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AuthCallback(..)")
    }
}

/// The token in use and what is known about its lifetime.
#[derive(Debug, Default)]
struct TokenState {
    token: Option<String>,
    /// When it expires (ms since the Unix epoch), if known.
    expires_at_ms: Option<u64>,
    /// When it was obtained (ms).
    obtained_at_ms: u64,
    /// The server refused it: the next use renews it.
    stale: bool,
    /// Counts adopted tokens, so concurrent renewals are coalesced.
    generation: u64,
}

/// The credential of one client. See the module docs.
#[derive(Debug)]
pub(crate) struct Auth {
    key: Option<String>,
    client_id: Option<String>,
    callback: Option<AuthCallback>,
    state: Mutex<TokenState>,
    /// Held while the callback runs, so callers needing a token at the same
    /// time share one call.
    renewing: tokio::sync::Mutex<()>,
}

impl Auth {
    pub(crate) fn new(options: &ClientOptions) -> Arc<Auth> {
        let auth = Auth {
            key: options.key.clone(),
            client_id: options.client_id.clone(),
            callback: options.auth_callback.clone(),
            state: Mutex::new(TokenState::default()),
            renewing: tokio::sync::Mutex::new(()),
        };
        if let Some(token) = &options.token {
            auth.adopt(token.clone());
        }
        Arc::new(auth)
    }

    fn state(&self) -> MutexGuard<'_, TokenState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether a refused or expiring token can be replaced.
    pub(crate) fn can_renew(&self) -> bool {
        self.callback.is_some()
    }

    /// The token to use now: the current one, or a fresh one from the
    /// callback when there is none yet, it was refused, or it is about to
    /// expire. `None` when the client uses a key or no credential.
    pub(crate) async fn token(&self) -> Result<Option<String>, Error> {
        {
            let state = self.state();
            let usable = state.token.is_some() && !state.stale && !due(&state, now_ms());
            if self.callback.is_none() || usable {
                return Ok(state.token.clone());
            }
        }
        self.renew().await
    }

    /// Calls the callback now (or waits for a call already running) and
    /// adopts its token.
    pub(crate) async fn renew(&self) -> Result<Option<String>, Error> {
        let Some(callback) = &self.callback else {
            return Ok(self.state().token.clone());
        };
        let seen = self.state().generation;
        let _running = self.renewing.lock().await;
        {
            let state = self.state();
            if state.generation != seen && !state.stale {
                return Ok(state.token.clone());
            }
        }
        let token = callback.call().await?;
        if token.is_empty() {
            return Err(Error::Auth(
                "the auth callback returned an empty token".into(),
            ));
        }
        self.adopt(token.clone());
        Ok(Some(token))
    }

    /// The server refused or expired the current token.
    pub(crate) fn invalidate(&self) {
        self.state().stale = true;
    }

    /// The server's `authorized.expires_at` (seconds) for the token in use.
    pub(crate) fn note_expiry(&self, expires_at_secs: Option<u64>) {
        if let Some(secs) = expires_at_secs {
            self.state().expires_at_ms = Some(secs.saturating_mul(1000));
        }
    }

    /// How long until the current token should be renewed; `None` when it
    /// never needs to be (no expiry known, or nothing to renew with).
    pub(crate) fn renew_in(&self) -> Option<Duration> {
        self.callback.as_ref()?;
        let state = self.state();
        let expires = state.expires_at_ms?;
        let at = expires.saturating_sub(margin_ms(&state));
        Some(Duration::from_millis(at.saturating_sub(now_ms())))
    }

    /// Query parameters carrying the credential on the WebSocket upgrade
    /// (with the identity to act as, when one is set).
    pub(crate) fn query(&self, token: Option<&str>) -> Vec<(&'static str, String)> {
        let mut pairs = Vec::new();
        match (token, &self.key) {
            (Some(token), _) => pairs.push(("token", token.to_owned())),
            (None, Some(key)) => pairs.push(("key", key.clone())),
            (None, None) => {}
        }
        if let Some(client_id) = &self.client_id {
            pairs.push(("client_id", client_id.clone()));
        }
        pairs
    }

    /// Adds the credential to a REST request: a bearer token, or the key
    /// as Basic auth with the identity in `X-Tether-Client-Id`.
    pub(crate) fn apply(
        &self,
        request: reqwest::RequestBuilder,
        token: Option<&str>,
    ) -> reqwest::RequestBuilder {
        if let Some(token) = token {
            return request.bearer_auth(token);
        }
        let Some(key) = &self.key else {
            return request;
        };
        let (name, secret) = key.split_once(':').unwrap_or((key, ""));
        let request = request.basic_auth(name, Some(secret));
        match &self.client_id {
            Some(client_id) => request.header("x-tether-client-id", client_id),
            None => request,
        }
    }

    fn adopt(&self, token: String) {
        let mut state = self.state();
        state.expires_at_ms = jwt_exp(&token).map(|secs| secs.saturating_mul(1000));
        state.token = Some(token);
        state.obtained_at_ms = now_ms();
        state.stale = false;
        state.generation += 1;
    }
}

/// How long before expiry to renew: a third of the lifetime, within 1-60 s.
fn margin_ms(state: &TokenState) -> u64 {
    let lifetime = state
        .expires_at_ms
        .map_or(u64::MAX, |exp| exp.saturating_sub(state.obtained_at_ms));
    (lifetime / 3).clamp(1000, 60_000)
}

/// Whether the token should be replaced before use. A token obtained this
/// very second is used until it actually expires, so a callback handing
/// out very short-lived tokens cannot cause a renewal loop.
fn due(state: &TokenState, now: u64) -> bool {
    let Some(expires) = state.expires_at_ms else {
        return false;
    };
    if now.saturating_sub(state.obtained_at_ms) < 1000 {
        return now >= expires;
    }
    now >= expires.saturating_sub(margin_ms(state))
}

/// The `exp` claim (seconds) of a JWT, read without verifying it.
fn jwt_exp(token: &str) -> Option<u64> {
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    claims.get("exp")?.as_u64()
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn jwt(exp: u64) -> String {
        let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let claims = engine.encode(format!(r#"{{"exp":{exp},"client_id":"a"}}"#));
        format!("{}.{claims}.sig", engine.encode(r#"{"alg":"HS256"}"#))
    }

    #[test]
    fn reads_the_expiry_of_a_token() {
        assert_eq!(jwt_exp(&jwt(1_764_151_200)), Some(1_764_151_200));
        assert_eq!(jwt_exp("not-a-jwt"), None);
        assert_eq!(jwt_exp("a.!!!.c"), None);
    }

    #[test]
    fn renews_a_third_of_the_lifetime_before_expiry() {
        let now = now_ms();
        let state = TokenState {
            token: Some("t".into()),
            expires_at_ms: Some(now + 30_000),
            obtained_at_ms: now - 5_000,
            ..TokenState::default()
        };
        assert_eq!(margin_ms(&state), 35_000 / 3);
        assert!(!due(&state, now));
        assert!(due(&state, now + 30_000 - 35_000 / 3));
        let short = TokenState {
            expires_at_ms: Some(now + 600),
            obtained_at_ms: now,
            ..TokenState::default()
        };
        assert!(!due(&short, now), "a fresh short token is used");
        assert!(due(&short, now + 600));
    }

    #[tokio::test]
    async fn concurrent_renewals_share_one_callback_call() {
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = calls.clone();
        let options = ClientOptions::default().auth_callback(move || {
            let calls = counted.clone();
            async move {
                tokio::time::sleep(Duration::from_millis(20)).await;
                let n = calls.fetch_add(1, Ordering::SeqCst);
                Ok::<_, String>(format!("token-{n}"))
            }
        });
        let auth = Auth::new(&options);
        let (a, b) = tokio::join!(auth.token(), auth.token());
        assert_eq!(a.expect("token"), Some("token-0".into()));
        assert_eq!(b.expect("token"), Some("token-0".into()));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        // No expiry known: the token is kept until refused.
        assert_eq!(auth.token().await.expect("token"), Some("token-0".into()));
        auth.invalidate();
        assert_eq!(auth.token().await.expect("token"), Some("token-1".into()));
    }

    #[tokio::test]
    async fn a_failing_callback_is_an_auth_error() {
        let options = ClientOptions::default()
            .auth_callback(|| async { Err::<String, _>("the back end is down") });
        let err = Auth::new(&options).token().await.expect_err("no token");
        assert!(
            matches!(err, Error::Auth(ref m) if m.contains("back end")),
            "{err}"
        );
    }

    #[test]
    fn keys_go_in_the_query_tokens_win() {
        let options = ClientOptions::default().key("app:secret").client_id("bot");
        let auth = Auth::new(&options);
        assert_eq!(
            auth.query(None),
            vec![("key", "app:secret".into()), ("client_id", "bot".into())]
        );
        assert_eq!(auth.query(Some("t"))[0], ("token", "t".into()));
    }
}
