//! Tether's wire format, once: every JSON frame and body the server sends
//! or accepts, with `Serialize` and `Deserialize` on each, so the server,
//! the SDKs, the load generator, the test harness and the fuzz targets all
//! speak the same types instead of keeping their own copies (which drifted).
//!
//! # Layout
//! - [`client`]: frames a WebSocket client sends ([`ClientFrame`]).
//! - [`server`]: frames the server sends on a WebSocket ([`ServerFrame`]).
//!   Borrowing (`Cow`) fields let the server encode one `message` frame per
//!   delivery without cloning the message; decoding yields owned values.
//! - [`presence`] and [`ephemeral`]: the member, presence change and
//!   live-only message shapes both transports carry.
//! - [`rest`] and [`llm`]: REST request and response bodies.
//! - [`sse`]: Server-Sent Event names, their data, and the framing.
//! - [`error`]: the `{"error": {...}}` body of a failed request.
//! - [`limits`]: what the server announces and the protocol's fixed bounds.
//! - [`decode`]: turning client input into core types, with error codes.
//! - [`wording`]: user-facing wording of decode errors.
//! - `openapi` (feature `openapi`): OpenAPI schemas of the core shapes
//!   the REST bodies carry, for the server's `/openapi.json`.
//!
//! Golden vectors in `vectors/` pin every shape; the Rust tests here and
//! the TypeScript SDK's tests both check against them.
//!
//! This crate knows JSON and nothing of sockets: it depends on
//! `tether-core` and serde only (`crates/tether/tests/layering.rs` enforces it).
#![warn(missing_docs, unreachable_pub)]

pub mod client;
pub mod decode;
pub mod ephemeral;
pub mod error;
pub mod hot;
pub mod limits;
pub mod llm;
#[cfg(feature = "openapi")]
pub mod openapi;
pub mod presence;
pub mod rest;
pub mod server;
pub mod sse;
pub mod wording;

pub use client::{ClientFrame, PresenceVerb};
pub use decode::{Mutation, channel, decode_client_frame, mutation, salvage_req, serial};
pub use ephemeral::EphemeralMessage;
pub use error::ErrorBody;
pub use limits::{AnnouncedLimits, DEFAULT_PAGE, MAX_PAGE, MAX_REWIND};
pub use presence::{Member, PresenceAction, PresenceChange};
pub use rest::AckBody;
pub use server::{Continuity, ResumedAttachment, ServerFrame};
pub use sse::SseEvent;
pub use tether_core::{Action, ErrorInfo, Message, Serial, Version};

/// The protocol version, announced in the `connected` frame. Bumped only
/// for a change an existing client would misread; added optional fields
/// and frame types do not bump it (clients ignore what they do not know).
pub const PROTOCOL_VERSION: u32 = 1;
