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
//!   ephemeral publish, the folded view, REST reads), [`Subscription`]
//!   and its [`Event`]s.
//! - [`presence`]: [`Presence`] (enter, update, leave, the member set, its
//!   changes).
//! - [`response`]: [`ResponseStream`] and the interrupt convention.
//! - [`rest`]: [`Rest`], the HTTP half (history, versions, presence, publish).
//! - [`auth`]: credentials (token, renewal callback, API key), shared by
//!   the WebSocket and REST.
//! - `driver`: the task that owns the WebSocket: reconnect and backoff,
//!   connection resume, re-attach, re-sends, token renewal, replies matched
//!   to requests.
//! - `wire`: the adapter to `tether-protocol`, which defines every frame
//!   and body once (shared with the server): building frames from
//!   requests, tolerant decoding, protocol types into the SDK's.
//! - [`options`], [`error`], `endpoint` (one URL, two front doors),
//!   `reply` (the futures of queued requests).
//!
//! Folding events into current messages is `tether_core::View`, the same
//! code the server's folding is tested against; this crate never
//! re-implements it.
//!
//! # Guarantees
//! - **Order.** Operations leave in the order their methods were called
//!   (queued at the call, not at the first poll) and are acknowledged in
//!   that order, many in flight at once.
//! - **No gap, no duplicate.** After a drop the client resumes its
//!   connection: the server re-attaches every channel from the last exact
//!   position the client received; repeats are dropped by comparing
//!   version serials with the view. If the server cannot resume a channel
//!   (retention, a reset log) the subscription yields
//!   [`Event::ContinuityLost`], the view is reset and current state
//!   follows.
//! - **Exactly once across reconnects.** Every publish, append, update and
//!   delete carries `seq`; those in flight at a drop are re-sent with the
//!   same `seq` on the resumed connection, and the server applies each
//!   once (also across a server restart, within `resume_ttl_ms`). If the
//!   server no longer knows the connection (too long away), publishes are
//!   still re-sent safely (they always carry an idempotency id), and an
//!   append, update or delete in flight fails with
//!   [`Error::OutcomeUnknown`] instead of being applied twice.
//! - **Offline queueing.** Operations issued while disconnected are sent,
//!   in order, once connected again (up to
//!   [`ClientOptions::max_pending`]).
//! - **Presence without flicker.** A resumed connection keeps its
//!   presence; after one that could not be resumed the client enters again
//!   with the data it had.
//! - **Tokens renew themselves** with [`ClientOptions::auth_callback`]:
//!   before expiry, on the live connection (attachments continue).
//! - Ephemeral messages ([`Channel::publish_ephemeral`]) are at most once.

#![warn(missing_docs, unreachable_pub)]

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
    AckFuture, Channel, ChannelState, Continuity, DoneFuture, EphemeralMessage, Event,
    SubscribeOptions, Subscription,
};
pub use client::{Client, ConnectionState};
pub use error::Error;
pub use options::ClientOptions;
pub use presence::{Member, Presence, PresenceAction, PresenceEvent, PresenceSubscription};
pub use response::ResponseStream;
pub use rest::{Ack, ChannelInfo, Direction, HistoryPage, HistoryQuery, Rest};
pub use tether_core::{
    Action, AppendOp, DeleteOp, ErrorCode, ErrorInfo, Message, NewMessage, Serial, UpdateOp, View,
};
