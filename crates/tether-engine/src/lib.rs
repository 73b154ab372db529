//! The engine: the one place the front doors go through to change or read a
//! channel. Every operation that creates or changes a message passes
//! [`Engine::submit`] (or [`Engine::submit_all`], [`Engine::publish_ephemeral`]),
//! which authorizes it against the caller's credential
//! ([`Principal::authorize`]: capability, own-only scope, the message
//! conventions) and charges the caller's per-credential rate limit
//! ([`RateLimits`]) itself, so no front door can forget either. Folding
//! rules live in `tether-core` and run in the store's writer. The engine
//! also wires the store to the fan-out ([`Engine::start`]) and builds
//! subscriptions.

#![warn(missing_docs, unreachable_pub)]

use std::sync::Arc;

use serde_json::Value;
use tether_core::fold::STREAM_STATUS;
use tether_core::message::message_size;
use tether_core::{
    ChannelName, LogBounds, Message, Namespaces, NewMessage, Operation, Serial, UpdateOp,
};
use tether_store::{
    CommitSink, HistoryPage, HistoryQuery, LogStore, Receipt, StoreError, Submission,
};

use crate::abandon::{AbandonSink, Abandoned};
use crate::fanout::{EphemeralMessage, Fanout, FanoutItem, LocalFanout};
use crate::presence::{MemoryPresence, PresenceStore};
use crate::principal::{Authorized, Principal};

pub mod abandon;
mod error;
pub mod fanout;
pub mod feed;
pub mod presence;
pub mod principal;
pub mod rate;
pub mod rollup;
pub mod subscription;

pub use error::EngineError;
pub use feed::Feed;
pub use rate::RateLimits;
pub use subscription::{Continuity, Delivery, Start, Subscription};

/// Who is performing an operation, as the server established it.
#[derive(Debug, Clone, Default)]
pub struct Identity {
    /// The client's identity (from its credential).
    pub client_id: Option<String>,
    /// The connection, for operations that arrived over one.
    pub connection_id: Option<String>,
}

/// What the engine needs besides its store.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Per-namespace settings (retention, limits, roll-up, abandon time).
    pub namespaces: Namespaces,
    /// Current-state messages sent after a continuity loss when the client
    /// asked for none.
    pub rewind_on_lost: usize,
    /// Mutations per second per credential, on average.
    pub rate_per_sec: u32,
    /// Mutations per credential in one burst.
    pub burst: u32,
    /// Live items buffered per channel before a slow subscriber lags.
    pub fanout_capacity: usize,
    /// Presence members per channel, at most.
    pub max_presence_members: usize,
}

/// Shared handle to the store, the fan-out and presence.
#[derive(Clone)]
pub struct Engine {
    store: Arc<dyn LogStore>,
    fanout: Arc<dyn Fanout>,
    presence: Arc<dyn PresenceStore>,
    namespaces: Arc<Namespaces>,
    /// Current-state messages sent after a continuity loss when the client
    /// asked for none.
    rewind_on_lost: usize,
    /// Mutation budgets per credential, for every front door.
    rates: Arc<RateLimits>,
    /// Responses streaming, to end those whose writer is gone.
    abandoned: Arc<Abandoned>,
}

impl Engine {
    /// Builds the fan-out, opens the store with `open` handing it the
    /// commit sink (the abandon tracker in front of the fan-out), ends or
    /// tracks the responses a previous process left streaming, and returns
    /// the engine with the store (for the caller's shutdown and its other
    /// roles, such as keeping sessions).
    ///
    /// The store is opened *here* so its commits cannot reach anything but
    /// this engine's fan-out: an engine over a store wired to another sink
    /// would acknowledge writes no subscriber ever sees. Call before
    /// accepting connections.
    pub async fn start<S, F>(config: EngineConfig, open: F) -> Result<(Engine, Arc<S>), StoreError>
    where
        S: LogStore + 'static,
        F: FnOnce(Arc<dyn CommitSink>) -> Result<S, StoreError>,
    {
        let namespaces = Arc::new(config.namespaces);
        let fanout: Arc<dyn Fanout> = Arc::new(LocalFanout::new(config.fanout_capacity));
        let abandoned = Arc::new(Abandoned::new(namespaces.clone()));
        let sink = Arc::new(AbandonSink::new(fanout.clone(), abandoned.clone()));
        let store = Arc::new(open(sink)?);
        // Before accepting connections: no bridge job can be running yet.
        abandoned.recover(store.as_ref()).await;
        let presence = Arc::new(MemoryPresence::new(
            fanout.clone(),
            config.max_presence_members,
        ));
        let engine = Engine {
            store: store.clone(),
            fanout,
            presence,
            namespaces,
            rewind_on_lost: config.rewind_on_lost,
            rates: Arc::new(RateLimits::new(config.rate_per_sec, config.burst)),
            abandoned,
        };
        Ok((engine, store))
    }

    /// Ends responses left streaming past their namespace's
    /// `abandon_after_secs`, until `shutdown` flips; spawn it once.
    pub fn sweep_abandoned(
        &self,
        shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        self.abandoned.clone().sweep(self.store.clone(), shutdown)
    }

    /// The per-credential rate limits (for metrics and tests).
    pub fn rate_limits(&self) -> &RateLimits {
        &self.rates
    }

    /// Presence of every channel.
    pub fn presence(&self) -> &dyn PresenceStore {
        self.presence.as_ref()
    }

    /// The roll-up window for a subscriber of `channel`: its own choice
    /// (ms) or the namespace's.
    pub fn rollup_window(
        &self,
        channel: &ChannelName,
        chosen_ms: Option<u64>,
    ) -> std::time::Duration {
        let ms = chosen_ms.unwrap_or_else(|| self.namespaces.for_channel(channel).rollup_ms);
        std::time::Duration::from_millis(ms)
    }

    /// Presence, shared (for tasks that outlive a connection).
    pub fn presence_arc(&self) -> Arc<dyn PresenceStore> {
        self.presence.clone()
    }

    /// The fan-out (for metrics: active channels).
    pub fn fanout(&self) -> &dyn Fanout {
        self.fanout.as_ref()
    }

    /// Whether the store takes writes (a full disk makes it refuse them),
    /// for `/readyz`.
    pub fn store_health(&self) -> tether_store::StoreHealth {
        self.store.health()
    }

    /// Authorizes `op` for `caller` (see [`Principal::authorize`]), charges
    /// one operation to its rate limit, and queues it stamped with
    /// `identity`; await the receipt for the acknowledgement. Calls from one
    /// task are applied in call order.
    pub async fn submit(
        &self,
        channel: ChannelName,
        op: Operation,
        caller: &Principal,
        identity: &Identity,
    ) -> Result<Receipt, EngineError> {
        self.submit_sequenced(channel, op, caller, identity, None)
            .await
    }

    /// Like [`Engine::submit`], for a connection's exactly-once operation:
    /// the store records its outcome under (`connection_id`, `seq`) in the
    /// same batch as the operation, so a re-send after a crash finds it.
    pub async fn submit_sequenced(
        &self,
        channel: ChannelName,
        op: Operation,
        caller: &Principal,
        identity: &Identity,
        seq: Option<u64>,
    ) -> Result<Receipt, EngineError> {
        let authorized = caller.authorize(&channel, &op)?;
        self.charge(caller, identity, 1)?;
        self.enqueue(channel, op, caller, identity, authorized, seq)
            .await
    }

    /// Several operations on one channel, applied in order: every one is
    /// authorized and the whole array is charged to the rate limit before
    /// any is queued, so a refusal (`40300`, or `42901` when the budget
    /// does not hold them all) stores nothing. Each queued operation still
    /// gets its own receipt (the store may refuse one and apply the next).
    pub async fn submit_all(
        &self,
        channel: ChannelName,
        ops: Vec<Operation>,
        caller: &Principal,
        identity: &Identity,
    ) -> Result<Vec<Result<Receipt, EngineError>>, EngineError> {
        let authorized = ops
            .iter()
            .map(|op| caller.authorize(&channel, op))
            .collect::<Result<Vec<_>, _>>()?;
        self.charge(caller, identity, ops.len())?;
        let mut receipts = Vec::with_capacity(ops.len());
        for (op, authorized) in ops.into_iter().zip(authorized) {
            receipts.push(
                self.enqueue(channel.clone(), op, caller, identity, authorized, None)
                    .await,
            );
        }
        Ok(receipts)
    }

    /// The server's own writes to a message it started for a caller (the
    /// LLM bridge streaming into its response): not a client's request, so
    /// not authorized or rate-limited again. Never use it for anything a
    /// client sent.
    pub async fn submit_internal(
        &self,
        channel: ChannelName,
        op: Operation,
        identity: &Identity,
    ) -> Result<Receipt, EngineError> {
        metrics::counter!("tether_operations_received_total").increment(1);
        self.store
            .submit(internal_submission(channel, op, identity))
            .await
            .map_err(store_error)
    }

    /// Charges `n` operations to the caller's per-credential budget.
    fn charge(&self, caller: &Principal, identity: &Identity, n: usize) -> Result<(), EngineError> {
        let credential = caller.credential_id(identity.connection_id.as_deref());
        self.rates.take(&credential, n, now_ms()).inspect_err(|_| {
            metrics::counter!("tether_rate_limited_total").increment(1);
        })
    }

    /// Queues an authorized operation (with its connection `seq`, if any).
    async fn enqueue(
        &self,
        channel: ChannelName,
        op: Operation,
        caller: &Principal,
        identity: &Identity,
        authorized: Authorized,
        seq: Option<u64>,
    ) -> Result<Receipt, EngineError> {
        let sequence = seq
            .zip(identity.connection_id.clone())
            .map(|(seq, connection_id)| tether_store::Sequenced { connection_id, seq });
        metrics::counter!("tether_operations_received_total").increment(1);
        let cancel_target = cancel_target(&op);
        let receipt = self
            .store
            .submit(Submission {
                channel: channel.clone(),
                op,
                client_id: identity.client_id.clone(),
                connection_id: identity.connection_id.clone(),
                own_only: authorized.own_only,
                authority: authorized.authority,
                publisher: caller.publisher(),
                sequence,
            })
            .await
            .map_err(store_error)?;
        if let Some(target) = cancel_target {
            self.cancel_stream(channel, target, identity).await;
        }
        Ok(receipt)
    }

    /// The server's part of the interrupt convention: right behind a
    /// `cancel` message, mark the targeted response `cancelled`, so the
    /// agent's next append is refused (`40901`) even if it does not watch
    /// the channel, and any late joiner sees the final status. A response
    /// that already ended keeps its status (the store refuses the change).
    async fn cancel_stream(&self, channel: ChannelName, target: Serial, identity: &Identity) {
        let streaming = matches!(
            self.store.message(&channel, target).await,
            Ok(Some(m)) if m.extras.as_ref().and_then(|e| e.get(STREAM_STATUS)).and_then(Value::as_str) == Some("streaming")
        );
        if !streaming {
            return;
        }
        let mut extras = serde_json::Map::new();
        extras.insert(STREAM_STATUS.into(), Value::from("cancelled"));
        let op = Operation::Update {
            target,
            update: UpdateOp {
                extras: Some(extras),
                description: Some("cancelled by request".into()),
                ..UpdateOp::default()
            },
        };
        let submission = internal_submission(channel, op, identity);
        if let Ok(receipt) = self.store.submit(submission).await {
            tokio::spawn(async move {
                if let Err(err) = receipt.await {
                    tracing::debug!(error = %err, "cancel status not applied");
                }
            });
        }
    }

    /// Delivers a message live to current subscribers without storing it,
    /// after the same authorization and rate limit as a stored publish.
    /// Returns the id it was sent with.
    pub fn publish_ephemeral(
        &self,
        channel: &ChannelName,
        message: NewMessage,
        caller: &Principal,
        identity: &Identity,
        now_ms: u64,
    ) -> Result<String, EngineError> {
        caller.authorize_publish(channel, &message)?;
        self.charge(caller, identity, 1)?;
        let limit = self.namespaces.for_channel(channel).max_message_bytes;
        let size = message_size(
            message.name.as_deref(),
            &message.data,
            message.extras.as_ref(),
        );
        if size > limit {
            return Err(EngineError::MessageTooLarge { size, limit });
        }
        let id = match message.id {
            Some(id) if !tether_core::message::valid_message_id(&id) => {
                return Err(EngineError::InvalidMessageId);
            }
            Some(id) => id,
            None => format!("e_{:032x}", rand::random::<u128>()),
        };
        let ephemeral = EphemeralMessage {
            id: id.clone(),
            name: message.name,
            data: message.data,
            extras: message.extras,
            client_id: identity.client_id.clone(),
            connection_id: identity.connection_id.clone(),
            timestamp: now_ms,
        };
        metrics::counter!("tether_ephemeral_messages_total").increment(1);
        self.fanout
            .publish(channel, FanoutItem::Ephemeral(Arc::new(ephemeral)));
        Ok(id)
    }

    /// Starts a subscription; see [`Subscription`] for the guarantees.
    pub fn subscribe(&self, channel: ChannelName, start: Start) -> Subscription {
        Subscription::new(self.clone(), channel, start)
    }

    /// The log's bounds, `None` for a channel never written.
    pub async fn bounds(&self, channel: &ChannelName) -> Result<Option<LogBounds>, EngineError> {
        self.store.bounds(channel).await.map_err(store_error)
    }

    /// The current version of a message; `40400` if there is none.
    pub async fn message(
        &self,
        channel: &ChannelName,
        serial: Serial,
    ) -> Result<Message, EngineError> {
        self.store
            .message(channel, serial)
            .await
            .map_err(store_error)?
            .ok_or_else(|| not_found(serial))
    }

    /// Every version of a message; `40400` if there is none.
    pub async fn versions(
        &self,
        channel: &ChannelName,
        serial: Serial,
    ) -> Result<Vec<Message>, EngineError> {
        let versions = self
            .store
            .versions(channel, serial)
            .await
            .map_err(store_error)?;
        if versions.is_empty() {
            return Err(not_found(serial));
        }
        Ok(versions)
    }

    /// A page of history.
    pub async fn history(
        &self,
        channel: &ChannelName,
        query: HistoryQuery,
    ) -> Result<HistoryPage, EngineError> {
        self.store
            .history(channel, query)
            .await
            .map_err(store_error)
    }

    pub(crate) fn store(&self) -> &dyn LogStore {
        self.store.as_ref()
    }

    pub(crate) fn rewind_on_lost(&self) -> usize {
        self.rewind_on_lost
    }
}

/// A server-internal write: every convention right, no ownership limit,
/// idempotency ids (if any) scoped by the identity it is stamped with.
/// A write the server makes on its own account (cancel marking, abandoned
/// responses, the bridge's appends): every convention right, no sequence.
pub(crate) fn internal_submission(
    channel: ChannelName,
    op: Operation,
    identity: &Identity,
) -> Submission {
    Submission {
        channel,
        op,
        client_id: identity.client_id.clone(),
        connection_id: identity.connection_id.clone(),
        own_only: false,
        authority: tether_core::conventions::Authority::ALL,
        publisher: format!("c:{}", identity.client_id.as_deref().unwrap_or("")),
        sequence: None,
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The response a `cancel` message targets, if `op` is one.
fn cancel_target(op: &Operation) -> Option<Serial> {
    let Operation::Create(message) = op else {
        return None;
    };
    tether_core::conventions::cancel_serial(
        message.name.as_deref(),
        message.extras.as_ref(),
        &message.data,
    )
}

fn not_found(serial: Serial) -> EngineError {
    EngineError::MessageNotFound(serial)
}

/// A store failure as a client sees it (see `From<StoreError> for
/// EngineError`): for receipts, which resolve to the store's own error.
pub fn store_error(err: StoreError) -> EngineError {
    EngineError::from(err)
}
