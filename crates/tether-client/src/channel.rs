//! A channel handle: subscribing, publishing and mutating, the folded view,
//! and REST reads scoped to the channel.

use std::borrow::Cow;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use futures::Stream;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tether_core::{
    AppendOp, ChannelName, DeleteOp, ErrorInfo, Message, NewMessage, Operation, Serial, UpdateOp,
    View,
};
use tokio::sync::{mpsc, oneshot, watch};

use crate::client::Inner;
use crate::driver::{Command, Request, Sink};
use crate::error::Error;
use crate::presence::{Presence, PresenceSet};
pub use crate::reply::{AckFuture, DoneFuture};
use crate::response::ResponseStream;
use crate::rest::{HistoryPage, HistoryQuery};

/// How the server honoured an attach: the protocol's own type (there is
/// nothing for the SDK to add to it).
pub use tether_protocol::Continuity;

/// A live-only message (typing indicators, "calling a tool" ticks): no
/// serial, never stored, never replayed, so a subscriber that is
/// disconnected when it is sent never sees it. The SDK's owned copy of
/// [`tether_protocol::EphemeralMessage`], which borrows for the server's
/// sake.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct EphemeralMessage {
    /// The publisher's id, or one the server generated.
    pub id: String,
    /// The event type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The payload.
    #[serde(default)]
    pub data: Value,
    /// Free-form object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extras: Option<Map<String, Value>>,
    /// The sender's identity, set by the server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// The sender's connection, set by the server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_id: Option<String>,
    /// Server time, ms since the Unix epoch.
    #[serde(default)]
    pub timestamp: u64,
}

impl From<tether_protocol::EphemeralMessage<'_>> for EphemeralMessage {
    fn from(message: tether_protocol::EphemeralMessage<'_>) -> EphemeralMessage {
        EphemeralMessage {
            id: message.id.into_owned(),
            name: message.name.map(Cow::into_owned),
            data: message.data.into_owned(),
            extras: message.extras.map(Cow::into_owned),
            client_id: message.client_id.map(Cow::into_owned),
            connection_id: message.connection_id.map(Cow::into_owned),
            timestamp: message.timestamp,
        }
    }
}

/// Where a channel's subscription stands.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ChannelState {
    /// Nobody subscribes; the view is empty.
    Detached,
    /// Waiting for the server to confirm an attach (also while reconnecting).
    Attaching,
    /// Events are flowing.
    Attached {
        /// How the latest attach was honoured.
        continuity: Continuity,
    },
    /// The server refused the attach; subscriptions ended.
    Failed(ErrorInfo),
}

/// One item of a [`Subscription`].
// Nearly every event is a message: boxing it to shrink the rare variants
// would cost an allocation per event.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Event {
    /// A message event (create, append, update, delete, or a snapshot sent
    /// as update/create), already folded into [`Channel::view`]. Events the
    /// view already reflected (repeats after a reconnect) are not yielded.
    Message(Message),
    /// The resume position could not be served: the view was reset and the
    /// channel's current state follows as snapshots. Drop what you derived
    /// from earlier events.
    ContinuityLost(ErrorInfo),
    /// A live-only message ([`Channel::publish_ephemeral`]): not folded
    /// into the view, never replayed, so one sent while this client was
    /// disconnected is not delivered.
    Ephemeral(EphemeralMessage),
    /// The attach's catch-up is done: the rewind, or everything missed
    /// since the position, came before this, and what follows is live. An
    /// agent that reacts only to new events and catches up on history
    /// once waits for it. Yielded only to subscriptions that asked for it
    /// ([`SubscribeOptions::synced`]), after every attach of the channel:
    /// also after a re-attach (a reconnect, a lost continuity), and at
    /// once to a subscription joining an attachment already caught up.
    Synced {
        /// Where a re-attach would resume from ([`Channel::position`])
        /// at this point.
        position: Option<Serial>,
    },
}

/// Where a new subscription starts, when it is the one that attaches the
/// channel (later subscribers share the attachment as it is).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SubscribeOptions {
    /// Resume after this position (a serial from an earlier session).
    pub from: Option<Serial>,
    /// On a fresh attach, first deliver the current version of the last
    /// `rewind` messages (0-1000).
    pub rewind: Option<usize>,
    /// Also yield [`Event::Synced`] on this subscription. Unlike `from`
    /// and `rewind` this holds for this subscription whoever attached.
    pub synced: bool,
}

impl SubscribeOptions {
    /// Starts after `position`.
    pub fn from(mut self, position: Serial) -> SubscribeOptions {
        self.from = Some(position);
        self
    }

    /// Replays the last `count` messages first.
    pub fn rewind(mut self, count: usize) -> SubscribeOptions {
        self.rewind = Some(count);
        self
    }

    /// Yields [`Event::Synced`] when each attach has caught up.
    pub fn synced(mut self) -> SubscribeOptions {
        self.synced = true;
        self
    }
}

/// What the driver and the handles of one channel share.
#[derive(Debug)]
pub(crate) struct ChannelShared {
    pub(crate) view: Mutex<View>,
    pub(crate) state: watch::Sender<ChannelState>,
    position: Mutex<Option<Serial>>,
    presence: Mutex<PresenceSet>,
}

impl ChannelShared {
    pub(crate) fn new() -> ChannelShared {
        ChannelShared {
            view: Mutex::new(View::new()),
            state: watch::Sender::new(ChannelState::Detached),
            position: Mutex::new(None),
            presence: Mutex::new(PresenceSet::default()),
        }
    }

    /// The member set, kept by the driver while presence is delivered.
    pub(crate) fn presence(&self) -> MutexGuard<'_, PresenceSet> {
        self.presence
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn position(&self) -> MutexGuard<'_, Option<Serial>> {
        self.position
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The view; a panic elsewhere while holding it cannot leave it
    /// half-folded (folding one event does not panic), so poisoning is
    /// ignored.
    pub(crate) fn view(&self) -> MutexGuard<'_, View> {
        self.view
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A channel of a [`crate::Client`]. Cheap to clone; all clones share one
/// attachment and one view.
///
/// ```no_run
/// # async fn run(client: tether_client::Client) -> Result<(), tether_client::Error> {
/// use futures::StreamExt;
/// use tether_client::{Event, NewMessage};
///
/// let channel = client.channel("conversation:42")?;
/// let mut events = channel.subscribe().await?;
/// let ack = channel
///     .publish(NewMessage { name: Some("prompt".into()), data: "hi".into(), ..Default::default() })
///     .await?;
/// while let Some(Event::Message(message)) = events.next().await {
///     if message.serial == ack.serial {
///         break; // our own prompt came back
///     }
/// }
/// assert_eq!(channel.view().len(), 1);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Channel {
    pub(crate) name: ChannelName,
    pub(crate) inner: Arc<Inner>,
    pub(crate) shared: Arc<ChannelShared>,
}

impl std::fmt::Debug for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Channel").field("name", &self.name).finish()
    }
}

impl Channel {
    /// The channel's name.
    pub fn name(&self) -> &str {
        self.name.as_str()
    }

    /// Subscribes from now on; see [`Channel::subscribe_with`].
    pub async fn subscribe(&self) -> Result<Subscription, Error> {
        self.subscribe_with(SubscribeOptions::default()).await
    }

    /// Attaches the channel (if no subscription has yet) and returns its
    /// events in log order, with no gap and no duplicate across reconnects.
    ///
    /// Waits until the server confirmed the attach, so events published
    /// after this returns are delivered. While disconnected that means
    /// waiting for the connection to come back. The channel stays attached
    /// while any subscription of it is alive; when the last one is dropped
    /// it is detached and its view emptied.
    ///
    /// Events are buffered for a subscription that is not read: read it,
    /// or drop it.
    pub async fn subscribe_with(&self, options: SubscribeOptions) -> Result<Subscription, Error> {
        let (events, rx) = mpsc::unbounded_channel();
        let guard = self.attach_with(options, Sink::Events(events)).await?;
        Ok(Subscription { rx, _guard: guard })
    }

    /// Joins the channel's attachment (attaching it if needed) with a
    /// receiver of presence changes; see [`Presence::subscribe`].
    pub(crate) async fn attach(&self, sink: Sink) -> Result<SubscriptionGuard, Error> {
        self.attach_with(SubscribeOptions::default(), sink).await
    }

    async fn attach_with(
        &self,
        options: SubscribeOptions,
        sink: Sink,
    ) -> Result<SubscriptionGuard, Error> {
        let (ready, ready_rx) = oneshot::channel();
        let id = self.inner.next_id();
        self.inner.send(Command::Subscribe {
            channel: self.name.clone(),
            shared: self.shared.clone(),
            options,
            id,
            sink,
            ready,
        })?;
        let guard = SubscriptionGuard {
            inner: self.inner.clone(),
            channel: self.name.clone(),
            id,
        };
        ready_rx.await.map_err(|_| Error::Closed)??;
        Ok(guard)
    }

    /// The channel's presence: enter, update, leave, members, changes.
    pub fn presence(&self) -> Presence {
        Presence::new(self.clone())
    }

    /// Publishes a live-only message (typing indicators, progress ticks):
    /// delivered to the channel's current subscribers as
    /// [`Event::Ephemeral`], never stored or replayed. At most once: if
    /// the connection drops before the server confirmed it, it fails with
    /// [`Error::OutcomeUnknown`] and is not re-sent.
    pub fn publish_ephemeral(&self, message: NewMessage) -> DoneFuture {
        let (reply, rx) = oneshot::channel();
        match self
            .inner
            .enqueue(self.name.clone(), Request::Ephemeral(message), reply.into())
        {
            Ok(()) => DoneFuture::waiting(rx),
            Err(err) => DoneFuture::failed(err),
        }
    }

    /// Publishes a message. Without an `id` one is generated, which makes
    /// the publish idempotent: a resend after a reconnect is recognised by
    /// the server and not stored twice.
    pub fn publish(&self, mut message: NewMessage) -> AckFuture {
        if message.id.is_none() {
            message.id = Some(crate::client::new_message_id());
        }
        self.enqueue(Operation::Create(message))
    }

    /// Appends a fragment to a message whose data is a string.
    pub fn append(&self, serial: Serial, fragment: impl Into<String>) -> AckFuture {
        self.append_with(
            serial,
            AppendOp {
                data: fragment.into(),
                name: None,
                extras: None,
            },
        )
    }

    /// Appends, possibly replacing the message's name or extras.
    pub fn append_with(&self, serial: Serial, append: AppendOp) -> AckFuture {
        self.enqueue(Operation::Append {
            target: serial,
            append,
        })
    }

    /// Makes a new version of a message (extras merged one level deep).
    pub fn update(&self, serial: Serial, update: UpdateOp) -> AckFuture {
        self.enqueue(Operation::Update {
            target: serial,
            update,
        })
    }

    /// Deletes a message (it stays in history as a tombstone).
    pub fn delete(&self, serial: Serial, delete: DeleteOp) -> AckFuture {
        self.enqueue(Operation::Delete {
            target: serial,
            delete,
        })
    }

    /// Asks whoever streams the response `response` to stop, following the
    /// interrupt convention (see the crate docs): publishes a message named
    /// `cancel` whose `extras.target` is the response's serial.
    pub fn request_cancel(&self, response: Serial) -> AckFuture {
        let mut extras = Map::new();
        extras.insert("target".into(), Value::String(response.to_string()));
        self.publish(NewMessage {
            name: Some(crate::response::CANCEL_NAME.into()),
            extras: Some(extras),
            ..NewMessage::default()
        })
    }

    /// Starts streaming a response into one new message; see
    /// [`ResponseStream`]. `extras` must be a JSON object (or null); the
    /// stream status is added to it.
    pub async fn stream_response(
        &self,
        name: &str,
        extras: Value,
    ) -> Result<ResponseStream, Error> {
        ResponseStream::start(self.clone(), name, extras).await
    }

    /// The current messages, folded from the events received while
    /// attached (see [`Channel::subscribe`]), in channel order.
    pub fn view(&self) -> View {
        self.shared.view().clone()
    }

    /// Runs `f` on the view without copying it.
    pub fn with_view<R>(&self, f: impl FnOnce(&View) -> R) -> R {
        f(&self.shared.view())
    }

    /// The attachment's state, updated as it changes. Do not hold a
    /// `borrow()` of it across an `.await`: the client cannot update it
    /// meanwhile.
    pub fn state(&self) -> watch::Receiver<ChannelState> {
        self.shared.state.subscribe()
    }

    /// The last position received: everything up to it was delivered.
    /// Store it to resume in a later process with
    /// [`SubscribeOptions::from`]; it is kept after the last subscription
    /// ends for that purpose. `None` until the first position arrives
    /// (just after a fresh attach) and after a continuity loss until the
    /// current state is through.
    pub fn position(&self) -> Option<Serial> {
        *self.shared.position()
    }

    /// A page of history over REST.
    pub async fn history(&self, query: &HistoryQuery) -> Result<HistoryPage, Error> {
        self.inner.rest.history(self.name.as_str(), query).await
    }

    /// The current version of a message over REST.
    pub async fn message(&self, serial: Serial) -> Result<Message, Error> {
        self.inner.rest.message(self.name.as_str(), serial).await
    }

    /// Every version of a message over REST, oldest first.
    pub async fn versions(&self, serial: Serial) -> Result<Vec<Message>, Error> {
        self.inner.rest.versions(self.name.as_str(), serial).await
    }

    /// Queues an operation now (so calls are sent in call order) and
    /// returns the future of its acknowledgement.
    pub(crate) fn enqueue(&self, op: Operation) -> AckFuture {
        let (reply, rx) = oneshot::channel();
        match self
            .inner
            .enqueue(self.name.clone(), Request::Mutation(op), reply.into())
        {
            Ok(()) => AckFuture::waiting(rx),
            Err(err) => AckFuture::failed(err),
        }
    }
}

/// The events of a channel; see [`Channel::subscribe_with`]. Ends when the
/// client is closed or the server refuses the attach.
#[derive(Debug)]
pub struct Subscription {
    rx: mpsc::UnboundedReceiver<Event>,
    _guard: SubscriptionGuard,
}

impl Stream for Subscription {
    type Item = Event;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        self.rx.poll_recv(cx)
    }
}

/// Tells the driver a subscription is gone, however it is dropped.
#[derive(Debug)]
pub(crate) struct SubscriptionGuard {
    inner: Arc<Inner>,
    channel: ChannelName,
    id: u64,
}

impl Drop for SubscriptionGuard {
    fn drop(&mut self) {
        let _ = self.inner.send(Command::Unsubscribe {
            channel: self.channel.clone(),
            id: self.id,
        });
    }
}
