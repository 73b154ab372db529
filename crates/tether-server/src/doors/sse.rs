//! `GET /channels/{channel}/stream`: a subscription over Server-Sent Events.
//!
//! Same guarantees as a WebSocket attach. The resume position comes from
//! `Last-Event-ID` (browsers send it on reconnect) or `?from=`. A slow reader
//! is never buffered for: the body is produced only as fast as the socket
//! takes it, and the subscription falls back to the log when it lags.

use std::convert::Infallible;
use std::time::Duration;

use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use bytes::Bytes;
use futures::stream::{self, Stream, StreamExt};
use serde::Deserialize;
use tether_core::{ErrorCode, ErrorInfo};
use utoipa::IntoParams;

use super::caller::Caller;
use crate::engine::{Feed, Start};
use crate::error::ApiError;
use crate::limits::Slot;
use crate::protocol::{self, MAX_REWIND};
use crate::state::App;
use tether_core::capability::Operation as Cap;

/// Query of the SSE endpoint.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct StreamParams {
    /// Resume after this position (`Last-Event-ID` wins when both are
    /// given): exactly what was missed, then live.
    #[param(value_type = Option<tether_protocol::openapi::Serial>)]
    from: Option<String>,
    /// Without a position: start with the last N messages (at most 100).
    rewind: Option<usize>,
    /// Also stream presence (`presence-sync`, then `presence` events).
    #[serde(default)]
    presence: bool,
    /// Roll-up window (ms, 0 = every fragment); the namespace's by default.
    rollup_ms: Option<u64>,
}

/// `GET /channels/{channel}/stream`
///
/// The channel as Server-Sent Events: what was missed after the position,
/// then live.
#[utoipa::path(
    get,
    operation_id = "sse_stream",
    path = "/channels/{channel}/stream",
    tag = "streams",
    params(
        ("channel" = tether_protocol::openapi::ChannelName, Path, description = "The channel, e.g. `conversation:42`."),
        ("Last-Event-ID" = Option<tether_protocol::openapi::Serial>, Header, description = "The last event's id; browsers send it when they reconnect."),
        StreamParams
    ),
    responses(
        (status = 200, content_type = "text/event-stream", body = String, description = "Events `attached` (continuity), `message` (a message or an operation on one; `id:` is its position), `synced`, `ephemeral`, `presence-sync`, `presence` and `error` (then the stream ends), with keep-alive comments. The data of each is JSON, as in docs/protocol.md."),
        (status = "4XX", description = "Refused; the code says why (docs/errors.md).", body = tether_protocol::ErrorBody),
        (status = "5XX", description = "Not applied: server or storage failure, shutting down.", body = tether_protocol::ErrorBody),
    )
)]
pub(crate) async fn stream(
    State(app): State<App>,
    Caller(caller): Caller,
    Path(channel): Path<String>,
    headers: HeaderMap,
    params: Result<Query<StreamParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let channel = protocol::channel(&channel)?;
    caller.require(&channel, Cap::Subscribe)?;
    let slot = app.slots.acquire(&caller.key)?;
    let params = params?.0;
    let last_event_id = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty());
    let from = last_event_id
        .or(params.from.as_deref())
        .map(protocol::serial)
        .transpose()?;
    let rewind = params.rewind.unwrap_or(0);
    if rewind > MAX_REWIND {
        return Err(ErrorInfo::new(
            ErrorCode::InvalidParameter,
            format!("rewind must be at most {MAX_REWIND}"),
        )
        .into());
    }
    if params.presence {
        caller.require(&channel, Cap::PresenceSubscribe)?;
    }
    let start = Start {
        from,
        rewind,
        presence: params.presence,
    };
    let window = app
        .engine
        .rollup_window(&channel, params.rollup_ms.map(|ms| ms.min(5_000)));
    let subscription = app.engine.subscribe(channel, start);
    // The stream ends when the credential expires; the client renews and
    // resumes with Last-Event-ID.
    let expires_in = super::credential_left(&caller);
    let body = events(
        Feed::new(subscription, window),
        app.config.heartbeat(),
        app.shutdown.clone(),
        expires_in,
        slot,
    );
    Ok(super::event_stream(Body::from_stream(body)))
}

/// The event stream: deliveries (rolled up), keep-alive comments when
/// idle, and an end on shutdown, credential expiry or error.
fn events(
    feed: Feed,
    keep_alive: Duration,
    shutdown: tokio::sync::watch::Receiver<bool>,
    expires_in: Option<Duration>,
    slot: Slot,
) -> impl Stream<Item = Result<Bytes, Infallible>> {
    struct State {
        feed: Feed,
        shutdown: tokio::sync::watch::Receiver<bool>,
        expires_at: Option<tokio::time::Instant>,
        done: bool,
        _slot: Slot,
        _gauge: StreamGauge,
    }
    let state = State {
        _gauge: StreamGauge::open(),
        feed,
        shutdown,
        // Checked: an expiry too far away to be an instant is never.
        expires_at: expires_in.and_then(crate::runtime::deadline_in),
        done: false,
        _slot: slot,
    };
    stream::unfold(state, move |mut st| async move {
        if st.done {
            return None;
        }
        let expiry = crate::runtime::sleep_or_forever(
            st.expires_at
                .map(|at| at.saturating_duration_since(tokio::time::Instant::now())),
        );
        // `Feed::next` is cancel-safe, so racing it against timers loses nothing.
        let bytes = tokio::select! {
            delivery = st.feed.next() => match delivery {
                Ok(delivery) => protocol::sse_delivery(st.feed.channel(), &delivery),
                Err(err) => {
                    st.done = true;
                    error_event(&err.into())
                }
            },
            _ = tokio::time::sleep(keep_alive) => Bytes::from_static(tether_protocol::sse::KEEP_ALIVE),
            _ = expiry => {
                st.done = true;
                error_event(&ErrorInfo::new(ErrorCode::TokenExpired, "token expired: renew it and resume with Last-Event-ID"))
            }
            _ = crate::runtime::flipped(&mut st.shutdown) => {
                st.done = true;
                error_event(&ErrorInfo::new(ErrorCode::ShuttingDown, "the server is shutting down; reconnect and resume"))
            }
        };
        Some((Ok(bytes), st))
    })
    .fuse()
}

/// One open SSE stream in `tether_sse_streams`: counted while the body
/// exists, so a client that disconnects (the body is dropped unpolled)
/// leaves the gauge like one whose stream ended.
struct StreamGauge;

impl StreamGauge {
    fn open() -> StreamGauge {
        metrics::gauge!("tether_sse_streams").increment(1.0);
        StreamGauge
    }
}

impl Drop for StreamGauge {
    fn drop(&mut self) {
        metrics::gauge!("tether_sse_streams").decrement(1.0);
    }
}

fn error_event(err: &ErrorInfo) -> Bytes {
    protocol::sse_error(err)
}
