//! Streaming a response into one message, and the interrupt convention.
//!
//! A response is one message created with data `""` and
//! `extras.stream = "streaming"`; each [`ResponseStream::append`] is an
//! append; the last append sets `extras.stream` to `"complete"` or
//! `"cancelled"`. Readers see one message growing (late joiners get it
//! whole), and history holds it as one message.

use std::collections::VecDeque;

use futures::{FutureExt, StreamExt};
use serde_json::{Map, Value};
use tether_core::{Action, AppendOp, Message, NewMessage, Serial};
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
///         response.cancel().await?;
///         return Ok(());
///     }
///     response.append(token)?;
/// }
/// response.complete().await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct ResponseStream {
    channel: Channel,
    serial: Serial,
    extras: Map<String, Value>,
    pending: VecDeque<AckFuture>,
    failed: Option<Error>,
    cancel: watch::Receiver<bool>,
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
        let (cancelled, cancel) = watch::channel(false);
        let watcher = tokio::spawn(watch_cancel(subscription, ack.serial, cancelled));
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
    pub fn append(&mut self, fragment: &str) -> Result<(), Error> {
        self.check()?;
        self.pending
            .push_back(self.channel.append(self.serial, fragment));
        Ok(())
    }

    /// Waits until every append so far is acknowledged.
    pub async fn flush(&mut self) -> Result<(), Error> {
        self.check()?;
        while let Some(ack) = self.pending.pop_front() {
            if let Err(err) = ack.await {
                self.failed = Some(err.clone());
                return Err(err);
            }
        }
        Ok(())
    }

    /// Marks the response complete and waits for every acknowledgement.
    pub async fn complete(self) -> Result<Ack, Error> {
        self.end_with(COMPLETE).await
    }

    /// Marks the response cancelled (what a writer does after
    /// [`ResponseStream::cancelled`]) and waits for every acknowledgement.
    pub async fn cancel(self) -> Result<Ack, Error> {
        self.end_with(CANCELLED).await
    }

    /// Ends the response the way a writer loop usually wants: cancelled if
    /// a client asked it to stop, complete otherwise.
    pub async fn finish(self) -> Result<Ack, Error> {
        if self.is_cancelled() {
            self.cancel().await
        } else {
            self.complete().await
        }
    }

    /// Resolves when a client asked this response to stop (see the crate
    /// docs for the convention). Never resolves otherwise.
    pub async fn cancelled(&self) {
        let mut cancel = self.cancel.clone();
        if cancel.wait_for(|c| *c).await.is_err() {
            std::future::pending::<()>().await;
        }
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
            match front.now_or_never() {
                None => break,
                Some(Ok(_)) => {
                    self.pending.pop_front();
                }
                Some(Err(err)) => {
                    self.pending.pop_front();
                    self.failed = Some(err.clone());
                    return Err(err);
                }
            }
        }
        Ok(())
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

    async fn end_with(mut self, status: &str) -> Result<Ack, Error> {
        let last = self.final_append(status);
        let mut first_error = self.failed.take();
        for ack in std::mem::take(&mut self.pending) {
            if let Err(err) = ack.await {
                first_error.get_or_insert(err);
            }
        }
        let last = last.await;
        match first_error {
            Some(err) => Err(err),
            None => last,
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

async fn watch_cancel(mut events: Subscription, serial: Serial, cancelled: watch::Sender<bool>) {
    let target = serial.to_string();
    while let Some(event) = events.next().await {
        if let Event::Message(message) = event {
            if is_cancel_for(&message, &target) {
                cancelled.send_replace(true);
                return;
            }
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
