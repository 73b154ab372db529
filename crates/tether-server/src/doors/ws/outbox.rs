//! The bounded outbound queue of one WebSocket connection, and the task that
//! drains it into the socket.
//!
//! The queue is bounded. Control frames (heartbeats, errors) are offered
//! with `try_send`; a full queue means the client is too slow. Deliveries
//! and acks wait for room ([`Outbox::deliver`]), but only for a bounded
//! time: a burst larger than the queue is absorbed while the socket drains,
//! and a client that stops reading is closed with `TooSlow` after the grace
//! period. Waiting here never holds up anyone else: each attachment has its
//! own task, and while it waits its broadcast receiver lags and later
//! catches up from the log. Memory per connection stays bounded whatever the
//! client does.

use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use bytes::Bytes;
use futures::SinkExt;
use futures::stream::SplitSink;
use tether_core::{ErrorCode, ErrorInfo};
use tokio::sync::{mpsc, watch};

use crate::protocol::error_frame;

/// How long a closing connection gets to flush its close frame.
const CLOSE_GRACE: Duration = Duration::from_secs(10);

/// Why and how a connection is being closed.
pub(crate) type CloseReason = Option<ErrorInfo>;

/// The sending side, cloned into every producer of a connection.
#[derive(Clone)]
pub(crate) struct Outbox {
    frames: mpsc::Sender<Message>,
    close: watch::Sender<CloseReason>,
    /// How long a delivery may wait for room before the client is too slow.
    patience: Duration,
}

impl Outbox {
    /// A queue of `capacity` frames and the writer that drains it.
    pub(crate) fn new(
        capacity: usize,
        patience: Duration,
        sink: SplitSink<WebSocket, Message>,
    ) -> (Outbox, Writer) {
        let (frames, rx) = mpsc::channel(capacity);
        let (close, close_rx) = watch::channel(None);
        let writer = Writer {
            sink,
            frames: rx,
            close: close_rx,
        };
        (
            Outbox {
                frames,
                close,
                patience,
            },
            writer,
        )
    }

    /// Queues a JSON frame, waiting for room up to the patience period.
    /// Returns `false` if the connection is closing (or now closes because
    /// the client is too slow).
    pub(crate) async fn deliver(&self, frame: Bytes) -> bool {
        let Ok(text) = Utf8Bytes::try_from(frame) else {
            return false;
        };
        match tokio::time::timeout(self.patience, self.frames.send(Message::Text(text))).await {
            Ok(Ok(())) => true,
            Ok(Err(_)) => false,
            Err(_) => {
                self.too_slow();
                false
            }
        }
    }

    fn too_slow(&self) {
        metrics::counter!("tether_slow_consumer_disconnects_total").increment(1);
        self.close(ErrorInfo::new(
            ErrorCode::TooSlow,
            "the connection did not read its messages fast enough; resume from your last position",
        ));
    }

    /// Queues a JSON frame. Returns `false` if the connection is closing;
    /// a full queue closes it with `TooSlow`.
    pub(crate) fn send(&self, frame: Bytes) -> bool {
        match Utf8Bytes::try_from(frame) {
            Ok(text) => self.send_message(Message::Text(text)),
            Err(_) => false,
        }
    }

    /// Queues a WebSocket ping.
    pub(crate) fn ping(&self) -> bool {
        self.send_message(Message::Ping(Bytes::new()))
    }

    fn send_message(&self, message: Message) -> bool {
        match self.frames.try_send(message) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.too_slow();
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }

    /// Closes the connection with an error frame and the matching close
    /// code. The first reason wins.
    pub(crate) fn close(&self, reason: ErrorInfo) {
        self.close.send_if_modified(|current| {
            if current.is_some() {
                return false;
            }
            *current = Some(reason);
            true
        });
    }

    /// Closes the connection *after* everything already queued: the error
    /// frame and the close go through the queue behind the last ack, so a
    /// shutting-down connection's replies all reach the client first. If
    /// the queue stays full past the patience period the client is too slow
    /// and is closed without them.
    pub(crate) async fn close_after_queued(&self, reason: ErrorInfo) {
        let (error, close) = goodbye(&reason);
        let queue = async {
            if let Some(error) = error {
                self.frames.send(error).await.ok()?;
            }
            self.frames.send(close).await.ok()
        };
        if tokio::time::timeout(self.patience, queue)
            .await
            .ok()
            .flatten()
            .is_none()
        {
            self.close(reason);
        }
    }

    /// Resolves when the connection is closing.
    pub(crate) async fn closing(&self) {
        closing(&mut self.close.subscribe()).await;
    }
}

/// Drains the queue into the socket; ends when the connection closes.
pub(crate) struct Writer {
    sink: SplitSink<WebSocket, Message>,
    frames: mpsc::Receiver<Message>,
    close: watch::Receiver<CloseReason>,
}

impl Writer {
    /// Runs until the queue closes or a close is requested.
    pub(crate) async fn run(mut self) {
        loop {
            let frame = tokio::select! {
                biased;
                _ = closing(&mut self.close) => break,
                frame = self.frames.recv() => frame,
            };
            let Some(frame) = frame else { break };
            // Write everything already queued, then flush once: one
            // syscall for a burst instead of one per frame. A queued close
            // (`close_after_queued`) is the last frame written.
            let (sink, frames) = (&mut self.sink, &mut self.frames);
            let write = async move {
                let mut last = matches!(frame, Message::Close(_));
                sink.feed(frame).await?;
                for _ in 1..64 {
                    if last {
                        break;
                    }
                    match frames.try_recv() {
                        Ok(next) => {
                            last = matches!(next, Message::Close(_));
                            sink.feed(next).await?;
                        }
                        Err(_) => break,
                    }
                }
                sink.flush().await.map(|()| last)
            };
            tokio::select! {
                biased;
                _ = closing(&mut self.close) => break,
                sent = write => match sent {
                    Ok(false) => {}
                    Ok(true) => {
                        let _ = tokio::time::timeout(CLOSE_GRACE, self.sink.close()).await;
                        return;
                    }
                    Err(_) => return,
                },
            }
        }
        let reason = self.close.borrow().clone();
        let goodbye = async {
            if let Some(reason) = reason {
                let (error, close) = goodbye(&reason);
                if let Some(error) = error {
                    self.sink.send(error).await?;
                }
                self.sink.send(close).await?;
            }
            self.sink.close().await
        };
        let _ = tokio::time::timeout(CLOSE_GRACE, goodbye).await;
    }
}

/// The error frame and the close frame (4xxx code) that end a connection.
fn goodbye(reason: &ErrorInfo) -> (Option<Message>, Message) {
    let error = Utf8Bytes::try_from(error_frame(None, None, reason))
        .ok()
        .map(Message::Text);
    let code = ErrorCode::from_code(reason.code).map_or(4000, ErrorCode::close_code);
    let close = Message::Close(Some(CloseFrame {
        code,
        reason: Utf8Bytes::from(truncate(&reason.message, 120)),
    }));
    (error, close)
}

/// Resolves once a close is requested (or every sender is gone, which means
/// closing as well).
async fn closing(rx: &mut watch::Receiver<CloseReason>) {
    let _ = rx.wait_for(Option::is_some).await;
}

/// Close reasons are limited to 123 bytes by the WebSocket protocol.
fn truncate(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}
