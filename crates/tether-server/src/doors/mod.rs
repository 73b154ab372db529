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

use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

use crate::auth::Principal;

/// An open `text/event-stream` response around `body` (SSE and the AI SDK
/// stream), with the headers that keep caches and buffering proxies from
/// holding events back.
pub(crate) fn event_stream(body: Body) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}

/// How long the caller's credential has left: a stream ends then (the
/// client renews and resumes). `None` for a credential without expiry.
/// Make it a deadline with `runtime::deadline_in`, which cannot overflow.
pub(crate) fn credential_left(caller: &Principal) -> Option<Duration> {
    caller
        .expires_at
        .map(|exp| Duration::from_secs(exp.saturating_sub(jsonwebtoken::get_current_timestamp())))
}
