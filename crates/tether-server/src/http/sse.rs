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
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::stream::{self, Stream, StreamExt};
use serde::Deserialize;
use tether_core::{ErrorCode, ErrorInfo};

use super::ApiError;
use crate::app::App;
use crate::auth::extract::Caller;
use crate::engine::{Start, Subscription};
use crate::limits::Slot;
use crate::protocol::{self, MAX_REWIND};
use tether_core::capability::Operation as Cap;

/// Query of the SSE endpoint.
#[derive(Debug, Default, Deserialize)]
pub struct StreamParams {
    from: Option<String>,
    rewind: Option<usize>,
    /// Also stream presence (`presence-sync`, then `presence` events).
    #[serde(default)]
    presence: bool,
}

/// `GET /channels/{channel}/stream`
pub async fn stream(
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
    let subscription = app.engine.subscribe(channel, start);
    // The stream ends when the credential expires; the client renews and
    // resumes with Last-Event-ID.
    let expires_in = caller
        .expires_at
        .map(|exp| Duration::from_secs(exp.saturating_sub(jsonwebtoken::get_current_timestamp())));
    let body = events(
        subscription,
        app.config.heartbeat(),
        app.shutdown.clone(),
        expires_in,
        slot,
    );
    let mut response = Body::from_stream(body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(response)
}

/// Deliveries buffered between the subscription task and the socket. Small:
/// a slow reader should make the subscription lag and catch up from the log,
/// not pile up here.
const SSE_BUFFER: usize = 16;

/// The event stream: deliveries, keep-alive comments when idle, and an end
/// on shutdown or error.
///
/// The subscription runs in its own task feeding a small channel, so that
/// the keep-alive timer never cancels a subscription step half-way.
fn events(
    mut subscription: Subscription,
    keep_alive: Duration,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
    expires_in: Option<Duration>,
    slot: Slot,
) -> impl Stream<Item = Result<Bytes, Infallible>> {
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(SSE_BUFFER);
    tokio::spawn(async move {
        let _slot = slot;
        metrics::gauge!("tether_sse_streams").increment(1.0);
        let expiry = crate::app::sleep_or_forever(expires_in);
        tokio::pin!(expiry);
        loop {
            let frame = tokio::select! {
                _ = tx.closed() => break,
                _ = &mut expiry => {
                    let err = ErrorInfo::new(ErrorCode::TokenExpired, "token expired: renew it and resume with Last-Event-ID");
                    let _ = tx.send(error_event(&err)).await;
                    break;
                }
                _ = crate::app::flipped(&mut shutdown) => {
                    let err = ErrorInfo::new(ErrorCode::ShuttingDown, "the server is shutting down; reconnect and resume");
                    let _ = tx.send(error_event(&err)).await;
                    break;
                }
                delivery = subscription.next() => delivery,
            };
            let (bytes, last) = match frame {
                Ok(delivery) => (
                    protocol::sse_delivery(subscription.channel(), &delivery),
                    false,
                ),
                Err(err) => (error_event(&err), true),
            };
            if tx.send(bytes).await.is_err() || last {
                break;
            }
        }
        metrics::gauge!("tether_sse_streams").decrement(1.0);
    });
    stream::unfold(rx, move |mut rx| async move {
        let bytes = match tokio::time::timeout(keep_alive, rx.recv()).await {
            Ok(Some(bytes)) => bytes,
            Ok(None) => return None,
            Err(_) => Bytes::from_static(b": keep-alive\n\n"),
        };
        Some((Ok(bytes), rx))
    })
    .fuse()
}

fn error_event(err: &ErrorInfo) -> Bytes {
    let data = serde_json::to_string(err).unwrap_or_default();
    Bytes::from(format!("event: error\ndata: {data}\n\n"))
}
