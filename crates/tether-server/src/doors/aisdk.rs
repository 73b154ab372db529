//! `GET /channels/{channel}/aisdk/stream`: the channel's in-progress
//! response as a Vercel AI SDK **UI message stream**, for
//! `useChat({ resume: true })`.
//!
//! The AI SDK's reconnect request expects either `204 No Content` (nothing
//! to resume) or an SSE body of UI message chunks, replayed from the
//! *beginning* of the response (`DefaultChatTransport` resets the message
//! on the first `start` chunk of a resumed stream). So this endpoint finds
//! the channel's latest streamed response and, if it is still `streaming`,
//! sends `start`, `text-start`, the whole text so far as one `text-delta`,
//! then each later append as a `text-delta`, and at the end `text-end`,
//! `finish` (or `abort` / `error`) and `data: [DONE]`.
//!
//! "Streamed response" means a message with an `extras.stream` status, as
//! written by the bridge, the SDKs' `stream_response` or any agent that
//! follows the convention. The chunk JSON is the AI SDK's wire format, not
//! Tether's, so it is built here at the edge rather than in `protocol`.

use std::convert::Infallible;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::stream::{self, Stream, StreamExt};
use serde::Serialize;
use serde_json::{Map, Value};
use tether_core::capability::Operation as Cap;
use tether_core::fold::STREAM_STATUS;
use tether_core::{Action, ChannelName, ErrorCode, ErrorInfo, Message};
use tether_store::{Direction, HistoryQuery};
use tokio::sync::{mpsc, watch};

use super::caller::Caller;
use crate::engine::{Continuity, Delivery, Engine, Start, Subscription};
use crate::error::ApiError;
use crate::limits::Slot;
use crate::protocol;
use crate::state::App;

/// Messages looked at, newest first, for the latest streamed response:
/// the user's prompt, cancel requests and the like sit on top of it.
const SCAN: usize = 50;
/// Chunks buffered between the subscription task and the socket.
const BUFFER: usize = 16;

/// One UI message chunk, as the AI SDK's `uiMessageChunkSchema` defines it.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
enum UiChunk<'a> {
    Start {
        #[serde(rename = "messageId")]
        message_id: &'a str,
    },
    TextStart {
        id: &'a str,
    },
    TextDelta {
        id: &'a str,
        delta: &'a str,
    },
    TextEnd {
        id: &'a str,
    },
    Finish {
        #[serde(rename = "finishReason")]
        finish_reason: &'a str,
    },
    Abort {
        reason: &'a str,
    },
    Error {
        #[serde(rename = "errorText")]
        error_text: &'a str,
    },
}

impl UiChunk<'_> {
    fn sse(&self) -> Bytes {
        let json = serde_json::to_string(self).unwrap_or_default();
        Bytes::from(format!("data: {json}\n\n"))
    }
}

/// How a response ended, from its `extras.stream`.
#[derive(Debug, Clone, PartialEq)]
enum End {
    Complete,
    Cancelled,
    Failed(String),
}

/// `GET /channels/{channel}/aisdk/stream`
///
/// The channel's in-progress response as an AI SDK UI message stream
/// (`useChat({ resume: true })`).
#[utoipa::path(
    get,
    operation_id = "aisdk_stream",
    path = "/channels/{channel}/aisdk/stream",
    tag = "streams",
    params(("channel" = tether_protocol::openapi::ChannelName, Path, description = "The channel, e.g. `conversation:42`.")),
    responses(
        (status = 200, content_type = "text/event-stream", body = String, description = "UI message chunks from the start of the response (`start`, `text-start`, `text-delta`..., `text-end`, `finish`, `abort` or `error`), then `data: [DONE]`; header `x-vercel-ai-ui-message-stream: v1`."),
        (status = 204, description = "No response is streaming on the channel: nothing to resume."),
        (status = "4XX", description = "Refused; the code says why (docs/errors.md).", body = tether_protocol::ErrorBody),
        (status = "5XX", description = "Not applied: server or storage failure, shutting down.", body = tether_protocol::ErrorBody),
    )
)]
pub(crate) async fn stream(
    State(app): State<App>,
    Caller(caller): Caller,
    Path(channel): Path<String>,
) -> Result<Response, ApiError> {
    let channel = protocol::channel(&channel)?;
    caller.require(&channel, Cap::Subscribe)?;
    let Some(response) = active_response(&app.engine, &channel).await? else {
        return Ok(StatusCode::NO_CONTENT.into_response());
    };
    let slot = app.slots.acquire(&caller.key)?;
    // Everything after the create; what the snapshot holds is skipped by
    // version, so the join between the two has no gap and no repeat.
    let subscription = app.engine.subscribe(
        channel,
        Start {
            from: Some(response.serial),
            ..Start::default()
        },
    );
    // Like SSE, the stream ends when the credential expires (40101); the
    // client renews and reconnects, which resumes from the start.
    let expires_at = super::credential_left(&caller).and_then(crate::runtime::deadline_in);
    let body = chunks(
        response,
        subscription,
        app.config.heartbeat(),
        app.shutdown.clone(),
        expires_at,
        slot,
    );
    let mut reply = super::event_stream(Body::from_stream(body));
    reply.headers_mut().insert(
        "x-vercel-ai-ui-message-stream",
        HeaderValue::from_static("v1"),
    );
    Ok(reply)
}

/// The latest message with a stream status, if that status is
/// `streaming`. An older response still marked `streaming` under a newer
/// one is not resumed: its writer is gone.
async fn active_response(
    engine: &Engine,
    channel: &ChannelName,
) -> Result<Option<Message>, ErrorInfo> {
    let page = engine
        .history(
            channel,
            HistoryQuery {
                direction: Direction::Backwards,
                limit: SCAN,
                ..HistoryQuery::default()
            },
        )
        .await?;
    let latest = page.messages.into_iter().find(|m| {
        m.action != Action::Delete
            && m.extras
                .as_ref()
                .is_some_and(|e| e.get(STREAM_STATUS).is_some_and(Value::is_string))
    });
    Ok(latest.filter(|m| end_of(m.extras.as_ref()).is_none()))
}

/// `None` while streaming; otherwise how it ended. Extras without a
/// status (replaced by a writer that dropped it) count as complete rather
/// than leaving a reader waiting forever.
fn end_of(extras: Option<&Map<String, Value>>) -> Option<End> {
    let extras = extras?;
    match extras.get(STREAM_STATUS).and_then(Value::as_str) {
        Some("streaming") => None,
        Some("cancelled") => Some(End::Cancelled),
        Some("error") => Some(End::Failed(
            extras
                .get("error")
                .and_then(|e| e.get("message"))
                .and_then(Value::as_str)
                .unwrap_or("the response failed")
                .to_owned(),
        )),
        _ => Some(End::Complete),
    }
}

/// The body: chunks from a task (a subscription must run to completion,
/// not race timers), with keep-alive comments while the model is quiet.
fn chunks(
    response: Message,
    subscription: Subscription,
    keep_alive: Duration,
    shutdown: watch::Receiver<bool>,
    expires_at: Option<tokio::time::Instant>,
    slot: Slot,
) -> impl Stream<Item = Result<Bytes, Infallible>> {
    let (tx, rx) = mpsc::channel::<Bytes>(BUFFER);
    tokio::spawn(async move {
        let _slot = slot;
        follow(response, subscription, shutdown, expires_at, &tx).await;
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

/// Sends the response from its start, then its growth, until it ends (or
/// the server stops, or the caller's token expires).
async fn follow(
    response: Message,
    mut subscription: Subscription,
    mut shutdown: watch::Receiver<bool>,
    expires_at: Option<tokio::time::Instant>,
    tx: &mpsc::Sender<Bytes>,
) {
    let expiry = async move {
        match expires_at {
            Some(at) => tokio::time::sleep_until(at).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(expiry);
    let text_id = format!("text-{}", response.serial);
    let mut text = response.data.as_str().unwrap_or_default().to_owned();
    let mut version = response.version.serial;
    let mut out = vec![
        UiChunk::Start {
            message_id: &response.id,
        }
        .sse(),
        UiChunk::TextStart { id: &text_id }.sse(),
    ];
    if !text.is_empty() {
        out.push(
            UiChunk::TextDelta {
                id: &text_id,
                delta: &text,
            }
            .sse(),
        );
    }
    let mut end = end_of(response.extras.as_ref());
    while end.is_none() {
        for bytes in out.drain(..) {
            if tx.send(bytes).await.is_err() {
                return; // the client left
            }
        }
        let delivery = tokio::select! {
            () = tx.closed() => return,
            () = crate::runtime::flipped(&mut shutdown) => {
                end = Some(End::Failed("the server is shutting down; reconnect to resume".into()));
                break;
            }
            () = &mut expiry => {
                end = Some(End::Failed(format!(
                    "token expired ({}): renew it and reconnect to resume",
                    ErrorCode::TokenExpired.code()
                )));
                break;
            }
            delivery = subscription.next() => delivery,
        };
        let event = match delivery {
            Ok(Delivery::Event { event, .. }) => event,
            Ok(Delivery::Attached {
                continuity: Continuity::Lost,
                ..
            }) => {
                end = Some(End::Failed("the response is no longer in the log".into()));
                break;
            }
            Ok(_) => continue,
            Err(err) => {
                end = Some(End::Failed(err.to_string()));
                break;
            }
        };
        let message = event.message();
        if message.serial != response.serial || message.version.serial <= version {
            continue;
        }
        version = message.version.serial;
        match message.action {
            Action::Append => {
                let delta = message.data.as_str().unwrap_or_default();
                if !delta.is_empty() {
                    text.push_str(delta);
                    out.push(
                        UiChunk::TextDelta {
                            id: &text_id,
                            delta,
                        }
                        .sse(),
                    );
                }
                if message.extras.is_some() {
                    end = end_of(message.extras.as_ref());
                }
            }
            Action::Update | Action::Create => {
                let whole = message.data.as_str().unwrap_or_default();
                match whole.strip_prefix(text.as_str()) {
                    Some(rest) if !rest.is_empty() => {
                        out.push(
                            UiChunk::TextDelta {
                                id: &text_id,
                                delta: rest,
                            }
                            .sse(),
                        );
                        text = whole.to_owned();
                    }
                    Some(_) => {}
                    // A UI message stream can only add text.
                    None => end = Some(End::Failed("the response was rewritten".into())),
                }
                end = end.or_else(|| end_of(message.extras.as_ref()));
            }
            Action::Delete => end = Some(End::Cancelled),
        }
    }
    out.push(UiChunk::TextEnd { id: &text_id }.sse());
    out.push(match &end {
        Some(End::Cancelled) => UiChunk::Abort {
            reason: "cancelled",
        }
        .sse(),
        Some(End::Failed(reason)) => UiChunk::Error { error_text: reason }.sse(),
        Some(End::Complete) | None => UiChunk::Finish {
            finish_reason: "stop",
        }
        .sse(),
    });
    out.push(Bytes::from_static(b"data: [DONE]\n\n"));
    for bytes in out {
        if tx.send(bytes).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn chunks_match_the_ai_sdk_schema() {
        let cases = [
            (
                UiChunk::Start { message_id: "m" },
                json!({"type":"start","messageId":"m"}),
            ),
            (
                UiChunk::TextDelta {
                    id: "t",
                    delta: "Hi",
                },
                json!({"type":"text-delta","id":"t","delta":"Hi"}),
            ),
            (
                UiChunk::Finish {
                    finish_reason: "stop",
                },
                json!({"type":"finish","finishReason":"stop"}),
            ),
            (
                UiChunk::Error { error_text: "x" },
                json!({"type":"error","errorText":"x"}),
            ),
        ];
        for (chunk, expected) in cases {
            assert_eq!(serde_json::to_value(&chunk).unwrap(), expected);
        }
    }

    #[test]
    fn status_to_end() {
        let extras = |v: Value| v.as_object().cloned();
        assert_eq!(end_of(extras(json!({"stream":"streaming"})).as_ref()), None);
        assert_eq!(
            end_of(extras(json!({"stream":"cancelled"})).as_ref()),
            Some(End::Cancelled)
        );
        assert_eq!(
            end_of(extras(json!({"stream":"error","error":{"message":"boom"}})).as_ref()),
            Some(End::Failed("boom".into()))
        );
        assert_eq!(end_of(extras(json!({})).as_ref()), Some(End::Complete));
    }
}
