//! Token renewal on the live connection: before the token expires, the
//! auth callback is asked for a new one, which goes out as an `auth`
//! frame; the server answers `authorized` with the new expiry, and
//! attachments continue. A failed callback or a refused token is retried
//! a second later; if the token expires first, the server closes the
//! connection (4005) and the next socket, opened with a fresh token,
//! resumes it.

use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::auth::Auth;
use crate::error::Error;
use std::sync::Arc;

/// How soon a failed renewal is tried again.
const RETRY: Duration = Duration::from_secs(1);

/// Where the renewal of the current connection's token stands.
#[derive(Debug, Default)]
pub(super) struct Renewal {
    /// When to call the callback next.
    at: Option<Instant>,
    /// The callback running.
    task: Option<JoinHandle<Result<Option<String>, Error>>>,
    /// The `auth` frame waiting for its reply.
    req: Option<u64>,
}

impl Renewal {
    /// Plans the next renewal from what is known of the token's expiry.
    pub(super) fn schedule(&mut self, auth: &Auth) {
        self.at = auth.renew_in().map(|delay| Instant::now() + delay);
    }

    /// The socket is gone: an `auth` frame in flight will get no reply.
    /// A callback already running goes on; its token serves the next socket.
    pub(super) fn disconnected(&mut self) {
        self.at = None;
        self.req = None;
    }

    /// Resolves with a fresh token to send, when it is time. Cancel-safe:
    /// the driver races it against the socket and its commands.
    pub(super) async fn next(&mut self, auth: &Arc<Auth>) -> String {
        loop {
            if let Some(task) = &mut self.task {
                let result = task.await;
                self.task = None;
                match result {
                    Ok(Ok(Some(token))) => return token,
                    Ok(Ok(None)) => self.at = None,
                    Ok(Err(err)) => {
                        tracing::warn!(%err, "token renewal failed; retrying shortly");
                        self.at = Some(Instant::now() + RETRY);
                    }
                    Err(err) => {
                        tracing::warn!(%err, "token renewal stopped; retrying shortly");
                        self.at = Some(Instant::now() + RETRY);
                    }
                }
            }
            match self.at {
                Some(at) if self.req.is_none() => {
                    tokio::time::sleep_until(at).await;
                    self.at = None;
                    let auth = auth.clone();
                    self.task = Some(tokio::spawn(async move { auth.renew().await }));
                }
                _ => std::future::pending::<()>().await,
            }
        }
    }

    /// The token went out as request `req`.
    pub(super) fn sent(&mut self, req: u64) {
        self.req = Some(req);
    }

    /// An `authorized` reply: the new token is in use until `expires_at`.
    pub(super) fn authorized(&mut self, req: u64, expires_at: Option<u64>, auth: &Auth) {
        if self.req == Some(req) {
            self.req = None;
            auth.note_expiry(expires_at);
            self.schedule(auth);
        }
    }

    /// An error reply; returns whether it answered our `auth` frame (which
    /// is then retried shortly).
    pub(super) fn refused(&mut self, req: u64) -> bool {
        if self.req != Some(req) {
            return false;
        }
        self.req = None;
        self.at = Some(Instant::now() + RETRY);
        true
    }
}
