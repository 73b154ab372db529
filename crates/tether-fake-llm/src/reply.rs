//! Answering a request: one `chat.completion`, or the paced SSE stream of
//! `chat.completion.chunk`s, or an OpenAI-style error.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::stream::{self, StreamExt};
use serde_json::{Value, json};

use crate::request::{Request, directive};
use crate::{FakeOptions, MAX_TOKENS, Prompt};

/// What one request asks of the fake.
struct Plan {
    id: String,
    model: String,
    tokens: Vec<String>,
    finish_reason: &'static str,
    prompt_tokens: usize,
    tokens_per_second: f64,
    first_token: Duration,
    usage: bool,
    malformed: bool,
    stall: bool,
}

/// `POST /v1/chat/completions`.
pub(crate) async fn completions(
    State(options): State<Arc<FakeOptions>>,
    headers: HeaderMap,
    body: Result<Json<Request>, JsonRejection>,
) -> Response {
    if let Some(key) = &options.api_key {
        let sent = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        if sent != Some(format!("Bearer {key}").as_str()) {
            return error(StatusCode::UNAUTHORIZED, "invalid API key");
        }
    }
    let request = match body {
        Ok(Json(request)) => request,
        Err(rejection) => return error(StatusCode::BAD_REQUEST, &rejection.body_text()),
    };
    let text = request.last_user_text();
    if let Some(code) = directive(&text, "fail") {
        let status = u16::try_from(code)
            .ok()
            .and_then(|c| StatusCode::from_u16(c).ok())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return error(status, &format!("fake failure {}", status.as_u16()));
    }
    let asked = directive(&text, "tokens");
    let prompt = Prompt {
        text: &text,
        tokens: asked
            .map_or(options.tokens, |n| usize::try_from(n).unwrap_or(MAX_TOKENS))
            .min(MAX_TOKENS),
        tokens_asked: asked.is_some(),
    };
    let mut tokens = options.answers.tokens(&prompt);
    let mut finish_reason = "stop";
    if let Some(max) = request.max_tokens.filter(|&m| m < tokens.len()) {
        tokens.truncate(max);
        finish_reason = "length";
    }
    let plan = Plan {
        id: format!("chatcmpl-fake-{:016x}", rand::random::<u64>()),
        model: request
            .model
            .clone()
            .unwrap_or_else(|| options.model.clone()),
        tokens,
        finish_reason,
        prompt_tokens: request.prompt_words(),
        tokens_per_second: directive(&text, "tps").map_or(options.tokens_per_second, |n| n as f64),
        first_token: options.first_token,
        usage: request
            .stream_options
            .as_ref()
            .is_some_and(|o| o.include_usage)
            && !text.contains("[[no-usage]]"),
        malformed: text.contains("[[malformed]]"),
        stall: text.contains("[[stall]]"),
    };
    if request.stream && !text.contains("[[no-stream]]") {
        streamed(plan)
    } else {
        whole(plan)
    }
}

/// A non-streaming `chat.completion`.
fn whole(plan: Plan) -> Response {
    Json(json!({
        "id": plan.id,
        "object": "chat.completion",
        "model": plan.model,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": plan.tokens.concat()},
            "finish_reason": plan.finish_reason,
        }],
        "usage": usage(&plan),
    }))
    .into_response()
}

/// The SSE stream. Token `i` is due at start + first-token delay + i / rate;
/// the frames before the first token and after the last go out at once.
fn streamed(plan: Plan) -> Response {
    let chunk = |delta: Value, finish: Option<&str>| {
        json!({
            "id": plan.id,
            "object": "chat.completion.chunk",
            "model": plan.model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        })
    };
    // (index of the token, or None for a frame that is not a token)
    let mut events: Vec<(Option<u32>, Value)> = Vec::with_capacity(plan.tokens.len() + 3);
    events.push((
        None,
        chunk(json!({"role": "assistant", "content": ""}), None),
    ));
    events.extend(
        plan.tokens
            .iter()
            .zip(0u32..)
            .map(|(t, i)| (Some(i), chunk(json!({"content": t}), None))),
    );
    events.push((None, chunk(json!({}), Some(plan.finish_reason))));
    if plan.usage {
        events.push((
            None,
            json!({
                "id": plan.id, "object": "chat.completion.chunk", "model": plan.model,
                "choices": [], "usage": usage(&plan),
            }),
        ));
    }
    let mut frames: Vec<(Option<u32>, Bytes)> = events
        .into_iter()
        .map(|(i, e)| (i, Bytes::from(format!("data: {e}\n\n"))))
        .collect();
    frames.push((None, Bytes::from_static(b"data: [DONE]\n\n")));
    let half = frames.len() / 2;
    let interval = (plan.tokens_per_second > 0.0)
        .then(|| Duration::from_secs_f64(1.0 / plan.tokens_per_second));
    let start = tokio::time::Instant::now() + plan.first_token;
    let (malformed, stall) = (plan.malformed, plan.stall);
    let body =
        stream::iter(frames.into_iter().enumerate()).then(move |(n, (token, frame))| async move {
            if let Some(i) = token {
                let due = start + interval.map_or(Duration::ZERO, |gap| gap * i);
                tokio::time::sleep_until(due).await;
            }
            if n == half && stall {
                std::future::pending::<()>().await;
            }
            if n == half && malformed {
                return Ok::<_, Infallible>(Bytes::from_static(b"data: {\"choices\": [oops\n\n"));
            }
            Ok(frame)
        });
    (
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        Body::from_stream(body),
    )
        .into_response()
}

fn usage(plan: &Plan) -> Value {
    let completion = plan.tokens.len();
    json!({
        "prompt_tokens": plan.prompt_tokens,
        "completion_tokens": completion,
        "total_tokens": plan.prompt_tokens + completion,
    })
}

fn error(status: StatusCode, message: &str) -> Response {
    let body =
        json!({"error": {"message": message, "type": "fake_error", "code": status.as_u16()}});
    (status, Json(body)).into_response()
}
