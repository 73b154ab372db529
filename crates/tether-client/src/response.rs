//! Streaming a response into one message, and the interrupt convention.
//!
//! A response is one message created with data `""` and
//! `extras.stream = "streaming"`; each [`ResponseStream::append`] is an
//! append; the last append sets `extras.stream` to `"complete"` or
//! `"cancelled"`. Readers see one message growing (late joiners get it
//! whole), and history holds it as one message.

use std::collections::VecDeque;
use std::sync::Arc;

use futures::{FutureExt, StreamExt};
use serde_json::{Map, Value};
use tether_core::{Action, AppendOp, ErrorCode, Message, NewMessage, Serial};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::channel::{AckFuture, Channel, Event, Subscription};
use crate::error::Error;
use crate::rest::Ack;

/// The name of a message asking a response to stop.
pub(crate) const CANCEL_NAME: &str = "cancel";
/// The extras key holding a response's stream status.
pub const STREAM_KEY: &str = "stream";
/// `extras.stream` while a response is being written.
pub const STREAMING: &str = "streaming";
/// `extras.stream` of a finished response.
pub const COMPLETE: &str = "complete";
/// `extras.stream` of a response stopped before its end.
pub const CANCELLED: &str = "cancelled";

/// A response being streamed into one message. Created by
/// [`Channel::stream_response`].
///
/// Appends are pipelined: [`ResponseStream::append`] queues and returns at
/// once; a failure of an earlier append is reported by a later call, and
/// [`ResponseStream::complete`] waits for every acknowledgement.
///
/// When a client asks the response to stop (see the crate docs), the
/// server marks it `cancelled` and refuses further appends with `40901`.
/// The stream then counts as cancelled: [`ResponseStream::is_cancelled`]
/// turns true, later appends are dropped instead of failing, and
/// [`ResponseStream::finish`] or [`ResponseStream::cancel`] end it
/// without an error.
///
/// Dropping a stream that was neither completed nor cancelled marks it
/// cancelled, so readers do not wait forever on a response whose writer
/// gave up (an error, a panic).
///
/// ```no_run
/// # async fn run(channel: tether_client::Channel) -> Result<(), tether_client::Error> {
/// let mut response = channel
///     .stream_response("response", serde_json::json!({"role": "assistant"}))
///     .await?;
/// for token in ["Hel", "lo", "!"] {
///     if response.is_cancelled() {
///         break;
///     }
///     response.append(token)?;
/// }
/// response.finish().await?; // complete, or cancelled if asked to stop
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct ResponseStream {
    channel: Channel,
    serial: Serial,
    extras: Map<String, Value>,
    pending: VecDeque<AckFuture>,
    failed: Option<Error>,
    /// Set by the watcher when a cancel request is seen, or here when the
    /// server refuses an append because the response has ended.
    cancel: Arc<watch::Sender<bool>>,
    watcher: JoinHandle<()>,
    finished: bool,
}

impl ResponseStream {
    pub(crate) async fn start(
        channel: Channel,
        name: &str,
        extras: Value,
    ) -> Result<ResponseStream, Error> {
        let mut extras = match extras {
            Value::Object(map) => map,
            Value::Null => Map::new(),
            other => {
                return Err(Error::InvalidArgument(format!(
                    "extras must be a JSON object, not {other}"
                )));
            }
        };
        extras.insert(STREAM_KEY.into(), STREAMING.into());
        // Attached before the message exists, so no cancel request for it
        // can be missed.
        let subscription = channel.subscribe().await?;
        let ack = channel
            .publish(NewMessage {
                name: Some(name.to_owned()),
                data: Value::String(String::new()),
                extras: Some(extras.clone()),
                id: None,
            })
            .await?;
        let cancel = Arc::new(watch::Sender::new(false));
        let watcher = tokio::spawn(watch_cancel(subscription, ack.serial, cancel.clone()));
        Ok(ResponseStream {
            channel,
            serial: ack.serial,
            extras,
            pending: VecDeque::new(),
            failed: None,
            cancel,
            watcher,
            finished: false,
        })
    }

    /// The response message's serial (what a cancel request targets).
    pub fn serial(&self) -> Serial {
        self.serial
    }

    /// Queues `fragment`. Returns the error of an earlier append, if one
    /// failed (the message was deleted, grew over the size limit...).
    /// Once the response is cancelled, appends are dropped.
    pub fn append(&mut self, fragment: &str) -> Result<(), Error> {
        self.check()?;
        if !self.is_cancelled() {
            self.pending
                .push_back(self.channel.append(self.serial, fragment));
        }
        Ok(())
    }

    /// Waits until every append so far is acknowledged.
    pub async fn flush(&mut self) -> Result<(), Error> {
        self.check()?;
        while let Some(ack) = self.pending.pop_front() {
            let result = ack.await;
            self.note(result)?;
        }
        Ok(())
    }

    /// Marks the response complete and waits for every acknowledgement.
    /// Fails with code `40901` if it was cancelled meanwhile.
    pub async fn complete(self) -> Result<Ack, Error> {
        self.end_with(COMPLETE, false).await
    }

    /// Marks the response cancelled (what a writer does after
    /// [`ResponseStream::cancelled`]) and waits for every acknowledgement.
    /// A response the server already ended is left as it is.
    pub async fn cancel(self) -> Result<Ack, Error> {
        self.end_with(CANCELLED, true).await
    }

    /// Ends the response the way a writer loop usually wants: cancelled if
    /// a client asked it to stop (even at the last moment), complete
    /// otherwise.
    pub async fn finish(self) -> Result<Ack, Error> {
        let status = if self.is_cancelled() {
            CANCELLED
        } else {
            COMPLETE
        };
        self.end_with(status, true).await
    }

    /// Resolves when a client asked this response to stop (see the crate
    /// docs for the convention). Never resolves otherwise.
    pub async fn cancelled(&self) {
        let mut cancel = self.cancel.subscribe();
        // The sender lives as long as `self`, so this cannot fail.
        let _ = cancel.wait_for(|c| *c).await;
    }

    /// Whether a client asked this response to stop.
    pub fn is_cancelled(&self) -> bool {
        *self.cancel.borrow()
    }

    /// Surfaces the first failed acknowledgement among those already in.
    fn check(&mut self) -> Result<(), Error> {
        if let Some(err) = &self.failed {
            return Err(err.clone());
        }
        while let Some(front) = self.pending.front_mut() {
            let Some(result) = front.now_or_never() else {
                break;
            };
            self.pending.pop_front();
            self.note(result)?;
        }
        Ok(())
    }

    /// Records an append's outcome: "the response has ended" means it was
    /// cancelled; anything else failing is kept and reported.
    fn note(&mut self, result: Result<Ack, Error>) -> Result<(), Error> {
        match result {
            Ok(_) => Ok(()),
            Err(err) if err.code() == Some(ErrorCode::StreamEnded) => {
                self.cancel.send_replace(true);
                Ok(())
            }
            Err(err) => {
                self.failed.get_or_insert_with(|| err.clone());
                Err(err)
            }
        }
    }

    fn final_append(&mut self, status: &str) -> AckFuture {
        self.finished = true;
        let mut extras = self.extras.clone();
        extras.insert(STREAM_KEY.into(), status.into());
        // Append's extras replace the message's, hence the whole map.
        self.channel.append_with(
            self.serial,
            AppendOp {
                data: String::new(),
                name: None,
                extras: Some(extras),
            },
        )
    }

    /// Ends with `status`; `ended_is_fine`: a response the server already
    /// ended (cancelled by request) counts as success.
    async fn end_with(mut self, status: &str, ended_is_fine: bool) -> Result<Ack, Error> {
        let last = self.final_append(status);
        for ack in std::mem::take(&mut self.pending) {
            let result = ack.await;
            // The first failure is kept in `failed`.
            let _ = self.note(result);
        }
        if let Some(err) = self.failed.take() {
            return Err(err);
        }
        match last.await {
            // Ended already (a cancel request): report where it stands.
            Err(err) if err.code() == Some(ErrorCode::StreamEnded) && ended_is_fine => {
                self.cancel.send_replace(true);
                let current = self.channel.message(self.serial).await?;
                Ok(Ack {
                    serial: self.serial,
                    version_serial: current.version.serial,
                    duplicate: true,
                })
            }
            other => other,
        }
    }
}

impl Drop for ResponseStream {
    fn drop(&mut self) {
        self.watcher.abort();
        if !self.finished {
            // Queued now, sent by the driver; nobody waits for the ack.
            drop(self.final_append(CANCELLED));
        }
    }
}

/// Whether `message` asks the response `target` to stop: a message named
/// `cancel` whose `extras.target` (or, failing that, data) is the
/// response's serial.
pub(crate) fn is_cancel_for(message: &Message, target: &str) -> bool {
    if message.name.as_deref() != Some(CANCEL_NAME) || message.action == Action::Delete {
        return false;
    }
    let by_extras = message
        .extras
        .as_ref()
        .and_then(|e| e.get("target"))
        .and_then(Value::as_str);
    by_extras == Some(target) || message.data.as_str() == Some(target)
}

async fn watch_cancel(
    mut events: Subscription,
    serial: Serial,
    cancelled: Arc<watch::Sender<bool>>,
) {
    let target = serial.to_string();
    while let Some(event) = events.next().await {
        let Event::Message(message) = event else {
            continue;
        };
        if is_cancel_for(&message, &target) {
            cancelled.send_replace(true);
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn message(value: Value) -> Message {
        let mut base = json!({
            "serial": "1764151200000-0000000000000009",
            "id": "x",
            "timestamp": 1,
            "action": "create",
            "version": {"serial": "1764151200000-0000000000000009", "timestamp": 1},
        });
        if let (Some(base), Some(extra)) = (base.as_object_mut(), value.as_object()) {
            base.extend(extra.clone());
        }
        serde_json::from_value(base).expect("a message")
    }

    #[test]
    fn recognises_cancel_requests() {
        let target = "1764151200000-0000000000000003";
        assert!(is_cancel_for(
            &message(json!({"name": "cancel", "extras": {"target": target}})),
            target
        ));
        assert!(is_cancel_for(
            &message(json!({"name": "cancel", "data": target})),
            target
        ));
        assert!(!is_cancel_for(
            &message(json!({"name": "cancel", "data": "1764151200000-0000000000000004"})),
            target
        ));
        assert!(!is_cancel_for(
            &message(json!({"name": "prompt", "data": target})),
            target
        ));
        assert!(!is_cancel_for(
            &message(json!({"name": "cancel", "data": target, "action": "delete"})),
            target
        ));
    }
}
