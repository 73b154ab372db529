//! The engine: the one place the front doors go through to change or read a
//! channel. It validates nothing the core does not (folding rules live in
//! `tether-core` and run in the store's writer); it wires the store to the
//! broker and builds subscriptions.

use std::sync::Arc;

use tether_core::{ChannelName, ErrorCode, ErrorInfo, LogBounds, Message, Operation, Serial};
use tether_store::{HistoryPage, HistoryQuery, LogStore, Receipt, StoreError, Submission};

use crate::broker::Broker;

pub mod subscription;

pub use subscription::{Continuity, Delivery, Start, Subscription};

/// Who is performing an operation, as the server established it.
#[derive(Debug, Clone, Default)]
pub struct Identity {
    /// The client's identity (from its credential).
    pub client_id: Option<String>,
    /// The connection, for operations that arrived over one.
    pub connection_id: Option<String>,
}

/// Shared handle to the store and the broker.
#[derive(Clone)]
pub struct Engine {
    store: Arc<dyn LogStore>,
    broker: Arc<Broker>,
    /// Current-state messages sent after a continuity loss when the client
    /// asked for none.
    rewind_on_lost: usize,
}

impl Engine {
    /// An engine over `store`, whose commit sink must be `broker`.
    pub fn new(store: Arc<dyn LogStore>, broker: Arc<Broker>, rewind_on_lost: usize) -> Engine {
        Engine {
            store,
            broker,
            rewind_on_lost,
        }
    }

    /// The fan-out, for metrics.
    pub fn broker(&self) -> &Broker {
        &self.broker
    }

    /// Queues an operation; await the receipt for the acknowledgement.
    /// Calls from one task are applied in call order. `own_only` restricts
    /// a mutation to messages `identity` created (checked by the writer).
    pub async fn submit(
        &self,
        channel: ChannelName,
        op: Operation,
        identity: &Identity,
        own_only: bool,
    ) -> Result<Receipt, ErrorInfo> {
        metrics::counter!("tether_operations_received_total").increment(1);
        self.store
            .submit(Submission {
                channel,
                op,
                client_id: identity.client_id.clone(),
                connection_id: identity.connection_id.clone(),
                own_only,
            })
            .await
            .map_err(store_error)
    }

    /// Starts a subscription; see [`Subscription`] for the guarantees.
    pub fn subscribe(&self, channel: ChannelName, start: Start) -> Subscription {
        Subscription::new(self.clone(), channel, start)
    }

    /// The log's bounds, `None` for a channel never written.
    pub async fn bounds(&self, channel: &ChannelName) -> Result<Option<LogBounds>, ErrorInfo> {
        self.store.bounds(channel).await.map_err(store_error)
    }

    /// The current version of a message; `40400` if there is none.
    pub async fn message(
        &self,
        channel: &ChannelName,
        serial: Serial,
    ) -> Result<Message, ErrorInfo> {
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
    ) -> Result<Vec<Message>, ErrorInfo> {
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
    ) -> Result<HistoryPage, ErrorInfo> {
        self.store
            .history(channel, query)
            .await
            .map_err(store_error)
    }

    pub(crate) fn store(&self) -> &dyn LogStore {
        self.store.as_ref()
    }

    pub(crate) fn broker_arc(&self) -> &Arc<Broker> {
        &self.broker
    }

    pub(crate) fn rewind_on_lost(&self) -> usize {
        self.rewind_on_lost
    }
}

fn not_found(serial: Serial) -> ErrorInfo {
    ErrorInfo::new(
        ErrorCode::MessageNotFound,
        format!("no message with serial {serial} on this channel"),
    )
}

/// A store failure as a client sees it. Internal details of storage
/// failures are logged, not sent.
pub fn store_error(err: StoreError) -> ErrorInfo {
    let code = err.code();
    if matches!(code, ErrorCode::StorageUnavailable | ErrorCode::Internal) {
        tracing::error!(error = %err, "store failure");
        return ErrorInfo::new(
            code,
            "the storage layer failed; the operation was not applied",
        );
    }
    ErrorInfo::new(code, err.to_string())
}
