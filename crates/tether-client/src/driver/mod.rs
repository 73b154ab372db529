//! The driver: one task per client that owns the WebSocket.
//!
//! Handles talk to it through one command queue, so everything a client
//! sends leaves in the order it was asked for. The driver:
//! - connects ([`connect`]), and reconnects with backoff ([`crate::options`]) when the
//!   connection drops or the server goes quiet;
//! - on each new connection, confirms appends that may have been applied
//!   just before the drop ([`ops`]), re-attaches every channel from its
//!   last position ([`attachments`]) and resends what was not
//!   acknowledged;
//! - matches replies to requests by `req` and folds events into views.
//!
//! It never blocks on a subscriber: events go to unbounded per-subscriber
//! queues. Reading the socket is what keeps the server from deciding we
//! are too slow.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use tether_core::{AppendOp, ChannelName, ErrorCode, ErrorInfo, ORIGIN, Operation};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, tungstenite};

use crate::channel::{ChannelShared, Continuity, Event, SubscribeOptions};
use crate::client::{ConnectionState, Shared};
use crate::error::{Error, root_cause};
use crate::options::{Backoff, STABLE_AFTER};
use crate::rest::{Ack, Rest};
use crate::wire::{Hello, Incoming, Outgoing};

mod attachments;
mod connect;
mod ops;
mod pace;

use attachments::Attachments;
use connect::close_reason;
pub(crate) use connect::open;
use ops::OpQueue;
pub(crate) use ops::PendingOp;
use pace::Pace;

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Used when the server does not announce its intervals.
const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(15);
const DEFAULT_IDLE: Duration = Duration::from_secs(45);
/// Commands handled before the socket is flushed, so a burst of pipelined
/// appends leaves in few writes.
const COMMAND_BATCH: usize = 512;
/// How long a deliberate close waits for the server to finish reading.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

/// What handles ask of the driver.
#[derive(Debug)]
pub(crate) enum Command {
    Op(PendingOp),
    Subscribe {
        channel: ChannelName,
        shared: Arc<ChannelShared>,
        options: SubscribeOptions,
        id: u64,
        events: mpsc::UnboundedSender<Event>,
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
            pace: Pace::new(Default::default()),
            paced: false,
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
            self.ops.disconnected();
            self.channels.disconnected();
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
            Command::Op(op) => self.ops.push(op),
            Command::Subscribe {
                channel,
                shared,
                options,
                id,
                events,
                ready,
            } => self
                .channels
                .subscribe(channel, shared, options, id, events, ready),
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
        self.pace = Pace::new(hello.limits);
        self.paced = false;
        self.set_state(ConnectionState::Connected {
            connection_id: hello.connection_id.clone(),
        });
        if let Err(end) = self.confirm_unacknowledged(&mut ws).await {
            return end;
        }
        let heartbeat = hello
            .heartbeat_ms
            .map_or(DEFAULT_HEARTBEAT, Duration::from_millis);
        let idle = hello
            .idle_timeout_ms
            .map_or(DEFAULT_IDLE, Duration::from_millis);
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
                        Some(Ok(WsMessage::Close(frame))) => return End::Lost(close_reason(frame)),
                        Some(Ok(_)) => {}
                        Some(Err(err)) => return End::Lost(root_cause(&err)),
                        None => return End::Lost("the connection was closed".into()),
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
                            self.close(&mut ws).await;
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
        let frame = match Incoming::decode(text) {
            Ok(frame) => frame,
            Err(err) => {
                tracing::error!(%err, "undecodable frame from the server; ignored");
                return None;
            }
        };
        match frame {
            Incoming::Message {
                channel,
                position,
                message,
            } => self
                .channels
                .on_message(&channel, position, *message, self.connected),
            Incoming::Ack {
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
            Incoming::Attached {
                req,
                channel,
                continuity,
                error,
            } => self.channels.on_attached(req, &channel, continuity, error),
            Incoming::Synced { channel, position } => self.channels.on_synced(&channel, position),
            Incoming::Error {
                req,
                channel,
                code,
                message,
            } => return self.on_error(req, channel, ErrorInfo { code, message }),
            Incoming::Connected(_)
            | Incoming::Ack { req: None, .. }
            | Incoming::Detached {}
            | Incoming::Pong {}
            | Incoming::Heartbeat
            | Incoming::Unknown => {}
        }
        None
    }

    fn on_error(
        &mut self,
        req: Option<u64>,
        channel: Option<String>,
        info: ErrorInfo,
    ) -> Option<End> {
        if let Some(req) = req {
            if let Some(op) = self.ops.take_inflight(req) {
                self.op_failed(op, info);
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

    fn op_failed(&mut self, op: PendingOp, info: ErrorInfo) {
        let already_deleted = op.resent
            && matches!(op.op, Operation::Delete { .. })
            && info.kind() == Some(ErrorCode::MessageDeleted);
        if already_deleted {
            // Our delete probably landed before the drop: confirm it from
            // the tombstone instead of reporting an error.
            tokio::spawn(confirm_delete(self.shared.rest.clone(), op, info));
        } else {
            op.resolve(Err(Error::Server(info)));
        }
    }

    /// Before resending appends that were in flight when the connection
    /// dropped, finds out which of them the server applied (see [`ops`]).
    ///
    /// First a barrier: one refused operation per channel concerned, sent
    /// on the new connection. The server has one writer that applies
    /// operations in the order they are queued and replies after commit,
    /// so once the barrier's reply is in, whatever the old connection got
    /// queued is committed and visible to the REST read that follows.
    /// TODO(connection-resume issue): the server's append dedupe makes this
    /// unnecessary.
    async fn confirm_unacknowledged(&mut self, ws: &mut Ws) -> Result<(), End> {
        let targets = self.ops.to_confirm();
        if targets.is_empty() {
            return Ok(());
        }
        let channels: BTreeSet<&ChannelName> = targets.iter().map(|(c, _)| c).collect();
        let barrier = AppendOp {
            data: String::new(),
            name: None,
            extras: None,
        };
        let mut waiting = BTreeSet::new();
        for channel in channels {
            let req = self.req();
            let frame = Outgoing::Append {
                req,
                channel: channel.as_str(),
                serial: ORIGIN,
                append: &barrier,
            };
            ws.feed(WsMessage::text(frame.encode()))
                .await
                .map_err(|e| End::Lost(root_cause(&e)))?;
            waiting.insert(req);
        }
        ws.flush().await.map_err(|e| End::Lost(root_cause(&e)))?;
        let deadline = tokio::time::Instant::now() + self.shared.options.connect_timeout;
        while !waiting.is_empty() {
            let frame = tokio::time::timeout_at(deadline, ws.next())
                .await
                .map_err(|_| End::Lost("no reply from the server while resuming".into()))?;
            match frame {
                Some(Ok(WsMessage::Text(text))) => {
                    if let Ok(
                        Incoming::Ack { req: Some(req), .. }
                        | Incoming::Error { req: Some(req), .. },
                    ) = Incoming::decode(&text)
                    {
                        waiting.remove(&req);
                    }
                }
                Some(Ok(WsMessage::Close(frame))) => return Err(End::Lost(close_reason(frame))),
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(End::Lost(root_cause(&e))),
                None => return Err(End::Lost("the connection was closed".into())),
            }
        }
        for (channel, serial) in targets {
            match self.shared.rest.message(channel.as_str(), serial).await {
                Ok(current) => {
                    let confirmed = self.ops.confirm(&channel, &current);
                    tracing::debug!(%channel, %serial, confirmed, "confirmed appends after reconnect");
                }
                // Gone (deleted, retention): resending reports the error.
                Err(Error::Server(_)) => {}
                Err(err) => {
                    return Err(End::Lost(format!(
                        "cannot check unacknowledged appends: {err}"
                    )));
                }
            }
        }
        Ok(())
    }

    /// Closes deliberately and waits (briefly) until the server has read
    /// everything we sent: its close reply, or the end of the stream, comes
    /// after it read our close frame, which follows every frame we sent.
    /// Replies arriving meanwhile are still handled, so fewer operations
    /// need confirming or resending afterwards.
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

/// Resolves a resent delete refused as "already deleted" from the tombstone.
async fn confirm_delete(rest: Rest, op: PendingOp, info: ErrorInfo) {
    let Some(target) = op.op.target() else {
        return op.resolve(Err(Error::Server(info)));
    };
    match rest.message(op.channel.as_str(), target).await {
        Ok(message) if message.action == tether_core::Action::Delete => op.resolve(Ok(Ack {
            serial: target,
            version_serial: message.version.serial,
            duplicate: true,
        })),
        _ => op.resolve(Err(Error::Server(info))),
    }
}
