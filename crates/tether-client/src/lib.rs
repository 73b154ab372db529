//! The Rust SDK for Tether, a realtime transport for AI applications.
//!
//! An agent streams a response into a channel in a few lines and never
//! deals with reconnects, resume, acknowledgements or ordering:
//!
//! ```no_run
//! use futures::StreamExt;
//! use tether_client::{Client, ClientOptions, Event};
//!
//! # async fn run() -> Result<(), tether_client::Error> {
//! let client = Client::connect("http://127.0.0.1:7400", ClientOptions::default()).await?;
//! let channel = client.channel("conversation:42")?;
//! let mut events = channel.subscribe().await?;
//! while let Some(event) = events.next().await {
//!     let Event::Message(prompt) = event else { continue };
//!     if prompt.name.as_deref() != Some("prompt") {
//!         continue;
//!     }
//!     let mut response = channel.stream_response("response", serde_json::Value::Null).await?;
//!     for word in ["Hello", " ", "there"] {
//!         response.append(word)?;
//!     }
//!     response.complete().await?;
//! }
//! # Ok(()) }
//! ```
//!
//! See `examples/echo_agent.rs` for a complete agent.
//!
//! # Layout
//! - [`client`]: [`Client`], the connection state, channel handles.
//! - [`channel`]: [`Channel`] (subscribe, publish/append/update/delete,
//!   the folded view, REST reads), [`Subscription`] and its [`Event`]s.
//! - [`response`]: [`ResponseStream`] and the interrupt convention.
//! - [`rest`]: [`Rest`], the HTTP half (history, versions, publish).
//! - `driver`: the task that owns the WebSocket: reconnect and backoff,
//!   re-attach and resume, resend, replies matched to requests.
//! - `wire`: the protocol frames; the only place that knows their JSON.
//! - [`options`], [`error`], `endpoint` (one URL, two front doors).
//!
//! Folding events into current messages is `tether_core::View`, the same
//! code the server's folding is tested against; this crate never
//! re-implements it.
//!
//! # Guarantees
//! - **Order.** Operations leave in the order their methods were called
//!   (queued at the call, not at the first poll) and are acknowledged in
//!   that order, many in flight at once.
//! - **No gap, no duplicate.** Each subscription resumes from the last
//!   exact position after a reconnect; repeats are dropped by comparing
//!   version serials with the view. If the server cannot resume
//!   (retention, a reset log) the subscription yields
//!   [`Event::ContinuityLost`], the view is reset and current state
//!   follows.
//! - **Offline queueing.** Operations issued while disconnected are sent,
//!   in order, once connected again (up to
//!   [`ClientOptions::max_pending`]).
//! - **Exactly-once across reconnects**, as far as protocol v1 allows:
//!   publishes always carry an idempotency id (generated when you give
//!   none), so a resend is recognised by the server within its dedupe
//!   window (120 s by default). Appends in flight when a connection drops
//!   are checked against the message's current data before being resent,
//!   for messages this client created (every [`ResponseStream`]); appends
//!   to other messages, and updates, are **at-least-once** across a drop
//!   (an update applied twice makes one extra, identical version). A
//!   resent delete that finds the message already deleted is confirmed.
//!   The connection-resume issue will add server-side dedupe for all of
//!   them.
//!
//! # The interrupt convention
//! A client asks a streamed response to stop by publishing, on the same
//! channel, a message named `cancel` whose `extras.target` (or `data`) is
//! the response's serial ([`Channel::request_cancel`] does this). The
//! server then marks the response `extras.stream = "cancelled"` and refuses
//! further appends to it (`40901`). The writer's
//! [`ResponseStream::cancelled`] resolves (from the cancel message, or from
//! the first refused append), later appends are dropped, and
//! [`ResponseStream::finish`] / [`ResponseStream::cancel`] end the stream
//! without an error. The stream status lives in `extras.stream`:
//! `"streaming"`, then `"complete"` or `"cancelled"` (or `"error"`).

//! # Transport
//! Plain `http://` and `ws://` for now; TLS needs a cargo feature that is
//! not there yet (put a TLS-terminating proxy in front meanwhile).

pub mod auth;
pub mod channel;
pub mod client;
mod driver;
mod endpoint;
pub mod error;
pub mod options;
pub mod presence;
mod reply;
pub mod response;
pub mod rest;
mod wire;

pub use auth::AuthCallback;
pub use channel::{
    AckFuture, Channel, ChannelState, Continuity, DoneFuture, Event, SubscribeOptions, Subscription,
};
pub use client::{Client, ConnectionState};
pub use error::Error;
pub use options::ClientOptions;
pub use presence::{Presence, PresenceEvent, PresenceSubscription};
pub use response::ResponseStream;
pub use rest::{Ack, ChannelInfo, Direction, HistoryPage, HistoryQuery, Rest};
pub use tether_core::{
    Action, AppendOp, DeleteOp, ErrorCode, ErrorInfo, Message, NewMessage, Serial, UpdateOp, View,
};
pub use wire::{EphemeralMessage, Member, PresenceAction};
