//! Ending abandoned responses.
//!
//! A streamed response says `extras.stream: "streaming"` until its writer
//! stores a terminal status. A writer that dies (a crashed agent, a bridge
//! job cut off by a restart) would leave it streaming forever, and every
//! client would keep showing a spinner. The rule: a response `streaming`
//! with no operation for its namespace's `abandon_after_secs` (0 = never)
//! is ended by the server with an update setting `extras.stream = "error"`
//! and `extras.reason = "abandoned"`, an ordinary logged update that every
//! subscriber receives and history keeps.
//!
//! - [`AbandonSink`] sits in front of the fan-out as the store's commit sink
//!   and shows [`Abandoned`] every committed event, so it knows which
//!   responses stream and when each last changed, without any store read.
//! - [`Abandoned::recover`] runs once at start-up, before the server
//!   accepts connections: responses still streaming in the store are
//!   tracked from their last version's time, and those of the LLM bridge
//!   (whose jobs died with the previous process) are ended at once.
//! - [`Abandoned::sweep`] is the task that ends responses past their time,
//!   writing through the store like a `cancel` does. The fold rules refuse
//!   a second terminal status, so a race with the writer's own `complete`
//!   resolves to whichever the store's writer applied first.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Map, Value, json};
use tether_core::fold::STREAM_STATUS;
use tether_core::message::Action;
use tether_core::{ChannelName, ErrorCode, Message, Namespaces, Operation, Serial, UpdateOp};
use tether_store::{CommitSink, Committed, LogStore};
use tokio::sync::watch;

use crate::fanout::Fanout;

/// The `extras` key explaining why the server ended a response.
pub const REASON: &str = "reason";
/// The [`REASON`] of a response ended for want of appends.
pub const ABANDONED: &str = "abandoned";
/// How often the sweeper looks for responses past their time.
const SWEEP_EVERY: Duration = Duration::from_millis(250);
/// The `extras` key the LLM bridge puts its job id in (see
/// `llm/http.rs`): a response carrying one has no writer after a restart.
const BRIDGE_JOB: &str = "job";
/// The prefix of the bridge's job ids (`llm::jobs::new_job_id`).
const BRIDGE_JOB_PREFIX: &str = "job_";

/// One response being streamed.
#[derive(Debug, Clone, Copy)]
struct Tracked {
    /// Server time of its latest operation (ms since the Unix epoch).
    last_ms: u64,
    /// Its namespace's `abandon_after_secs`.
    after_secs: u64,
}

impl Tracked {
    fn due(&self, now_ms: u64) -> bool {
        now_ms
            >= self
                .last_ms
                .saturating_add(self.after_secs.saturating_mul(1000))
    }
}

/// The responses currently streaming, by channel and serial.
pub struct Abandoned {
    namespaces: Arc<Namespaces>,
    /// A std mutex: the store's writer thread updates it per batch, never
    /// across an await.
    streaming: Mutex<HashMap<(ChannelName, Serial), Tracked>>,
}

fn status(extras: Option<&Map<String, Value>>) -> Option<&str> {
    extras?.get(STREAM_STATUS)?.as_str()
}

impl Abandoned {
    /// Tracks nothing yet; `namespaces` gives each channel's timeout.
    pub fn new(namespaces: Arc<Namespaces>) -> Abandoned {
        Abandoned {
            namespaces,
            streaming: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(ChannelName, Serial), Tracked>> {
        self.streaming.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Updates the tracking from a committed batch (called by the store's
    /// writer through [`AbandonSink`]; must not block).
    pub fn observe(&self, batch: &[Arc<Committed>]) {
        let mut streaming = self.lock();
        for committed in batch {
            let event = &committed.event;
            let after_secs = self
                .namespaces
                .for_channel(&committed.channel)
                .abandon_after_secs;
            if after_secs == 0 {
                continue;
            }
            let key = (committed.channel.clone(), event.serial);
            let tracked = Tracked {
                last_ms: event.version.timestamp,
                after_secs,
            };
            // An append event carries extras only when it replaces them; a
            // create or update event carries the whole message.
            let still = match (event.action, event.extras.as_ref()) {
                (Action::Delete, _) => false,
                (Action::Append, None) => {
                    if let Some(entry) = streaming.get_mut(&key) {
                        entry.last_ms = tracked.last_ms;
                    }
                    continue;
                }
                (_, extras) => status(extras) == Some("streaming"),
            };
            if still {
                streaming.insert(key, tracked);
            } else {
                streaming.remove(&key);
            }
        }
    }

    /// Start-up: finds the responses the store says are still streaming.
    /// The LLM bridge's are ended at once (their jobs died with the
    /// previous process); the others are tracked from their latest
    /// version's time, so a writer that reconnects and carries on keeps
    /// its response. Call before accepting connections.
    pub async fn recover(&self, store: &dyn LogStore) {
        let found = match store.streaming_messages().await {
            Ok(found) => found,
            Err(err) => {
                tracing::error!(error = %err, "cannot look for responses left streaming");
                return;
            }
        };
        let mut ended = 0;
        for (channel, message) in found {
            if is_bridge_response(&message) {
                end(
                    store,
                    channel,
                    message.serial,
                    "the server restarted while the LLM bridge was streaming this response",
                )
                .await;
                ended += 1;
                continue;
            }
            let after_secs = self.namespaces.for_channel(&channel).abandon_after_secs;
            if after_secs == 0 {
                continue;
            }
            self.lock()
                .entry((channel, message.serial))
                .or_insert(Tracked {
                    last_ms: message.version.timestamp,
                    after_secs,
                });
        }
        if ended > 0 {
            tracing::info!(
                ended,
                "ended LLM bridge responses interrupted by the restart"
            );
        }
    }

    /// Removes and returns the responses past their time at `now_ms`.
    fn take_due(&self, now_ms: u64) -> Vec<(ChannelName, Serial, Tracked)> {
        let mut streaming = self.lock();
        let due: Vec<_> = streaming
            .iter()
            .filter(|(_, t)| t.due(now_ms))
            .map(|((c, s), t)| (c.clone(), *s, *t))
            .collect();
        for (channel, serial, _) in &due {
            streaming.remove(&(channel.clone(), *serial));
        }
        due
    }

    /// Ends responses past their time until `shutdown` flips.
    pub async fn sweep(
        self: Arc<Self>,
        store: Arc<dyn LogStore>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut tick = tokio::time::interval(SWEEP_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stopped(&mut shutdown) => return,
            }
            for (channel, serial, tracked) in self.take_due(now_ms()) {
                // The tracking follows every commit; this read only guards
                // the moment between deciding and writing.
                match store.message(&channel, serial).await {
                    Ok(Some(current)) if status(current.extras.as_ref()) == Some("streaming") => {
                        if current.version.timestamp > tracked.last_ms {
                            self.lock().insert(
                                (channel, serial),
                                Tracked {
                                    last_ms: current.version.timestamp,
                                    ..tracked
                                },
                            );
                            continue;
                        }
                    }
                    _ => continue,
                }
                let why = format!("no append for {} s: its writer is gone", tracked.after_secs);
                end(store.as_ref(), channel, serial, &why).await;
            }
        }
    }
}

/// Resolves once `shutdown` turns true (or its sender is gone); returns
/// nothing so no watch guard is held in the `select!`.
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

/// Whether the LLM bridge wrote `message` (its job id is in `extras.job`).
fn is_bridge_response(message: &Message) -> bool {
    message
        .extras
        .as_ref()
        .and_then(|e| e.get(BRIDGE_JOB))
        .and_then(Value::as_str)
        .is_some_and(|job| job.starts_with(BRIDGE_JOB_PREFIX))
}

/// Stores the terminal status of an abandoned response. A response that
/// ended meanwhile keeps its status (the store refuses the change).
async fn end(store: &dyn LogStore, channel: ChannelName, target: Serial, why: &str) {
    let mut extras = Map::new();
    extras.insert(STREAM_STATUS.into(), Value::from("error"));
    extras.insert(REASON.into(), Value::from(ABANDONED));
    extras.insert("error".into(), json!({ "message": why }));
    let op = Operation::Update {
        target,
        update: UpdateOp {
            extras: Some(extras),
            description: Some(format!("abandoned: {why}")),
            ..UpdateOp::default()
        },
    };
    let submission = super::internal_submission(channel.clone(), op, &super::Identity::default());
    let outcome = match store.submit(submission).await {
        Ok(receipt) => receipt.await,
        Err(err) => Err(err),
    };
    match outcome {
        Ok(_) => {
            metrics::counter!("tether_responses_abandoned_total").increment(1);
            tracing::info!(%channel, serial = %target, why, "ended an abandoned response");
        }
        Err(err) if err.code() == ErrorCode::StreamEnded => {}
        Err(err) => {
            tracing::warn!(%channel, serial = %target, error = %err, "cannot end an abandoned response")
        }
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The store's commit sink: shows each batch to [`Abandoned`], then hands
/// it to the fan-out.
pub struct AbandonSink {
    fanout: Arc<dyn Fanout>,
    abandoned: Arc<Abandoned>,
}

impl AbandonSink {
    /// Tees committed batches to `abandoned` and `fanout`.
    pub(crate) fn new(fanout: Arc<dyn Fanout>, abandoned: Arc<Abandoned>) -> AbandonSink {
        AbandonSink { fanout, abandoned }
    }
}

impl CommitSink for AbandonSink {
    fn deliver(&self, batch: Vec<Arc<Committed>>) {
        self.abandoned.observe(&batch);
        self.fanout.deliver(batch);
    }
}
