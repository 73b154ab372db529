//! The WebSocket front door: one task per connection reads frames in order
//! and hands them to the engine; attachments and acknowledgements flow back
//! through the connection's bounded [`Outbox`].
//!
//! Tasks of one connection:
//! - the reader (this module's `Connection::run`): decodes frames, submits
//!   operations in order, sends heartbeats, detects idleness;
//! - the writer ([`outbox::Writer`]): drains the outbox into the socket;
//! - the ack loop: awaits receipts in submission order, so acks go out in
//!   the order frames came in while many operations are in flight;
//! - one task per attached channel, pulling its [`Subscription`].

use std::collections::HashMap;
use std::time::Instant;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::StreamExt;
use tether_core::capability::Operation as Cap;
use tether_core::rate::TokenBucket;
use tether_core::{ChannelName, ErrorCode, ErrorInfo};
use tether_store::Receipt;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::app::{App, sleep_or_forever};
use crate::auth::extract::{AuthQuery, CLIENT_ID_HEADER};
use crate::auth::{Credentials, Principal};
use crate::engine::{Delivery, Identity, Start, Subscription};
use crate::http::ApiError;
use crate::limits::Slot;
use crate::protocol::{self, AnnouncedLimits, ClientFrame, MAX_REWIND, ServerFrame};

pub mod outbox;

use outbox::Outbox;

/// Mutations in flight per connection before the reader waits for acks.
const ACK_QUEUE: usize = 4096;

/// Key name that unauthenticated connections (waiting for their `auth`
/// frame) are counted under, so they are capped like any key.
const UNAUTHENTICATED: &str = "-";

/// `GET /ws`: upgrades to a WebSocket connection.
///
/// A credential may come with the upgrade (header, or `?token=` / `?key=`
/// since browsers cannot set headers) or, outside `--dev`, as the first
/// frame (`auth`). A bad credential is refused before the upgrade.
pub async fn upgrade(
    State(app): State<App>,
    Query(query): Query<AuthQuery>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    let principal = match authenticate_upgrade(&app, &query, &headers) {
        Ok(principal) => principal,
        Err(err) => return ApiError(err).into_response(),
    };
    let key = principal
        .as_ref()
        .map_or(UNAUTHENTICATED, |p| p.key.as_str());
    let slot = match app.slots.acquire(key) {
        Ok(slot) => slot,
        Err(err) => return ApiError(err).into_response(),
    };
    // The library limit is a backstop well above ours, so that a frame a
    // bit over the limit gets a clear error and the connection survives.
    let hard_limit = app.config.max_frame_bytes.saturating_mul(4);
    ws.max_message_size(hard_limit)
        .max_frame_size(hard_limit)
        .on_upgrade(move |socket| Connection::run(app, socket, principal, slot))
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

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// What the ack loop awaits, in submission order.
enum Pending {
    Receipt(Option<u64>, Receipt),
    Ready(Bytes),
}

struct Connection {
    app: App,
    outbox: Outbox,
    /// `None` until the first `auth` frame when the upgrade had no credential.
    principal: Option<Principal>,
    identity: Identity,
    attachments: HashMap<ChannelName, JoinHandle<()>>,
    acks: mpsc::Sender<Pending>,
    /// Rate limit on mutations.
    bucket: TokenBucket,
    /// Counts this connection against the server and key caps.
    _slot: Slot,
}

impl Connection {
    async fn run(app: App, socket: WebSocket, principal: Option<Principal>, slot: Slot) {
        let (sink, mut stream) = socket.split();
        let (outbox, writer) = Outbox::new(
            app.config.outbound_queue,
            app.config.slow_consumer_timeout(),
            sink,
        );
        let writer = tokio::spawn(writer.run());
        let (acks, ack_rx) = mpsc::channel(ACK_QUEUE);
        let ack_loop = tokio::spawn(ack_loop(ack_rx, outbox.clone()));
        let connection_id = new_connection_id();
        let mut conn = Connection {
            identity: Identity {
                client_id: principal.as_ref().and_then(|p| p.client_id.clone()),
                connection_id: Some(connection_id.clone()),
            },
            bucket: TokenBucket::new(
                app.config.publish_rate_per_sec,
                app.config.publish_burst,
                now_ms(),
            ),
            principal,
            outbox,
            attachments: HashMap::new(),
            acks,
            app,
            _slot: slot,
        };
        metrics::gauge!("tether_connections").increment(1.0);
        conn.outbox.send(
            ServerFrame::Connected {
                protocol: protocol::PROTOCOL_VERSION,
                connection_id: &connection_id,
                client_id: conn.identity.client_id.as_deref(),
                authenticated: conn.principal.is_some(),
                heartbeat_ms: conn.app.config.heartbeat_ms,
                idle_timeout_ms: conn.app.config.idle_timeout_ms,
                limits: AnnouncedLimits {
                    max_frame_bytes: conn.app.config.max_frame_bytes,
                    max_message_bytes: conn.app.config.namespace_defaults.max_message_bytes,
                    max_channels: conn.app.config.max_channels_per_connection,
                },
            }
            .encode(),
        );
        let mut heartbeat = tokio::time::interval(conn.app.config.heartbeat());
        heartbeat.tick().await;
        let mut last_inbound = Instant::now();
        let mut shutdown = conn.app.shutdown.clone();
        loop {
            let expiry = sleep_or_forever(conn.expires_in());
            tokio::select! {
                _ = expiry => {
                    conn.outbox.close(ErrorInfo::new(ErrorCode::TokenExpired, "token expired: renew it and resume"));
                    break;
                }
                frame = stream.next() => {
                    let Some(Ok(frame)) = frame else { break };
                    last_inbound = Instant::now();
                    match frame {
                        Message::Text(text) => conn.on_text(text.as_str()).await,
                        Message::Binary(_) => {
                            conn.reply_error(None, None, ErrorInfo::new(ErrorCode::BadRequest, "binary frames are not supported; send JSON text frames"));
                        }
                        Message::Close(_) => break,
                        Message::Ping(_) | Message::Pong(_) => {}
                    }
                }
                _ = heartbeat.tick() => {
                    if last_inbound.elapsed() > conn.app.config.idle_timeout() {
                        conn.outbox.close(ErrorInfo::new(ErrorCode::IdleTimeout, "nothing received within the idle timeout"));
                        break;
                    }
                    conn.outbox.send(ServerFrame::Heartbeat.encode());
                    conn.outbox.ping();
                }
                _ = conn.outbox.closing() => break,
                _ = crate::app::flipped(&mut shutdown) => {
                    conn.outbox.close(ErrorInfo::new(ErrorCode::ShuttingDown, "the server is shutting down; reconnect and resume"));
                    break;
                }
            }
        }
        for (_, task) in conn.attachments.drain() {
            task.abort();
        }
        metrics::gauge!("tether_connections").decrement(1.0);
        drop(conn);
        let _ = ack_loop.await;
        let _ = writer.await;
    }

    async fn on_text(&mut self, text: &str) {
        if text.len() > self.app.config.max_frame_bytes {
            let err = ErrorInfo::new(
                ErrorCode::FrameTooLarge,
                format!(
                    "frame of {} bytes is over the limit of {}",
                    text.len(),
                    self.app.config.max_frame_bytes
                ),
            );
            return self.reply_error(protocol::salvage_req(text), None, err);
        }
        let frame = match protocol::decode_client_frame(text) {
            Ok(frame) => frame,
            Err(err) => return self.reply_error(protocol::salvage_req(text), None, err),
        };
        if let ClientFrame::Auth {
            req,
            token,
            key,
            client_id,
        } = frame
        {
            return self.on_auth(req, token, key, client_id);
        }
        let Some(principal) = self.principal.clone() else {
            self.outbox.close(ErrorInfo::new(
                ErrorCode::Unauthorized,
                "authenticate first: send an auth frame with a token or key",
            ));
            return;
        };
        match frame {
            ClientFrame::Attach {
                req,
                channel,
                from,
                rewind,
            } => {
                if let Err(err) = self
                    .attach(&principal, req, &channel, from.as_deref(), rewind)
                    .await
                {
                    self.reply_error(req, Some(&channel), err);
                }
            }
            ClientFrame::Detach { req, channel } => match protocol::channel(&channel) {
                Ok(name) => {
                    if let Some(task) = self.attachments.remove(&name) {
                        task.abort();
                        let _ = task.await;
                    }
                    self.outbox.send(
                        ServerFrame::Detached {
                            req,
                            channel: &channel,
                        }
                        .encode(),
                    );
                }
                Err(err) => self.reply_error(req, Some(&channel), err),
            },
            ClientFrame::Ping { req } => {
                self.queue_reply(Pending::Ready(ServerFrame::Pong { req }.encode()))
                    .await;
            }
            mutation => self.submit(&principal, mutation).await,
        }
    }

    /// Time left on the credential, if it expires.
    fn expires_in(&self) -> Option<std::time::Duration> {
        let exp = self.principal.as_ref()?.expires_at?;
        Some(std::time::Duration::from_millis(
            exp.saturating_mul(1000).saturating_sub(now_ms()),
        ))
    }

    /// First authentication, or renewal. A renewal must keep the identity;
    /// attachments the new credential no longer allows are detached.
    fn on_auth(
        &mut self,
        req: Option<u64>,
        token: Option<String>,
        key: Option<String>,
        client_id: Option<String>,
    ) {
        let credentials = match (token, key) {
            (Some(token), _) => Ok(Credentials::Token(token)),
            (None, Some(key)) => Credentials::key(&key),
            (None, None) => Err(ErrorInfo::new(
                ErrorCode::BadRequest,
                "auth needs a token or a key",
            )),
        };
        let wanted = client_id.or_else(|| self.identity.client_id.clone());
        let principal = match credentials.and_then(|c| self.app.auth.authenticate(&c, wanted)) {
            Ok(principal) => principal,
            Err(err) => {
                // A failed first authentication ends the connection; a
                // failed renewal leaves the current credential in place.
                if self.principal.is_none() {
                    self.outbox.close(err);
                } else {
                    self.reply_error(req, None, err);
                }
                return;
            }
        };
        if self.principal.is_some() && principal.client_id != self.identity.client_id {
            let err = ErrorInfo::new(
                ErrorCode::Forbidden,
                "a renewed credential must keep the same client_id",
            );
            return self.reply_error(req, None, err);
        }
        let lost: Vec<ChannelName> = self
            .attachments
            .keys()
            .filter(|channel| !principal.allows(channel, Cap::Subscribe))
            .cloned()
            .collect();
        for channel in lost {
            if let Some(task) = self.attachments.remove(&channel) {
                task.abort();
            }
            let err = ErrorInfo::new(
                ErrorCode::Forbidden,
                format!("your new credential does not grant subscribe on {channel}"),
            );
            self.reply_error(None, Some(channel.as_str()), err);
            self.outbox.send(
                ServerFrame::Detached {
                    req: None,
                    channel: channel.as_str(),
                }
                .encode(),
            );
        }
        self.identity.client_id.clone_from(&principal.client_id);
        self.outbox.send(
            ServerFrame::Authorized {
                req,
                client_id: principal.client_id.as_deref(),
                expires_at: principal.expires_at,
            }
            .encode(),
        );
        self.principal = Some(principal);
    }

    async fn attach(
        &mut self,
        principal: &Principal,
        req: Option<u64>,
        channel: &str,
        from: Option<&str>,
        rewind: Option<usize>,
    ) -> Result<(), ErrorInfo> {
        let name = protocol::channel(channel)?;
        principal.require(&name, Cap::Subscribe)?;
        let from = from.map(protocol::serial).transpose()?;
        let rewind = rewind.unwrap_or(0);
        if rewind > MAX_REWIND {
            return Err(ErrorInfo::new(
                ErrorCode::InvalidParameter,
                format!("rewind must be at most {MAX_REWIND}"),
            ));
        }
        if let Some(previous) = self.attachments.remove(&name) {
            previous.abort();
            let _ = previous.await;
        } else if self.attachments.len() >= self.app.config.max_channels_per_connection {
            return Err(ErrorInfo::new(
                ErrorCode::TooManyChannels,
                format!(
                    "a connection may attach at most {} channels",
                    self.app.config.max_channels_per_connection
                ),
            ));
        }
        let subscription = self
            .app
            .engine
            .subscribe(name.clone(), Start { from, rewind });
        let task = tokio::spawn(attachment(subscription, self.outbox.clone(), req));
        self.attachments.insert(name, task);
        Ok(())
    }

    async fn submit(&mut self, principal: &Principal, frame: ClientFrame) {
        let (channel, req, op) = match protocol::operation(frame) {
            Ok(parts) => parts,
            Err(err) => {
                return self
                    .queue_reply(Pending::Ready(protocol::error_frame(None, None, &err)))
                    .await;
            }
        };
        let pending = match self.authorize(principal, &channel, &op) {
            Ok((name, own_only)) => {
                match self
                    .app
                    .engine
                    .submit(name, op, &self.identity, own_only)
                    .await
                {
                    Ok(receipt) => Pending::Receipt(req, receipt),
                    Err(err) => Pending::Ready(protocol::error_frame(req, Some(&channel), &err)),
                }
            }
            Err(err) => {
                metrics::counter!("tether_client_errors_total").increment(1);
                Pending::Ready(protocol::error_frame(req, Some(&channel), &err))
            }
        };
        self.queue_reply(pending).await;
    }

    /// Validates the channel, the capability and the rate limit of a
    /// mutation; returns the channel and whether only the caller's own
    /// messages may be changed.
    fn authorize(
        &mut self,
        principal: &Principal,
        channel: &str,
        op: &tether_core::Operation,
    ) -> Result<(ChannelName, bool), ErrorInfo> {
        let name = protocol::channel(channel)?;
        let own_only = principal.authorize(&name, op)?;
        if !self.bucket.try_take(now_ms()) {
            return Err(ErrorInfo::new(
                ErrorCode::RateLimited,
                format!(
                    "more than {} operations per second (bursts of {}); slow down",
                    self.app.config.publish_rate_per_sec, self.app.config.publish_burst
                ),
            ));
        }
        Ok((name, own_only))
    }

    /// Replies that must keep their place behind earlier acks.
    async fn queue_reply(&self, pending: Pending) {
        // Fails only when the ack loop has ended, i.e. the connection closes.
        let _ = self.acks.send(pending).await;
    }

    fn reply_error(&self, req: Option<u64>, channel: Option<&str>, err: ErrorInfo) {
        metrics::counter!("tether_client_errors_total").increment(1);
        self.outbox.send(protocol::error_frame(req, channel, &err));
    }
}

/// Sends acks (and errors) in the order operations were submitted.
async fn ack_loop(mut pending: mpsc::Receiver<Pending>, outbox: Outbox) {
    while let Some(item) = pending.recv().await {
        let frame = match item {
            Pending::Ready(frame) => frame,
            Pending::Receipt(req, receipt) => match receipt.await {
                Ok(ack) => protocol::ack_frame(req, &ack),
                Err(err) => protocol::error_frame(req, None, &crate::engine::store_error(err)),
            },
        };
        if !outbox.deliver(frame).await {
            return;
        }
    }
}

/// Forwards one subscription's deliveries into the outbox.
async fn attachment(mut subscription: Subscription, outbox: Outbox, mut req: Option<u64>) {
    metrics::gauge!("tether_attachments").increment(1.0);
    let _guard = GaugeGuard("tether_attachments");
    loop {
        let frame = match subscription.next().await {
            Ok(delivery) => {
                let req = match delivery {
                    Delivery::Attached { .. } => req.take(),
                    _ => None,
                };
                if matches!(delivery, Delivery::Event { .. }) {
                    metrics::counter!("tether_messages_delivered_total").increment(1);
                }
                protocol::ws_delivery(subscription.channel(), req, &delivery)
            }
            Err(err) => {
                outbox.send(protocol::error_frame(
                    req,
                    Some(subscription.channel().as_str()),
                    &err,
                ));
                return;
            }
        };
        if !outbox.deliver(frame).await {
            return;
        }
    }
}

/// Decrements a gauge when a task ends, however it ends (including abort).
struct GaugeGuard(&'static str);

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        metrics::gauge!(self.0).decrement(1.0);
    }
}

/// A connection id: random, URL-safe, unguessable.
fn new_connection_id() -> String {
    format!("c_{:032x}", rand::random::<u128>())
}
