//! The WebSocket front door: one task per connection reads frames in order
//! and hands them to the engine; attachments and acknowledgements flow back
//! through the connection's bounded [`Outbox`].
//!
//! Tasks of one connection:
//! - the reader (`Connection::run`, frames in [`frames`]): decodes frames,
//!   submits operations in order, sends heartbeats, detects idleness;
//! - the writer ([`outbox::Writer`]): drains the outbox into the socket;
//! - the ack loop ([`acks`]): awaits receipts in submission order, so acks
//!   go out in the order frames came in while many are in flight;
//! - one task per attached channel ([`attachment`]).
//!
//! When the socket goes away without a clean close, the connection parks in
//! [`crate::sessions::Sessions`] so a `resume` can carry on as the same connection;
//! sessions are also kept on disk ([`saving`]) so that works across a
//! restart.
//!
//! On shutdown a connection stops reading, lets the ack loop answer every
//! operation it already read (in order), then closes with 4001, all within
//! `shutdown_grace_ms`, and parks: the store closes only after that.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use std::time::Instant;

use axum::extract::rejection::QueryRejection;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde_json::Value;
use tether_core::rate::TokenBucket;
use tether_core::{ChannelName, ErrorCode, ErrorInfo};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::caller::{AuthQuery, CLIENT_ID_HEADER};
use crate::auth::{Credentials, Principal};
use crate::engine::Identity;
use crate::error::ApiError;
use crate::limits::Slot;
use crate::protocol::{self, AnnouncedLimits, EncodeFrame, ServerFrame};
use crate::runtime::{flipped, now_ms, sleep_or_forever};
use crate::state::App;

mod acks;
mod attachment;
mod capabilities;
mod frames;
mod guard;
pub(crate) mod outbox;
mod restarts;
mod saving;
mod violation;

use crate::sessions::{self, Attachments, Dedupe, SessionState};
use acks::Pending;
use outbox::Outbox;

/// Mutations in flight per connection before the reader waits for acks.
const ACK_QUEUE: usize = 4096;

/// Longest wait, on shutdown, for the client's half of the closing
/// handshake.
const LINGER: std::time::Duration = std::time::Duration::from_secs(2);

/// Query parameters of `GET /ws`.
#[derive(Debug, Default, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct WsQuery {
    /// A JWT.
    #[param(ignore)]
    pub token: Option<String>,
    /// An API key `name:secret`.
    #[param(ignore)]
    pub key: Option<String>,
    /// The identity a key holder acts as.
    #[param(ignore)]
    pub client_id: Option<String>,
    /// Roll-up window for this connection's subscriptions (ms, 0 = off);
    /// the channel's namespace setting when absent.
    pub rollup_ms: Option<u64>,
}

/// Longest roll-up window a connection may ask for.
const MAX_ROLLUP_MS: u64 = 5_000;

/// `GET /ws`: upgrades to a WebSocket connection.
///
/// A credential may come with the upgrade (header, or `?token=` / `?key=`
/// since browsers cannot set headers) or, outside `--dev`, as the first
/// frame (`auth`). A bad credential is refused before the upgrade. A
/// request that is no valid upgrade (a plain GET, a bad
/// `Sec-WebSocket-Version`) or has bad parameters gets the JSON error body
/// like every other HTTP error, not the extractor's plain text.
#[utoipa::path(
    get,
    path = "/ws",
    tag = "connections",
    params(WsQuery),
    // With a credential, or none: it may come as the first frame instead.
    security((), ("bearer" = []), ("basic" = []), ("token" = []), ("key" = [])),
    responses(
        (status = 101, description = "Switching to the WebSocket protocol: JSON frames as in docs/protocol.md."),
        (status = "4XX", description = "Not a valid upgrade, or a bad credential (refused before the upgrade).", body = tether_protocol::ErrorBody),
        (status = "5XX", description = "Too many connections waiting to authenticate, or shutting down.", body = tether_protocol::ErrorBody),
    )
)]
pub(crate) async fn upgrade(
    State(app): State<App>,
    query: Result<Query<WsQuery>, QueryRejection>,
    headers: HeaderMap,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let ws = match ws {
        Ok(ws) => ws,
        Err(rejection) => {
            let err = ErrorInfo::new(
                ErrorCode::BadRequest,
                format!("not a valid WebSocket upgrade: {}", rejection.body_text()),
            );
            return ApiError(err).into_response();
        }
    };
    let query = match query {
        Ok(Query(query)) => query,
        Err(rejection) => return ApiError::from(rejection).into_response(),
    };
    let rollup = query.rollup_ms.map(|ms| ms.min(MAX_ROLLUP_MS));
    let query = AuthQuery {
        token: query.token,
        key: query.key,
        client_id: query.client_id,
    };
    let principal = match authenticate_upgrade(&app, &query, &headers) {
        Ok(principal) => principal,
        Err(err) => return ApiError(err).into_response(),
    };
    // Sockets that will authenticate with their first frame have a pool of
    // their own; they are charged to their key when `auth` succeeds.
    let slot = match &principal {
        Some(principal) => app.slots.acquire(&principal.key),
        None => app.slots.acquire_unauthenticated(),
    };
    let slot = match slot {
        Ok(slot) => slot,
        Err(err) => return ApiError(err).into_response(),
    };
    // The library limit is a backstop well above ours, so that a frame a
    // bit over the limit gets a clear error and the connection survives.
    let hard_limit = app.config.max_frame_bytes.saturating_mul(4);
    ws.max_message_size(hard_limit)
        .max_frame_size(hard_limit)
        // Idle connections should cost a few KiB; tungstenite's default read
        // buffer is 128 KiB per connection.
        .read_buffer_size(4 * 1024)
        .on_upgrade(move |socket| Connection::run(app, socket, principal, slot, rollup))
}

/// The caller, or `None` when it will authenticate with its first frame.
fn authenticate_upgrade(
    app: &App,
    query: &AuthQuery,
    headers: &HeaderMap,
) -> Result<Option<Principal>, ErrorInfo> {
    let credentials =
        Credentials::from_request(headers, query.token.as_deref(), query.key.as_deref())?;
    if credentials == Credentials::None && !app.auth.dev() {
        return Ok(None);
    }
    let client_id = headers
        .get(CLIENT_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| query.client_id.clone());
    app.auth.authenticate(&credentials, client_id).map(Some)
}

/// How a connection ended, which decides what happens to its session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    /// The client closed: leave presence now, forget the session.
    Clean,
    /// The socket vanished or the server gave up on it: park the session.
    Abrupt,
    /// The server is shutting down: answer what was read, close with 4001,
    /// park the session (on disk, for the next process).
    Shutdown,
}

/// One WebSocket connection's state, owned by its reader task.
struct Connection {
    app: App,
    outbox: Outbox,
    /// `None` until the first `auth` frame when the upgrade had no credential.
    principal: Option<Principal>,
    identity: Identity,
    /// The connection's id (changes only when a `resume` adopts another).
    connection_id: String,
    resume_key: String,
    attachments: HashMap<ChannelName, JoinHandle<()>>,
    /// How each attached channel would start again, its `from` moved
    /// forward by the attachment tasks.
    starts: Attachments,
    /// Channels this connection is present on, with its data.
    presence: HashMap<ChannelName, Value>,
    dedupe: Arc<Mutex<Dedupe>>,
    acks: mpsc::Sender<Pending>,
    /// Rate limit on presence changes (enter, update, leave).
    presence_bucket: TokenBucket,
    /// When a connection still without a credential is closed (`40801`).
    auth_deadline: Option<Instant>,
    /// Whether anything was attached, entered or submitted (a `resume` must
    /// come before that).
    used: bool,
    /// Flips when a resume elsewhere takes this connection over.
    takeover: watch::Receiver<bool>,
    /// Roll-up window chosen at connect time (ms), if any.
    rollup_ms: Option<u64>,
    /// Fingerprint of the session as last written to disk ([`saving`]).
    saved: std::sync::atomic::AtomicU64,
    /// Counts this connection against the server cap, and the key's cap
    /// (or the unauthenticated pool until `auth`).
    slot: Slot,
}

impl Connection {
    async fn run(
        app: App,
        socket: WebSocket,
        principal: Option<Principal>,
        slot: Slot,
        rollup_ms: Option<u64>,
    ) {
        let (sink, mut stream) = socket.split();
        let (outbox, writer) = Outbox::new(
            app.config.outbound_queue,
            app.config.slow_consumer_timeout(),
            sink,
        );
        let running = app.sessions.track();
        let writer = tokio::spawn(writer.run());
        let (acks, ack_rx) = mpsc::channel(ACK_QUEUE);
        let mut ack_loop = tokio::spawn(acks::run(ack_rx, outbox.clone()));
        let connection_id = format!("c_{:032x}", rand::random::<u128>());
        let resume_key = sessions::new_resume_key();
        let client_id = principal.as_ref().and_then(|p| p.client_id.clone());
        let key = principal
            .as_ref()
            .map_or(crate::auth::UNAUTHENTICATED, |p| p.key.as_str());
        let takeover =
            app.sessions
                .register(&connection_id, &resume_key, key, client_id.as_deref());
        let mut conn = Connection {
            identity: Identity {
                client_id,
                connection_id: Some(connection_id.clone()),
            },
            presence_bucket: TokenBucket::new(
                app.config.presence_rate_per_sec,
                app.config.presence_burst,
                now_ms(),
            ),
            auth_deadline: principal.is_none().then(|| {
                Instant::now() + std::time::Duration::from_millis(app.config.auth_timeout_ms)
            }),
            principal,
            outbox,
            connection_id,
            resume_key,
            attachments: HashMap::new(),
            starts: Arc::default(),
            presence: HashMap::new(),
            dedupe: Arc::default(),
            acks,
            used: false,
            takeover,
            app,
            rollup_ms,
            saved: std::sync::atomic::AtomicU64::new(0),
            slot,
        };
        metrics::gauge!("tether_connections").increment(1.0);
        // Before anything is read: the record is then durable no later than
        // the first acknowledgement of this connection.
        conn.save_session();
        conn.send_connected();
        let ending = conn.serve(&mut stream).await;
        for (_, task) in conn.attachments.drain() {
            task.abort();
        }
        metrics::gauge!("tether_connections").decrement(1.0);
        let sessions = conn.app.sessions.clone();
        let connection_id = conn.connection_id.clone();
        let mut writer = writer;
        let (mut acks_done, mut writer_done) = (false, false);
        if ending == Ending::Shutdown {
            let deadline = tokio::time::Instant::now()
                + std::time::Duration::from_millis(conn.app.config.shutdown_grace_ms);
            (acks_done, writer_done) = conn.drain(&mut ack_loop, &mut writer, deadline).await;
            // The closing handshake: read (and drop, unanswered) what the
            // client still sends until its close. Closing a TCP socket with
            // unread input resets it, which can destroy the replies still
            // on their way to the client.
            let linger = async { while let Some(Ok(_)) = stream.next().await {} };
            let until = deadline.min(tokio::time::Instant::now() + LINGER);
            let _ = tokio::time::timeout_at(until, linger).await;
        }
        conn.finish(ending);
        if !acks_done {
            let _ = ack_loop.await;
        }
        if ending == Ending::Clean {
            // Again, now that no operation of it can record an outcome.
            sessions.discard(&connection_id);
        }
        if !writer_done {
            let _ = writer.await;
        }
        drop(running);
    }

    /// On shutdown, after reading stopped: lets the ack loop answer every
    /// operation already read, then closes with 4001 behind those replies,
    /// within `shutdown_grace_ms`. Says whether the ack loop and the writer
    /// finished.
    async fn drain(
        &mut self,
        ack_loop: &mut JoinHandle<()>,
        writer: &mut JoinHandle<()>,
        deadline: tokio::time::Instant,
    ) -> (bool, bool) {
        // No more operations: the ack loop ends once it has answered every
        // one already read.
        let (closed, _) = mpsc::channel(1);
        drop(std::mem::replace(&mut self.acks, closed));
        let acks_done = tokio::time::timeout_at(deadline, ack_loop).await.is_ok();
        if !acks_done {
            tracing::warn!(connection_id = %self.connection_id, "operations still unanswered at the end of the shutdown grace period");
        }
        let goodbye = ErrorInfo::new(
            ErrorCode::ShuttingDown,
            "the server is shutting down; reconnect and resume",
        );
        let queued = self.outbox.close_after_queued(goodbye.clone());
        if tokio::time::timeout_at(deadline, queued).await.is_err() {
            self.outbox.close(goodbye.clone());
        }
        let writer_done = tokio::time::timeout_at(deadline, &mut *writer)
            .await
            .is_ok();
        if !writer_done {
            self.outbox.close(goodbye);
        }
        (acks_done, writer_done)
    }

    fn send_connected(&self) {
        let config = &self.app.config;
        self.outbox.send(
            ServerFrame::Connected {
                protocol: protocol::PROTOCOL_VERSION,
                connection_id: self.connection_id.as_str().into(),
                resume_key: self.resume_key.as_str().into(),
                resume_ttl_ms: u64::try_from(self.app.sessions.ttl().as_millis())
                    .unwrap_or(u64::MAX),
                client_id: self.identity.client_id.as_deref().map(Into::into),
                authenticated: self.principal.is_some(),
                heartbeat_ms: config.heartbeat_ms,
                idle_timeout_ms: config.idle_timeout_ms,
                limits: AnnouncedLimits {
                    max_frame_bytes: config.max_frame_bytes,
                    max_message_bytes: config.namespace_defaults.max_message_bytes,
                    max_channels: config.max_channels_per_connection,
                    publish_rate_per_sec: config.publish_rate_per_sec,
                    publish_burst: config.publish_burst,
                },
            }
            .encode(),
        );
    }

    /// Reads frames until the connection ends; says how it ended.
    async fn serve(&mut self, stream: &mut futures::stream::SplitStream<WebSocket>) -> Ending {
        let mut heartbeat = tokio::time::interval(self.app.config.heartbeat());
        heartbeat.tick().await;
        let mut last_inbound = Instant::now();
        let mut shutdown = self.app.shutdown.clone();
        loop {
            let expiry = sleep_or_forever(self.expires_in());
            let auth_deadline = sleep_or_forever(self.auth_wait());
            // Re-read each time: a resume replaces the registration.
            let mut takeover = self.takeover.clone();
            tokio::select! {
                frame = stream.next() => {
                    let frame = match frame {
                        Some(Ok(frame)) => frame,
                        // An oversized or malformed frame: the server closes
                        // (4009 / 4000) and the session ends like a clean
                        // close, so it does not hold presence for the grace
                        // period. A vanished peer is parked as before.
                        Some(Err(err)) => match violation::classify(err) {
                            Some(reason) => {
                                self.outbox.close(reason);
                                return Ending::Clean;
                            }
                            None => return Ending::Abrupt,
                        },
                        None => return Ending::Abrupt,
                    };
                    last_inbound = Instant::now();
                    match frame {
                        Message::Text(text) => self.on_text(text.as_str()).await,
                        Message::Binary(_) => self.reply_error(None, None, ErrorInfo::new(
                            ErrorCode::BadRequest,
                            "binary frames are not supported; send JSON text frames",
                        )),
                        // 1001 "going away" is what a browser sends when a
                        // page reloads or navigates: keep the session so the
                        // reloaded page can resume it.
                        Message::Close(Some(frame)) if frame.code == 1001 => {
                            return Ending::Abrupt;
                        }
                        Message::Close(_) => return Ending::Clean,
                        Message::Ping(_) | Message::Pong(_) => {}
                    }
                }
                _ = heartbeat.tick() => {
                    if last_inbound.elapsed() > self.app.config.idle_timeout() {
                        self.outbox.close(ErrorInfo::new(ErrorCode::IdleTimeout, "nothing received within the idle timeout"));
                        return Ending::Abrupt;
                    }
                    self.outbox.send(ServerFrame::Heartbeat.encode());
                    self.outbox.ping();
                    self.refresh_session();
                }
                _ = auth_deadline => {
                    self.outbox.close(ErrorInfo::new(ErrorCode::AuthTimeout, "authenticate within the auth timeout: send an auth frame at once after connecting"));
                    return Ending::Abrupt;
                }
                _ = expiry => {
                    self.outbox.close(ErrorInfo::new(ErrorCode::TokenExpired, "token expired: renew it and resume"));
                    return Ending::Abrupt;
                }
                _ = self.outbox.closing() => return Ending::Abrupt,
                _ = flipped(&mut takeover) => {
                    self.outbox.close(ErrorInfo::new(ErrorCode::ResumeFailed, "this connection was resumed on another socket"));
                    return Ending::Abrupt;
                }
                // Stop reading; `run` answers what was read, then closes.
                _ = flipped(&mut shutdown) => return Ending::Shutdown,
            }
        }
    }

    /// After the socket is gone: leave presence now (clean close) or park
    /// the session so a resume can pick it up.
    fn finish(self, ending: Ending) {
        let Connection {
            app,
            connection_id,
            resume_key,
            principal,
            identity,
            presence,
            starts,
            dedupe,
            ..
        } = self;
        match (ending, principal) {
            (Ending::Abrupt | Ending::Shutdown, Some(principal)) => {
                let attachments = starts.lock().map(|p| p.clone()).unwrap_or_default();
                let state = SessionState {
                    connection_id,
                    resume_key,
                    key: principal.key,
                    client_id: identity.client_id,
                    presence,
                    attachments,
                    dedupe,
                };
                let engine_presence = app.engine.presence_arc();
                app.sessions.park(state, engine_presence);
            }
            _ => {
                app.sessions.forget(&connection_id);
                for channel in presence.keys() {
                    app.engine
                        .presence()
                        .leave(channel, &connection_id, now_ms());
                }
            }
        }
    }

    /// Time left on the credential, if it expires.
    fn expires_in(&self) -> Option<std::time::Duration> {
        let exp = self.principal.as_ref()?.expires_at?;
        Some(std::time::Duration::from_millis(
            exp.saturating_mul(1000).saturating_sub(now_ms()),
        ))
    }

    /// Time left to send the first `auth` frame, while there is none.
    fn auth_wait(&self) -> Option<std::time::Duration> {
        if self.principal.is_some() {
            return None;
        }
        self.auth_deadline
            .map(|at| at.saturating_duration_since(Instant::now()))
    }

    fn reply_error(&self, req: Option<u64>, channel: Option<&str>, err: ErrorInfo) {
        metrics::counter!("tether_client_errors_total").increment(1);
        self.outbox.send(protocol::error_frame(req, channel, &err));
    }
}
