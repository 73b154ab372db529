//! One LLM job: stream an upstream answer into one message.
//!
//! The message already exists (created by the handler, `stream:
//! "streaming"`). The job then
//! 1. watches the channel for a cancel request (the interrupt convention:
//!    a message named `cancel` whose `extras.target`, or `data`, is the
//!    response's serial), in its own task because a subscription must not
//!    be raced against timers;
//! 2. calls the upstream and appends each content delta. Appends are
//!    pipelined: submitted in order without waiting, their receipts awaited
//!    by a second task that reports the first refusal;
//! 3. ends the message with one update: `stream` = `complete`, `cancelled`
//!    or `error` (+ `error.message`), and `usage`.
//!
//! Every wait in step 2 is raced against cancel, the duration limit, a
//! refused append and server shutdown, so a job never outlives its reason
//! to run. The server may already have marked the response `cancelled`
//! (the engine does so right behind a cancel message); the store then
//! refuses a second status, and the job records only its usage.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::{Map, Value, json};
use tether_core::fold::STREAM_STATUS;
use tether_core::{Action, AppendOp, ChannelName, ErrorCode, ErrorInfo, Message, Operation};
use tether_core::{Serial, UpdateOp};
use tether_store::Receipt;
use tokio::sync::{mpsc, watch};
use tokio::time::Sleep;

use super::jobs::JobHandle;
use super::openai::{ChatRequest, Upstream, Usage};
use crate::engine::{Delivery, Engine, Identity, Start, Subscription, store_error};

/// Append receipts in flight before the job waits for the store: deep
/// enough that the store's group commit, not the job, sets the pace.
const RECEIPTS_IN_FLIGHT: usize = 1024;

/// Everything one job needs.
pub(crate) struct Job {
    /// The engine it writes through.
    pub engine: Engine,
    /// Where the model is.
    pub upstream: Upstream,
    /// What to ask it.
    pub request: ChatRequest,
    /// The registry entry (id, channel, serial, token count, cancel).
    pub handle: Arc<JobHandle>,
    /// Stamped on every operation.
    pub identity: Identity,
    /// See [`super::LlmConfig::max_duration_secs`].
    pub max_duration: Duration,
    /// Flips when the server shuts down.
    pub shutdown: watch::Receiver<bool>,
}

/// How a job ended.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Ending {
    /// The upstream finished the answer.
    Complete,
    /// A cancel request, or the message ended by someone else.
    Cancelled,
    /// The upstream failed, or a limit was hit; the reason is stored.
    Failed(String),
    /// The store refused an append (message deleted, too large, ended).
    Refused(ErrorInfo),
}

impl Ending {
    /// The `extras.stream` status this ending stores.
    pub(crate) fn status(&self) -> &'static str {
        match self {
            Ending::Complete => "complete",
            Ending::Cancelled => "cancelled",
            Ending::Failed(_) | Ending::Refused(_) => "error",
        }
    }
}

/// What a job stops for, besides the upstream ending.
struct Interrupts {
    cancel: watch::Receiver<bool>,
    deadline: Pin<Box<Sleep>>,
    max_duration: Duration,
    refused: watch::Receiver<Option<ErrorInfo>>,
    shutdown: watch::Receiver<bool>,
}

impl Interrupts {
    /// Runs `work` unless something stops the job first.
    async fn run<T>(&mut self, work: impl Future<Output = T>) -> Result<T, Ending> {
        tokio::select! {
            biased;
            () = flag(&mut self.cancel) => Err(Ending::Cancelled),
            err = first_refusal(&mut self.refused) => Err(Ending::Refused(err)),
            () = &mut self.deadline => Err(Ending::Failed(format!(
                "stopped at the max duration of {} s",
                self.max_duration.as_secs()
            ))),
            () = flag(&mut self.shutdown) => Err(Ending::Failed("the server shut down".into())),
            out = work => Ok(out),
        }
    }
}

impl Job {
    /// Runs the job to its end and stores the final status. Returns how
    /// it ended.
    pub(crate) async fn run(self) -> Ending {
        let handle = &self.handle;
        let watcher = tokio::spawn(watch_for_cancel(
            self.engine.subscribe(
                handle.channel.clone(),
                Start {
                    from: Some(handle.serial),
                    ..Start::default()
                },
            ),
            handle.serial,
            handle.cancel.clone(),
        ));
        let (refusal_tx, refused) = watch::channel(None);
        let (receipts, pending) = mpsc::channel(RECEIPTS_IN_FLIGHT);
        let acker = tokio::spawn(await_receipts(pending, refusal_tx));
        let mut interrupts = Interrupts {
            cancel: handle.cancel.subscribe(),
            deadline: Box::pin(tokio::time::sleep(self.max_duration)),
            max_duration: self.max_duration,
            refused,
            shutdown: self.shutdown.clone(),
        };
        let (ending, usage) = self.stream(&mut interrupts, &receipts).await;
        watcher.abort();
        let deltas = handle.tokens.load(Ordering::Relaxed);
        let usage = match usage {
            Some(usage) => serde_json::to_value(usage).unwrap_or(Value::Null),
            None => json!({ "completion_tokens": deltas, "estimated": true }),
        };
        // Submitted before the appends' receipts are awaited: the store
        // applies it after them anyway, and a cancel should not wait for
        // an fsync before the status changes.
        let last = self.end(&ending, usage, receipts).await;
        let _ = acker.await;
        if let Err(err) = last {
            tracing::debug!(job = %handle.id, error = %err, "final status not stored");
        }
        ending
    }

    /// Step 2: the upstream's deltas as appends.
    async fn stream(
        &self,
        interrupts: &mut Interrupts,
        receipts: &mpsc::Sender<Receipt>,
    ) -> (Ending, Option<Usage>) {
        let mut usage = None;
        let mut chunks = match interrupts.run(self.upstream.open(&self.request)).await {
            Err(ending) => return (ending, usage),
            Ok(Err(err)) => return (Ending::Failed(err.to_string()), usage),
            Ok(Ok(chunks)) => chunks,
        };
        loop {
            let chunk = match interrupts.run(chunks.next()).await {
                Err(ending) => return (ending, usage),
                Ok(Err(err)) => return (Ending::Failed(err.to_string()), usage),
                Ok(Ok(None)) => return (Ending::Complete, usage),
                Ok(Ok(Some(chunk))) => chunk,
            };
            usage = chunk.usage.or(usage);
            if chunk.content.is_empty() {
                continue;
            }
            let op = Operation::Append {
                target: self.handle.serial,
                append: AppendOp {
                    data: chunk.content,
                    name: None,
                    extras: None,
                },
            };
            match self.submit(op).await {
                Ok(receipt) => {
                    self.handle.tokens.fetch_add(1, Ordering::Relaxed);
                    // The acker only stops after reporting a refusal,
                    // which the next `run` picks up.
                    let _ = receipts.send(receipt).await;
                }
                Err(err) => return (Ending::Refused(err), usage),
            }
        }
    }

    /// Step 3: one update with the status and usage. A response someone
    /// else already ended (a cancel, a deleted message) keeps its status;
    /// only the usage is added then.
    async fn end(
        &self,
        ending: &Ending,
        usage: Value,
        receipts: mpsc::Sender<Receipt>,
    ) -> Result<(), ErrorInfo> {
        drop(receipts);
        let mut patch = Map::new();
        patch.insert("usage".into(), usage);
        let already_ended =
            matches!(ending, Ending::Refused(err) if err.code == ErrorCode::StreamEnded.code());
        if !already_ended {
            let mut with_status = patch.clone();
            with_status.insert(STREAM_STATUS.into(), ending.status().into());
            match ending {
                Ending::Failed(reason) => {
                    with_status.insert("error".into(), json!({ "message": reason }));
                }
                Ending::Refused(err) => {
                    with_status.insert("error".into(), json!({ "message": err.message }));
                }
                Ending::Complete | Ending::Cancelled => {}
            }
            match self.update(with_status).await {
                Err(err) if err.code == ErrorCode::StreamEnded.code() => {}
                other => return other,
            }
        }
        self.update(patch).await
    }

    async fn update(&self, extras: Map<String, Value>) -> Result<(), ErrorInfo> {
        let op = Operation::Update {
            target: self.handle.serial,
            update: UpdateOp {
                extras: Some(extras),
                ..UpdateOp::default()
            },
        };
        let receipt = self.submit(op).await?;
        receipt.await.map(|_| ()).map_err(|e| store_error(e).into())
    }

    async fn submit(&self, op: Operation) -> Result<Receipt, ErrorInfo> {
        let channel: ChannelName = self.handle.channel.clone();
        // The job's own writes to the response it created (authorized
        // when the handler created it): server-internal.
        self.engine
            .submit_internal(channel, op, &self.identity)
            .await
            .map_err(ErrorInfo::from)
    }
}

/// Awaits receipts in submission order; reports the first refusal and
/// stops (later appends fail the same way or are moot).
async fn await_receipts(
    mut pending: mpsc::Receiver<Receipt>,
    refused: watch::Sender<Option<ErrorInfo>>,
) {
    while let Some(receipt) = pending.recv().await {
        if let Err(err) = receipt.await {
            refused.send_replace(Some(store_error(err).into()));
            return;
        }
    }
}

/// Step 1: flips `cancel` when the channel asks the response to stop, or
/// when the response is ended or deleted by someone else.
async fn watch_for_cancel(
    mut subscription: Subscription,
    serial: Serial,
    cancel: watch::Sender<bool>,
) {
    let target = serial.to_string();
    loop {
        match subscription.next().await {
            Ok(Delivery::Event { event, .. }) => {
                if stops(event.message(), serial, &target) {
                    cancel.send_replace(true);
                    return;
                }
            }
            Ok(_) => {}
            // Shutting down or the store failed: the job sees both itself.
            Err(_) => return,
        }
    }
}

/// Whether `message` (an event on the channel) stops the response `serial`.
pub(crate) fn stops(message: &Message, serial: Serial, target: &str) -> bool {
    if message.serial == serial {
        return message.action == Action::Delete || tether_core::fold::ended(message).is_some();
    }
    message.action != Action::Delete
        && tether_core::conventions::cancel_target(
            message.name.as_deref(),
            message.extras.as_ref(),
            &message.data,
        ) == Some(target)
}

/// Resolves once `flag` is true; never if its sender is gone.
async fn flag(flag: &mut watch::Receiver<bool>) {
    if flag.wait_for(|set| *set).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Resolves with the first refused append; never if there is none.
async fn first_refusal(refused: &mut watch::Receiver<Option<ErrorInfo>>) -> ErrorInfo {
    if let Ok(err) = refused.wait_for(Option::is_some).await
        && let Some(err) = err.clone()
    {
        return err;
    }
    std::future::pending().await
}
