//! The front doors: one module per way in, each decoding its wire format
//! into engine calls and encoding what the engine delivers back out.
//!
//! - [`ws`]: the WebSocket protocol (frames, acks, attachments, resume).
//! - [`sse`]: a channel as a Server-Sent Events stream.
//! - [`rest`]: REST: publish, mutate, read history and presence, mint tokens.
//! - [`llm`]: the LLM bridge's REST (start, list and cancel jobs).
//! - [`aisdk`]: a channel's streaming response as a Vercel AI SDK UI
//!   message stream.
//! - [`caller`]: the credential of an HTTP request as a `Principal`,
//!   shared by every door (and its schemes, for `/openapi.json`).
//! - [`openapi`]: schema-only twins the doors' `/openapi.json`
//!   annotations use for types without a schema derive.
//!
//! A new protocol is a new module here. It reuses the engine (which
//! authorizes and rate-limits every mutation), the connection sessions of
//! [`crate::sessions`] and [`crate::error::ApiError`] instead of copying
//! them.

pub(crate) mod aisdk;
pub(crate) mod caller;
pub(crate) mod llm;
pub(crate) mod openapi;
pub(crate) mod rest;
pub(crate) mod sse;
pub(crate) mod ws;
