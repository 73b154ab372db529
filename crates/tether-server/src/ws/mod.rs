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
use axum::response::Response;
use bytes::Bytes;
use futures::StreamExt;
use serde::Deserialize;
use tether_core::{ChannelName, ErrorCode, ErrorInfo};
use tether_store::Receipt;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::app::App;
use crate::engine::{Delivery, Identity, Start, Subscription};
use crate::protocol::{self, AnnouncedLimits, ClientFrame, MAX_REWIND, ServerFrame};

pub mod outbox;

use outbox::Outbox;

/// Mutations in flight per connection before the reader waits for acks.
const ACK_QUEUE: usize = 4096;

/// Query parameters of `GET /ws`.
#[derive(Debug, Default, Deserialize)]
pub struct WsQuery {
    /// Identity to act as. Only honoured until authentication lands; see
    /// docs/security.md.
    pub client_id: Option<String>,
}

/// `GET /ws`: upgrades to a WebSocket connection.
pub async fn upgrade(
    State(app): State<App>,
    Query(query): Query<WsQuery>,
    ws: WebSocketUpgrade,
) -> Response {
    // The library limit is a backstop well above ours, so that a frame a
    // bit over the limit gets a clear error and the connection survives.
    let hard_limit = app.config.max_frame_bytes.saturating_mul(4);
    ws.max_message_size(hard_limit)
        .max_frame_size(hard_limit)
        .on_upgrade(move |socket| Connection::run(app, socket, query))
}

/// What the ack loop awaits, in submission order.
enum Pending {
    Receipt(Option<u64>, Receipt),
    Ready(Bytes),
}

struct Connection {
    app: App,
    outbox: Outbox,
    identity: Identity,
    attachments: HashMap<ChannelName, JoinHandle<()>>,
    acks: mpsc::Sender<Pending>,
}

impl Connection {
    async fn run(app: App, socket: WebSocket, query: WsQuery) {
        let (sink, mut stream) = socket.split();
        let (outbox, writer) = Outbox::new(app.config.outbound_queue, sink);
        let writer = tokio::spawn(writer.run());
        let (acks, ack_rx) = mpsc::channel(ACK_QUEUE);
        let ack_loop = tokio::spawn(ack_loop(ack_rx, outbox.clone()));
        let connection_id = new_connection_id();
        let mut conn = Connection {
            identity: Identity {
                client_id: query.client_id,
                connection_id: Some(connection_id.clone()),
            },
            outbox,
            attachments: HashMap::new(),
            acks,
            app,
        };
        metrics::gauge!("tether_connections").increment(1.0);
        conn.outbox.send(
            ServerFrame::Connected {
                protocol: protocol::PROTOCOL_VERSION,
                connection_id: &connection_id,
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
            tokio::select! {
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
        match frame {
            ClientFrame::Attach {
                req,
                channel,
                from,
                rewind,
            } => {
                if let Err(err) = self.attach(req, &channel, from.as_deref(), rewind).await {
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
            mutation => self.submit(mutation).await,
        }
    }

    async fn attach(
        &mut self,
        req: Option<u64>,
        channel: &str,
        from: Option<&str>,
        rewind: Option<usize>,
    ) -> Result<(), ErrorInfo> {
        let name = protocol::channel(channel)?;
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

    async fn submit(&mut self, frame: ClientFrame) {
        let (channel, req, op) = match protocol::operation(frame) {
            Ok(parts) => parts,
            Err(err) => {
                return self
                    .queue_reply(Pending::Ready(protocol::error_frame(None, None, &err)))
                    .await;
            }
        };
        let pending = match protocol::channel(&channel) {
            Ok(name) => match self.app.engine.submit(name, op, &self.identity).await {
                Ok(receipt) => Pending::Receipt(req, receipt),
                Err(err) => Pending::Ready(protocol::error_frame(req, Some(&channel), &err)),
            },
            Err(err) => Pending::Ready(protocol::error_frame(req, Some(&channel), &err)),
        };
        self.queue_reply(pending).await;
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
        if !outbox.send(frame) {
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
        if !outbox.send(frame) {
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
