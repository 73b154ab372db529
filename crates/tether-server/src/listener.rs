//! The accept loop and HTTP/1.1 serving of each connection, plain or TLS.
//!
//! `axum::serve` has no header-read timeout, no body-read timeout and no
//! cap on open sockets, so a client without any credential could hold file
//! descriptors with half-sent requests until legitimate requests failed
//! (slowloris). This loop adds, for every connection:
//!
//! - a cap on open TCP connections (`max_http_connections`): a permit is
//!   taken before `accept`, so beyond the cap new connections wait in the
//!   kernel's backlog. The permit travels with the socket, also into an
//!   upgraded WebSocket, and returns when the socket closes;
//! - a header-read timeout (`header_read_timeout_ms`, hyper's own): a
//!   connection whose request head does not arrive in time, including an
//!   idle keep-alive connection, is closed;
//! - a body-read timeout (`body_read_timeout_ms`): a request whose body is
//!   not complete in time fails with `40802` and the connection closes;
//! - accept errors (`EMFILE`, `ENFILE`, ...) never end the loop: it backs
//!   off briefly and logs once per burst.
//!
//! TLS handshakes run in each connection's own task with a timeout
//! ([`crate::tls::handshake`]), never on the accept path.

use std::convert::Infallible;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderValue, Request, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tether_core::{ErrorCode, ErrorInfo};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio::time::{Instant, Sleep};
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use crate::error::ApiError;
use crate::runtime::flipped;

/// The per-connection limits of the accept loop (from [`crate::Config`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ListenerLimits {
    /// Time for a request head to arrive (also bounds idle keep-alive).
    pub header_read_timeout: Duration,
    /// Time for a request body to arrive completely, from its head.
    pub body_read_timeout: Duration,
    /// Most open TCP connections.
    pub max_connections: usize,
}

impl ListenerLimits {
    /// The limits a configuration asks for.
    pub(crate) fn from_config(config: &crate::Config) -> ListenerLimits {
        ListenerLimits {
            header_read_timeout: Duration::from_millis(config.header_read_timeout_ms.max(1)),
            body_read_timeout: Duration::from_millis(config.body_read_timeout_ms.max(1)),
            // A semaphore holds at most MAX_PERMITS; more would panic.
            max_connections: config.max_http_connections.clamp(1, Semaphore::MAX_PERMITS),
        }
    }
}

/// First pause after an accept error; doubles per error up to the max.
const BACKOFF_START: Duration = Duration::from_millis(10);
/// Longest pause after repeated accept errors.
const BACKOFF_MAX: Duration = Duration::from_millis(500);

/// Serves `router` on `listener` until `shutdown` flips, then stops
/// accepting, lets every connection finish its current request (idle ones
/// close at once) and returns once they have. Upgraded WebSockets are not
/// waited for: they watch the same flag and close themselves.
pub(crate) async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    router: Router,
    limits: ListenerLimits,
    mut shutdown: watch::Receiver<bool>,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    // Every connection task holds a sender; all dropped = all finished.
    let (alive, mut finished) = mpsc::channel::<()>(1);
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    let builder = Arc::new(builder);
    let mut errors = AcceptErrors::default();
    let mut at_cap = false;
    loop {
        let permit = match permits.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                if !at_cap {
                    at_cap = true;
                    tracing::warn!(
                        max = limits.max_connections,
                        "max_http_connections reached; new connections wait until one closes"
                    );
                }
                tokio::select! {
                    permit = permits.clone().acquire_owned() => match permit {
                        Ok(permit) => permit,
                        Err(_) => break,
                    },
                    _ = flipped(&mut shutdown) => break,
                }
            }
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = flipped(&mut shutdown) => break,
        };
        let tcp = match accepted {
            Ok((tcp, _peer)) => {
                errors.recovered();
                tcp
            }
            Err(err) => {
                // The permit goes back; the loop never ends on an error.
                drop(permit);
                if let Some(pause) = errors.failed(&err) {
                    tokio::select! {
                        _ = tokio::time::sleep(pause) => {}
                        _ = flipped(&mut shutdown) => break,
                    }
                }
                continue;
            }
        };
        if permits.available_permits() > 0 {
            at_cap = false;
        }
        // Small frames (tokens, acks) must not wait for Nagle and the
        // peer's delayed ACK: measured 40 ms per replay burst without.
        let _ = tcp.set_nodelay(true);
        let io = Counted {
            inner: tcp,
            _permit: permit,
        };
        let connection = Connection {
            builder: builder.clone(),
            router: router.clone(),
            body_timeout: limits.body_read_timeout,
            shutdown: shutdown.clone(),
            _alive: alive.clone(),
        };
        match &tls {
            None => {
                tokio::spawn(connection.run(io));
            }
            Some(acceptor) => {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    if let Some(io) = crate::tls::handshake(&acceptor, io).await {
                        connection.run(io).await;
                    }
                });
            }
        }
    }
    drop(listener);
    drop(alive);
    let _ = finished.recv().await;
}

/// Counts consecutive accept errors so a burst is logged once.
#[derive(Default)]
struct AcceptErrors {
    in_burst: u64,
    pause: Duration,
}

impl AcceptErrors {
    /// Records an error; returns how long to pause before accepting again
    /// (`None` for errors about one connection, which the next accept does
    /// not repeat).
    fn failed(&mut self, err: &io::Error) -> Option<Duration> {
        if matches!(
            err.kind(),
            io::ErrorKind::ConnectionAborted
                | io::ErrorKind::ConnectionReset
                | io::ErrorKind::ConnectionRefused
                | io::ErrorKind::Interrupted
        ) {
            tracing::debug!(error = %err, "accept: connection failed before it was accepted");
            return None;
        }
        // EMFILE / ENFILE / ENOBUFS / ENOMEM: the pending connection stays
        // in the backlog and the next accept fails the same way at once, so
        // pause and let open connections close.
        if self.in_burst == 0 {
            tracing::warn!(error = %err, "accept failed (out of file descriptors?); backing off");
            self.pause = BACKOFF_START;
        } else {
            self.pause = (self.pause * 2).min(BACKOFF_MAX);
        }
        self.in_burst += 1;
        Some(self.pause)
    }

    /// An accept succeeded: ends a burst.
    fn recovered(&mut self) {
        if self.in_burst > 0 {
            tracing::info!(errors = self.in_burst, "accepting connections again");
            self.in_burst = 0;
        }
    }
}

/// What one connection's task needs.
struct Connection {
    builder: Arc<http1::Builder>,
    router: Router,
    body_timeout: Duration,
    shutdown: watch::Receiver<bool>,
    _alive: mpsc::Sender<()>,
}

impl Connection {
    async fn run<I>(mut self, io: I)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let router = self.router.clone();
        let body_timeout = self.body_timeout;
        let service = hyper::service::service_fn(move |request: Request<Incoming>| {
            respond(router.clone(), request, body_timeout)
        });
        let conn = self
            .builder
            .serve_connection(TokioIo::new(io), service)
            .with_upgrades();
        let mut conn = std::pin::pin!(conn);
        tokio::select! {
            result = conn.as_mut() => log_end(result),
            _ = flipped(&mut self.shutdown) => {
                conn.as_mut().graceful_shutdown();
                log_end(conn.await);
            }
        }
    }
}

fn log_end(result: Result<(), hyper::Error>) {
    if let Err(err) = result {
        // Header timeouts, resets, malformed requests: the client's doing.
        tracing::debug!(error = %err, "connection ended");
    }
}

/// Runs one request through the router with its body under the deadline;
/// a body that missed it turns the response into `40802`.
async fn respond(
    router: Router,
    request: Request<Incoming>,
    timeout: Duration,
) -> Result<Response, Infallible> {
    let timed_out = Arc::new(AtomicBool::new(false));
    let flag = timed_out.clone();
    let request = request.map(|body| {
        Body::new(DeadlineBody {
            inner: body,
            deadline: Instant::now() + timeout,
            sleep: None,
            timed_out: flag,
        })
    });
    let response = match router.oneshot(request).await {
        Ok(response) => response,
        Err(never) => match never {},
    };
    if !timed_out.load(Ordering::Acquire) {
        return Ok(response);
    }
    let mut response = ApiError(ErrorInfo::new(
        ErrorCode::RequestTimeout,
        format!(
            "the request body did not arrive within {} ms",
            timeout.as_millis()
        ),
    ))
    .into_response();
    // The rest of the body may still trickle in: do not read it.
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    Ok(response)
}

/// Why a request body ended early: it did not arrive in time.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive in time")]
pub(crate) struct BodyTimedOut;

/// A request body that fails with [`BodyTimedOut`] once its deadline
/// passes, and says so through `timed_out`.
struct DeadlineBody {
    inner: Incoming,
    deadline: Instant,
    /// Made on the first wait, so bodies that arrive at once (and empty
    /// ones) cost no timer.
    sleep: Option<Pin<Box<Sleep>>>,
    timed_out: Arc<AtomicBool>,
}

impl http_body::Body for DeadlineBody {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        if this.timed_out.load(Ordering::Acquire) {
            return Poll::Ready(Some(Err(Box::new(BodyTimedOut))));
        }
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|r| r.map_err(Into::into)));
        }
        let deadline = this.deadline;
        let sleep = this
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        match sleep.as_mut().poll(cx) {
            Poll::Ready(()) => {
                this.timed_out.store(true, Ordering::Release);
                Poll::Ready(Some(Err(Box::new(BodyTimedOut))))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A socket holding one of the `max_http_connections` permits until it
/// closes (also after a WebSocket upgrade took it over).
struct Counted<T> {
    inner: T,
    _permit: OwnedSemaphorePermit,
}

impl<T: AsyncRead + Unpin> AsyncRead for Counted<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Counted<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
