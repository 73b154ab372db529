//! A deterministic fake of an OpenAI-compatible chat completions server,
//! so tests, demos and benchmarks of the bridge need no network and no
//! model: `tether fake-llm --tokens-per-second 150`.
//!
//! `POST /v1/chat/completions` answers with [`answer`]: an echo of the last
//! user message, then numbered tokens ` t1 t2 ...`. With `stream: true` it
//! sends the real SSE chunk format (`chat.completion.chunk` objects, a
//! final chunk with `finish_reason`, a `usage` chunk when
//! `stream_options.include_usage` is set, then `data: [DONE]`), paced at
//! the configured rate; otherwise one `chat.completion`.
//!
//! Directives in the last user message steer it, for tests:
//! - `[[tokens:N]]`: N numbered tokens (default [`FakeOptions::tokens`]);
//! - `[[tps:N]]`: N tokens per second for this request (0: unpaced);
//! - `[[fail:CODE]]`: answer HTTP CODE with an OpenAI-style error body;
//! - `[[malformed]]`: a garbage chunk half-way through the stream;
//! - `[[stall]]`: stop sending half-way, keeping the connection open;
//! - `[[no-usage]]`: never report usage;
//! - `[[no-stream]]`: answer in one piece even when asked to stream, as
//!   some servers do.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use futures::stream::{self, StreamExt};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// Most tokens one answer may have, so a typo cannot make it endless.
const MAX_TOKENS: usize = 1_000_000;

/// How the fake behaves.
#[derive(Debug, Clone)]
pub struct FakeOptions {
    /// Pace of a streamed answer; 0 sends as fast as possible.
    pub tokens_per_second: f64,
    /// Numbered tokens in an answer without `[[tokens:N]]`.
    pub tokens: usize,
    /// When set, requests must carry `Authorization: Bearer <key>`.
    pub api_key: Option<String>,
}

impl Default for FakeOptions {
    fn default() -> FakeOptions {
        FakeOptions {
            tokens_per_second: 150.0,
            tokens: 50,
            api_key: None,
        }
    }
}

/// `tether fake-llm` flags.
#[derive(Debug, clap::Args)]
pub struct FakeLlmArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:7401")]
    pub listen: SocketAddr,
    /// Pace of streamed answers (0: as fast as possible).
    #[arg(long, default_value_t = 150.0)]
    pub tokens_per_second: f64,
    /// Numbered tokens per answer when the prompt does not say.
    #[arg(long, default_value_t = 50)]
    pub tokens: usize,
    /// Require this bearer token.
    #[arg(long)]
    pub api_key: Option<String>,
}

/// A fake running in this process; stops when dropped.
pub struct FakeLlm {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl FakeLlm {
    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// What to configure as `llm.base_url`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for FakeLlm {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts the fake on `addr` (port 0 picks a free one).
pub async fn serve(addr: SocketAddr, options: FakeOptions) -> std::io::Result<FakeLlm> {
    let listener = TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let app = router(options);
    let task = tokio::spawn(async move {
        if let Err(err) = axum::serve(listener, app).await {
            tracing::error!(error = %err, "fake LLM stopped");
        }
    });
    Ok(FakeLlm { addr, task })
}

/// The fake's routes.
pub fn router(options: FakeOptions) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(completions))
        .with_state(options)
}

/// `tether fake-llm`: serves until Ctrl-C.
pub fn run(args: FakeLlmArgs) -> ExitCode {
    crate::app::block_on(async move {
        let options = FakeOptions {
            tokens_per_second: args.tokens_per_second.max(0.0),
            tokens: args.tokens.min(MAX_TOKENS),
            api_key: args.api_key,
        };
        let fake = match serve(args.listen, options).await {
            Ok(fake) => fake,
            Err(err) => {
                eprintln!("tether: cannot listen on {}: {err}", args.listen);
                return ExitCode::FAILURE;
            }
        };
        println!("listening on {}", fake.base_url());
        let _ = tokio::signal::ctrl_c().await;
        ExitCode::SUCCESS
    })
}

/// The tokens of the answer to `prompt` with `count` numbered tokens.
pub fn answer_tokens(prompt: &str, count: usize) -> Vec<String> {
    let mut tokens = Vec::with_capacity(count + 1);
    tokens.push(format!("You said: {prompt}."));
    tokens.extend((1..=count).map(|i| format!(" t{i}")));
    tokens
}

/// The whole answer to `prompt` with `count` numbered tokens.
pub fn answer(prompt: &str, count: usize) -> String {
    answer_tokens(prompt, count).concat()
}

#[derive(Debug, Deserialize)]
struct Request {
    #[serde(default)]
    model: Option<String>,
    messages: Vec<RequestMessage>,
    #[serde(default)]
    stream: bool,
    #[serde(default)]
    max_tokens: Option<usize>,
    #[serde(default)]
    stream_options: Option<super::openai::StreamOptions>,
}

#[derive(Debug, Deserialize)]
struct RequestMessage {
    role: String,
    #[serde(default)]
    content: Value,
}

/// What one request asks of the fake.
struct Plan {
    id: String,
    model: String,
    tokens: Vec<String>,
    finish_reason: &'static str,
    prompt_tokens: usize,
    tokens_per_second: f64,
    usage: bool,
    malformed: bool,
    stall: bool,
}

async fn completions(
    State(options): State<FakeOptions>,
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
    let prompt = last_user_text(&request.messages);
    if let Some(code) = directive(&prompt, "fail") {
        let status = u16::try_from(code)
            .ok()
            .and_then(|c| StatusCode::from_u16(c).ok())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return error(status, &format!("fake failure {}", status.as_u16()));
    }
    let count = directive(&prompt, "tokens")
        .map_or(options.tokens, |n| n as usize)
        .min(MAX_TOKENS);
    let mut tokens = answer_tokens(&prompt, count);
    let mut finish_reason = "stop";
    if let Some(max) = request.max_tokens.filter(|&m| m < tokens.len()) {
        tokens.truncate(max);
        finish_reason = "length";
    }
    let plan = Plan {
        id: format!("chatcmpl-fake-{:016x}", rand::random::<u64>()),
        model: request.model.unwrap_or_else(|| "fake".into()),
        tokens,
        finish_reason,
        prompt_tokens: request
            .messages
            .iter()
            .map(|m| text_of(&m.content).split_whitespace().count())
            .sum(),
        tokens_per_second: directive(&prompt, "tps")
            .map_or(options.tokens_per_second, |n| n as f64),
        usage: request.stream_options.is_some_and(|o| o.include_usage)
            && !prompt.contains("[[no-usage]]"),
        malformed: prompt.contains("[[malformed]]"),
        stall: prompt.contains("[[stall]]"),
    };
    if request.stream && !prompt.contains("[[no-stream]]") {
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

/// The SSE stream, paced.
fn streamed(plan: Plan) -> Response {
    let chunk = |delta: Value, finish: Option<&str>| {
        json!({
            "id": plan.id,
            "object": "chat.completion.chunk",
            "model": plan.model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        })
    };
    let mut events: Vec<Value> = Vec::with_capacity(plan.tokens.len() + 3);
    events.push(chunk(json!({"role": "assistant", "content": ""}), None));
    events.extend(
        plan.tokens
            .iter()
            .map(|t| chunk(json!({"content": t}), None)),
    );
    events.push(chunk(json!({}), Some(plan.finish_reason)));
    if plan.usage {
        events.push(json!({
            "id": plan.id, "object": "chat.completion.chunk", "model": plan.model,
            "choices": [], "usage": usage(&plan),
        }));
    }
    let mut frames: Vec<Bytes> = events
        .iter()
        .map(|e| Bytes::from(format!("data: {e}\n\n")))
        .collect();
    frames.push(Bytes::from_static(b"data: [DONE]\n\n"));
    // Token `i` is due at start + i / rate; frames before the first token
    // and after the last go out without waiting.
    let half = frames.len() / 2;
    let interval = (plan.tokens_per_second > 0.0)
        .then(|| Duration::from_secs_f64(1.0 / plan.tokens_per_second));
    let start = tokio::time::Instant::now();
    let (malformed, stall) = (plan.malformed, plan.stall);
    let body = stream::iter(frames.into_iter().enumerate()).then(move |(i, frame)| async move {
        if let Some(interval) = interval {
            tokio::time::sleep_until(start + interval * i as u32).await;
        }
        if i == half && stall {
            std::future::pending::<()>().await;
        }
        if i == half && malformed {
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

/// The text of the last user message (content parts joined).
fn last_user_text(messages: &[RequestMessage]) -> String {
    messages
        .iter()
        .rev()
        .find(|m| m.role == "user")
        .map(|m| text_of(&m.content))
        .unwrap_or_default()
}

fn text_of(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    }
}

/// The number in `[[name:N]]`, if the prompt has one.
fn directive(prompt: &str, name: &str) -> Option<u64> {
    let start = prompt.find(&format!("[[{name}:"))? + name.len() + 3;
    let len = prompt[start..].find("]]")?;
    prompt[start..start + len].trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directives_parse() {
        assert_eq!(directive("a [[tokens:12]] b", "tokens"), Some(12));
        assert_eq!(directive("[[tps: 0 ]]", "tps"), Some(0));
        assert_eq!(directive("[[tokens:x]]", "tokens"), None);
        assert_eq!(directive("[[tokens:5", "tokens"), None);
        assert_eq!(directive("nothing", "fail"), None);
    }

    #[test]
    fn answers_are_deterministic() {
        assert_eq!(answer("hi", 3), "You said: hi. t1 t2 t3");
        assert_eq!(answer_tokens("hi", 0), vec!["You said: hi."]);
    }
}
