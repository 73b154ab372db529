//! The driver: one task per client that owns the WebSocket.
//!
//! Handles talk to it through one command queue, so everything a client
//! sends leaves in the order it was asked for. The driver:
//! - connects ([`connect`]), and reconnects with backoff ([`crate::options`]) when the
//!   connection drops or the server goes quiet;
//! - on each new socket, resumes the connection it had ([`resume`]): the
//!   server keeps its presence and exactly-once state and re-attaches its
//!   channels; what was not acknowledged is re-sent with its original
//!   `seq` ([`ops`]). If the server refuses the resume, every channel is
//!   re-attached from its last position ([`attachments`]) and presence is
//!   entered again;
//! - renews the token on the live connection before it expires ([`renew`]);
//! - matches replies to requests by `req`, folds events into views and
//!   keeps presence sets.
//!
//! It never blocks on a subscriber: events go to unbounded per-subscriber
//! queues. Reading the socket is what keeps the server from deciding we
//! are too slow.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use serde_json::Value;
use tether_core::{ChannelName, ErrorCode, ErrorInfo};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, tungstenite};

use crate::channel::{ChannelShared, Continuity, SubscribeOptions};
use crate::client::{ConnectionState, Shared};
use crate::error::{Error, root_cause};
use crate::options::{Backoff, STABLE_AFTER};
use crate::presence::{Member, PresenceAction};
use crate::rest::Ack;
use crate::wire::{self, Hello};
use tether_protocol::{ClientFrame, ServerFrame};

mod attachments;
mod connect;
mod ops;
mod pace;
mod renew;
mod resume;

use attachments::Attachments;
pub(crate) use attachments::Sink;
pub(crate) use connect::open;
use connect::{close_code, close_reason};
use ops::OpQueue;
pub(crate) use ops::{PendingOp, Request};
use pace::Pace;
use renew::Renewal;
use resume::Resumable;

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Used when the server announces an interval of zero.
const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(15);
const DEFAULT_IDLE: Duration = Duration::from_secs(45);
/// Commands handled before the socket is flushed, so a burst of pipelined
/// appends leaves in few writes.
const COMMAND_BATCH: usize = 512;
/// How long a deliberate close waits for the server to finish reading.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

/// An interval the server announced in milliseconds; `fallback` for a
/// zero, which would make the heartbeat ticker spin.
fn interval_or(ms: u64, fallback: Duration) -> Duration {
    if ms == 0 {
        fallback
    } else {
        Duration::from_millis(ms)
    }
}

/// What handles ask of the driver.
#[derive(Debug)]
pub(crate) enum Command {
    Op(PendingOp),
    Subscribe {
        channel: ChannelName,
        shared: Arc<ChannelShared>,
        options: SubscribeOptions,
        id: u64,
        sink: Sink,
        ready: oneshot::Sender<Result<Continuity, Error>>,
    },
    Unsubscribe {
        channel: ChannelName,
        id: u64,
    },
    Reconnect,
    Close(oneshot::Sender<()>),
}

/// One unit of [`crate::ClientOptions::max_pending`], given back when the
/// operation is resolved (or dropped).
#[derive(Debug)]
pub(crate) struct Slot(Arc<Shared>);

impl Slot {
    pub(crate) fn take(shared: &Arc<Shared>, limit: usize) -> Result<Slot, Error> {
        if shared.pending.fetch_add(1, Ordering::AcqRel) >= limit {
            shared.pending.fetch_sub(1, Ordering::AcqRel);
            return Err(Error::Backlog { limit });
        }
        Ok(Slot(shared.clone()))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.pending.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Why a connection ended.
enum End {
    /// Dropped or failed; reconnect with backoff.
    Lost(String),
    /// [`crate::Client::reconnect`].
    Reconnect,
    /// The client is closing; answer `done` when finished.
    Close(Option<oneshot::Sender<()>>),
}

/// What a command asks of the connection.
enum Flow {
    Continue,
    Reconnect,
    Close(Option<oneshot::Sender<()>>),
}

/// The task behind a [`crate::Client`].
pub(crate) struct Driver {
    shared: Arc<Shared>,
    commands: mpsc::UnboundedReceiver<Command>,
    ops: OpQueue,
    channels: Attachments,
    backoff: Backoff,
    next_req: u64,
    connected: bool,
    /// Failed attempts since the last connection, for the state.
    attempts: u32,
    /// The last connection-level error the server sent, to explain a close.
    server_error: Option<String>,
    /// The send rate allowed on the current connection.
    pace: Pace,
    /// Operations are held back until the pace allows more.
    paced: bool,
    /// The connection to resume on the next socket.
    resumable: Option<Resumable>,
    /// Channels this connection asked to be present on, with the data, so
    /// presence can be entered again on a connection that is not resumed.
    entered: HashMap<ChannelName, Value>,
    /// Token renewal on the live connection.
    renewal: Renewal,
}

impl Driver {
    pub(crate) fn new(shared: Arc<Shared>, commands: mpsc::UnboundedReceiver<Command>) -> Driver {
        let backoff = Backoff::new(&shared.options);
        Driver {
            shared,
            commands,
            ops: OpQueue::default(),
            channels: Attachments::default(),
            backoff,
            next_req: 1,
            connected: false,
            attempts: 0,
            server_error: None,
            pace: Pace::default(),
            paced: false,
            resumable: None,
            entered: HashMap::new(),
            renewal: Renewal::default(),
        }
    }

    /// Runs until the client is closed, starting with an open connection.
    pub(crate) async fn run(mut self, first: (Ws, Hello)) {
        let mut next = Some(first);
        let mut reason = String::new();
        loop {
            let (ws, hello) = match next.take() {
                Some(open) => open,
                None => match self.reconnect(&mut reason).await {
                    Ok(open) => open,
                    Err(done) => return self.finish(done),
                },
            };
            let started = Instant::now();
            let end = self.session(ws, hello).await;
            self.connected = false;
            self.renewal.disconnected();
            if let Some(resumable) = &mut self.resumable {
                resumable.dropped_at.get_or_insert_with(Instant::now);
            }
            match end {
                End::Lost(why) => {
                    if started.elapsed() >= STABLE_AFTER {
                        self.backoff.reset();
                    }
                    reason = self.server_error.take().unwrap_or(why);
                    tracing::debug!(%reason, "connection lost");
                }
                End::Reconnect => {
                    self.backoff.reset();
                    reason = "reconnecting on request".into();
                }
                End::Close(done) => return self.finish(done),
            }
            self.ops.disconnected(&reason);
            self.channels.disconnected();
        }
    }

    fn set_state(&self, state: ConnectionState) {
        self.shared.state.send_replace(state);
    }

    fn req(&mut self) -> u64 {
        let req = self.next_req;
        self.next_req += 1;
        req
    }

    fn finish(&mut self, done: Option<oneshot::Sender<()>>) {
        self.ops.fail_all();
        self.channels.close();
        self.set_state(ConnectionState::Closed);
        if let Some(done) = done {
            let _ = done.send(());
        }
    }

    /// Waits out the backoff and connects, handling commands meanwhile.
    async fn reconnect(
        &mut self,
        reason: &mut String,
    ) -> Result<(Ws, Hello), Option<oneshot::Sender<()>>> {
        loop {
            let delay = self.backoff.next_delay();
            self.set_state(ConnectionState::Disconnected {
                reason: reason.clone(),
                retry_in: delay,
            });
            let sleep = tokio::time::sleep(delay);
            tokio::pin!(sleep);
            loop {
                tokio::select! {
                    _ = &mut sleep => break,
                    command = self.commands.recv() => match self.on_command(command) {
                        Flow::Continue => {}
                        Flow::Reconnect => break,
                        Flow::Close(done) => return Err(done),
                    },
                }
            }
            self.set_state(ConnectionState::Connecting {
                attempt: self.attempts,
            });
            let shared = self.shared.clone();
            let attempt = async move { open(&shared).await };
            tokio::pin!(attempt);
            loop {
                tokio::select! {
                    result = &mut attempt => match result {
                        Ok(open) => {
                            self.attempts = 0;
                            return Ok(open);
                        }
                        Err(err) => {
                            self.attempts = self.attempts.saturating_add(1);
                            *reason = err.to_string();
                            break;
                        }
                    },
                    command = self.commands.recv() => match self.on_command(command) {
                        Flow::Continue | Flow::Reconnect => {}
                        Flow::Close(done) => return Err(done),
                    },
                }
            }
        }
    }

    /// Applies a command to the driver's state; frames go out at the next
    /// flush. `None`: every handle is gone.
    fn on_command(&mut self, command: Option<Command>) -> Flow {
        let Some(command) = command else {
            return Flow::Close(None);
        };
        match command {
            Command::Op(op) => {
                if let Request::Presence { action, data } = &op.request {
                    match action {
                        PresenceAction::Leave => self.entered.remove(&op.channel),
                        PresenceAction::Enter | PresenceAction::Update => {
                            self.entered.insert(op.channel.clone(), data.clone())
                        }
                    };
                }
                self.ops.push(op);
            }
            Command::Subscribe {
                channel,
                shared,
                options,
                id,
                sink,
                ready,
            } => self
                .channels
                .subscribe(channel, shared, options, id, sink, ready),
            Command::Unsubscribe { channel, id } => {
                self.channels.unsubscribe(&channel, id, self.connected);
            }
            Command::Reconnect => return Flow::Reconnect,
            Command::Close(done) => return Flow::Close(Some(done)),
        }
        Flow::Continue
    }

    /// One connection, from `connected` to its end.
    async fn session(&mut self, mut ws: Ws, hello: Hello) -> End {
        self.connected = true;
        self.server_error = None;
        self.pace = Pace::announced(&hello.limits);
        self.paced = false;
        let connection_id = match self.handshake(&mut ws, &hello).await {
            Ok(id) => id,
            Err(end) => return end,
        };
        self.set_state(ConnectionState::Connected { connection_id });
        self.renewal.schedule(&self.shared.auth);
        let heartbeat = interval_or(hello.heartbeat_ms, DEFAULT_HEARTBEAT);
        let idle = interval_or(hello.idle_timeout_ms, DEFAULT_IDLE);
        let mut ticker =
            tokio::time::interval_at(tokio::time::Instant::now() + heartbeat, heartbeat);
        let mut last_inbound = Instant::now();
        loop {
            if let Err(err) = self.flush(&mut ws).await {
                return End::Lost(root_cause(&err));
            }
            tokio::select! {
                frame = ws.next() => {
                    last_inbound = Instant::now();
                    match frame {
                        Some(Ok(WsMessage::Text(text))) => {
                            if let Some(end) = self.on_frame(&text) {
                                return end;
                            }
                        }
                        Some(Ok(WsMessage::Close(frame))) => {
                            self.on_close(close_code(frame.as_ref()));
                            return End::Lost(close_reason(frame));
                        }
                        Some(Ok(_)) => {}
                        Some(Err(err)) => return End::Lost(root_cause(&err)),
                        None => return End::Lost("the connection was closed".into()),
                    }
                }
                token = self.renewal.next(&self.shared.auth) => {
                    let req = self.req();
                    self.renewal.sent(req);
                    let frame = ClientFrame::Auth {
                        req: Some(req),
                        token: Some(token),
                        key: None,
                        client_id: None,
                    }
                    .to_json();
                    if let Err(err) = ws.send(WsMessage::text(frame)).await {
                        return End::Lost(root_cause(&err));
                    }
                }
                command = self.commands.recv() => {
                    let mut flow = self.on_command(command);
                    for _ in 0..COMMAND_BATCH {
                        if !matches!(flow, Flow::Continue) {
                            break;
                        }
                        match self.commands.try_recv() {
                            Ok(command) => flow = self.on_command(Some(command)),
                            Err(_) => break,
                        }
                    }
                    match flow {
                        Flow::Continue => {}
                        Flow::Reconnect => {
                            // Dropped, not closed: a clean close would make
                            // the server forget the connection, and the
                            // point is to resume it.
                            let _ = ws.flush().await;
                            return End::Reconnect;
                        }
                        Flow::Close(done) => {
                            self.close(&mut ws).await;
                            return End::Close(done);
                        }
                    }
                }
                () = tokio::time::sleep(self.pace.retry_in()), if self.paced => {}
                _ = ticker.tick() => {
                    if last_inbound.elapsed() > idle {
                        return End::Lost(format!("nothing heard from the server for {idle:?}"));
                    }
                    // Counts as activity for the server's idle timeout.
                    if let Err(err) = ws.send(WsMessage::Ping(Default::default())).await {
                        return End::Lost(root_cause(&err));
                    }
                }
            }
        }
    }

    /// Sends pending detaches, attaches and operations in one write.
    async fn flush(&mut self, ws: &mut Ws) -> Result<(), tungstenite::Error> {
        if !self.channels.has_frames() && !self.ops.has_unsent() {
            return Ok(());
        }
        let mut next = self.next_req;
        let mut frames = self.channels.frames(&mut || {
            next += 1;
            next - 1
        });
        self.next_req = next;
        for frame in frames.drain(..) {
            ws.feed(WsMessage::text(frame)).await?;
        }
        self.paced = false;
        while self.ops.has_unsent() {
            if !self.pace.try_take() {
                self.paced = true;
                break;
            }
            let req = self.next_req;
            let Some(frame) = self.ops.send_next(req) else {
                break;
            };
            self.next_req += 1;
            ws.feed(WsMessage::text(frame)).await?;
        }
        ws.flush().await
    }

    /// Handles one frame; `Some` ends the connection.
    fn on_frame(&mut self, text: &str) -> Option<End> {
        let frame = match wire::decode(text) {
            Ok(Some(frame)) => frame,
            Ok(None) => {
                tracing::debug!("frame of a type this SDK does not know; ignored");
                return None;
            }
            Err(err) => {
                tracing::error!(%err, "undecodable frame from the server; ignored");
                return None;
            }
        };
        match frame {
            ServerFrame::Message {
                channel,
                position,
                message,
            } => self
                .channels
                .on_message(&channel, position, message.into_owned(), self.connected),
            ServerFrame::Ack {
                req: Some(req),
                serial,
                version_serial,
                duplicate,
            } => self.ops.acked(
                req,
                Ack {
                    serial,
                    version_serial,
                    duplicate,
                },
            ),
            ServerFrame::Attached {
                req,
                channel,
                continuity,
                error,
            } => self
                .channels
                .on_attached(req, &channel, continuity, error.map(Cow::into_owned)),
            ServerFrame::Synced { channel, position } => {
                self.channels.on_synced(&channel, position);
            }
            ServerFrame::Error {
                req,
                channel,
                code,
                message,
            } => {
                let info = ErrorInfo {
                    code,
                    message: message.into_owned(),
                };
                return self.on_error(req, channel.map(Cow::into_owned), info);
            }
            ServerFrame::Ok { req: Some(req) } => self.ops.done(req),
            ServerFrame::Authorized {
                req: Some(req),
                expires_at,
                ..
            } => self.renewal.authorized(req, expires_at, &self.shared.auth),
            ServerFrame::PresenceSync {
                channel,
                members,
                complete,
            } => {
                let members = members.into_iter().map(Member::from).collect();
                self.channels.on_presence_sync(&channel, members, complete);
            }
            ServerFrame::Presence {
                channel,
                action,
                member,
            } => self.channels.on_presence(&channel, action, member.into()),
            ServerFrame::Ephemeral { channel, message } => {
                self.channels.on_ephemeral(&channel, message.into());
            }
            ServerFrame::Connected { .. }
            | ServerFrame::Ack { req: None, .. }
            | ServerFrame::Ok { req: None }
            | ServerFrame::Authorized { req: None, .. }
            | ServerFrame::Resumed { .. }
            | ServerFrame::Detached { .. }
            | ServerFrame::Pong { .. }
            | ServerFrame::Heartbeat => {}
        }
        None
    }

    /// What a close code tells about the credential and the session.
    fn on_close(&mut self, code: u16) {
        if code == ErrorCode::TokenExpired.close_code() {
            self.shared.auth.invalidate();
        }
        if code == ErrorCode::ResumeFailed.close_code() {
            // Another socket resumed this connection: leave it to them.
            self.resumable = None;
        }
    }

    fn on_error(
        &mut self,
        req: Option<u64>,
        channel: Option<String>,
        info: ErrorInfo,
    ) -> Option<End> {
        if info.kind() == Some(ErrorCode::TokenExpired) {
            self.shared.auth.invalidate();
        }
        if let Some(req) = req {
            if let Some(op) = self.ops.take_inflight(req) {
                op.fail(Error::Server(info));
            } else if self.renewal.refused(req) {
                tracing::warn!(%info, "the server refused the renewed token; retrying shortly");
            } else if !self.channels.on_attach_error(req, &info) {
                tracing::debug!(req, %info, "error reply to an unknown request");
            }
            return None;
        }
        match channel {
            // The server ended a subscription (shutting down, store
            // failure): start over on a new connection, which resumes it.
            Some(channel) if self.channels.is_attached(&channel) => Some(End::Lost(format!(
                "the server ended the subscription of {channel}: {info}"
            ))),
            _ => {
                tracing::debug!(%info, "connection error from the server");
                self.server_error = Some(format!("error {}: {}", info.code, info.message));
                None
            }
        }
    }

    /// Closes deliberately and waits (briefly) until the server has read
    /// everything we sent: its close reply, or the end of the stream, comes
    /// after it read our close frame, which follows every frame we sent.
    /// Replies arriving meanwhile are still handled, so fewer operations
    /// fail as closed.
    async fn close(&mut self, ws: &mut Ws) {
        if ws.close(None).await.is_err() {
            return;
        }
        let _ = tokio::time::timeout(CLOSE_WAIT, async {
            while let Some(Ok(frame)) = ws.next().await {
                if let WsMessage::Text(text) = frame {
                    let _ = self.on_frame(&text);
                }
            }
        })
        .await;
    }
}
