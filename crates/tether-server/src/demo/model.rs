//! The demo's built-in language model: an OpenAI-compatible
//! `POST /v1/chat/completions` that streams canned, readable answers at a
//! realistic pace, started in-process on a loopback port so the demo runs
//! offline. The LLM bridge talks to it exactly as it would to a real model.
//!
//! Answers are chosen by keywords of the last user message and split into
//! word-piece tokens. Directives in the message help tests:
//! - `[[tokens:N]]`: answer `Counting: t1 t2 ... tN`, one token each, so a
//!   duplicated or missing token is easy to spot;
//! - `[[tps:N]]`: N tokens per second for this answer.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use futures::stream::{self, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// Most numbered tokens a test may ask for.
const MAX_TOKENS: u64 = 20_000;

/// How the model behaves.
#[derive(Debug, Clone, Copy)]
pub struct ModelOptions {
    /// Pace of an answer (0: as fast as possible).
    pub tokens_per_second: f64,
    /// Delay before the first token, as a model takes to start.
    pub first_token: Duration,
}

/// The model, running in this process; stops when dropped.
pub struct Model {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Model {
    /// What to configure as `llm.base_url`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Model {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts the model on a free loopback port.
pub async fn start(options: ModelOptions) -> std::io::Result<Model> {
    let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
    let addr = listener.local_addr()?;
    let app = Router::new()
        .route("/v1/chat/completions", post(completions))
        .with_state(options);
    let task = tokio::spawn(async move {
        if let Err(err) = axum::serve(listener, app).await {
            tracing::error!(error = %err, "demo model stopped");
        }
    });
    Ok(Model { addr, task })
}

async fn completions(State(options): State<ModelOptions>, Json(request): Json<Value>) -> Response {
    let prompt = last_user_text(&request);
    let tokens = answer_tokens(&prompt);
    let model = request
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("tether-demo")
        .to_owned();
    let id = format!("chatcmpl-demo-{:016x}", rand::random::<u64>());
    if request.get("stream").and_then(Value::as_bool) != Some(true) {
        return Json(json!({
            "id": id, "object": "chat.completion", "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": tokens.concat()}, "finish_reason": "stop"}],
            "usage": usage(&request, tokens.len()),
        }))
        .into_response();
    }
    let tps = directive(&prompt, "tps").map_or(options.tokens_per_second, |n| n as f64);
    let include_usage = request
        .pointer("/stream_options/include_usage")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let chunk = |delta: Value, finish: Option<&str>| {
        json!({
            "id": id, "object": "chat.completion.chunk", "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        })
    };
    let count = tokens.len();
    let mut frames: Vec<(bool, Value)> = vec![(false, chunk(json!({"role": "assistant"}), None))];
    frames.extend(
        tokens
            .into_iter()
            .map(|t| (true, chunk(json!({"content": t}), None))),
    );
    frames.push((false, chunk(json!({}), Some("stop"))));
    if include_usage {
        frames.push((
            false,
            json!({"id": id, "object": "chat.completion.chunk", "model": model,
                   "choices": [], "usage": usage(&request, count)}),
        ));
    }
    let interval = (tps > 0.0).then(|| Duration::from_secs_f64(1.0 / tps));
    let first_token = options.first_token;
    let start = tokio::time::Instant::now() + first_token;
    let mut token_index = 0u32;
    let body = stream::iter(frames)
        .map(move |(is_token, frame)| {
            let due = if is_token {
                token_index += 1;
                interval.map(|i| start + i * (token_index - 1))
            } else {
                None
            };
            (due, frame)
        })
        .then(|(due, frame)| async move {
            if let Some(due) = due {
                tokio::time::sleep_until(due).await;
            }
            Ok::<_, Infallible>(Bytes::from(format!("data: {frame}\n\n")))
        })
        .chain(stream::once(async {
            Ok::<_, Infallible>(Bytes::from_static(b"data: [DONE]\n\n"))
        }));
    (
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        Body::from_stream(body),
    )
        .into_response()
}

fn usage(request: &Value, completion: usize) -> Value {
    let prompt: usize = request
        .get("messages")
        .and_then(Value::as_array)
        .map(|messages| {
            messages
                .iter()
                .filter_map(|m| m.get("content").and_then(Value::as_str))
                .map(|c| c.split_whitespace().count())
                .sum()
        })
        .unwrap_or(0);
    json!({"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion})
}

fn last_user_text(request: &Value) -> String {
    let Some(messages) = request.get("messages").and_then(Value::as_array) else {
        return String::new();
    };
    messages
        .iter()
        .rev()
        .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))
        .and_then(|m| match m.get("content") {
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Array(parts)) => Some(
                parts
                    .iter()
                    .filter_map(|p| p.get("text").and_then(Value::as_str))
                    .collect::<Vec<_>>()
                    .join(" "),
            ),
            _ => None,
        })
        .unwrap_or_default()
}

/// The number in `[[name:N]]`, if the prompt has one.
fn directive(prompt: &str, name: &str) -> Option<u64> {
    let start = prompt.find(&format!("[[{name}:"))? + name.len() + 3;
    let len = prompt[start..].find("]]")?;
    prompt[start..start + len].trim().parse().ok()
}

/// The answer to `prompt`, as the tokens the model streams.
pub fn answer_tokens(prompt: &str) -> Vec<String> {
    if let Some(n) = directive(prompt, "tokens") {
        let mut tokens = vec!["Counting:".to_owned()];
        tokens.extend((1..=n.min(MAX_TOKENS)).map(|i| format!(" t{i}")));
        return tokens;
    }
    tokenize(&answer_text(prompt))
}

/// Splits text into word pieces the way a model's tokens look: each word
/// with its leading space, long words in two or three pieces.
pub fn tokenize(text: &str) -> Vec<String> {
    let mut tokens = Vec::new();
    let mut word = String::new();
    let flush = |word: &mut String, tokens: &mut Vec<String>| {
        if word.is_empty() {
            return;
        }
        let chars: Vec<char> = word.chars().collect();
        let mut start = 0;
        while start < chars.len() {
            let len = if chars.len() - start > 7 {
                5
            } else {
                chars.len() - start
            };
            tokens.push(chars[start..start + len].iter().collect());
            start += len;
        }
        word.clear();
    };
    for c in text.chars() {
        if c == ' ' || c == '\n' {
            flush(&mut word, &mut tokens);
            word.push(c);
        } else {
            word.push(c);
        }
    }
    flush(&mut word, &mut tokens);
    tokens
}

fn answer_text(prompt: &str) -> String {
    let lower = prompt.to_lowercase();
    let has = |words: &[&str]| words.iter().any(|w| lower.contains(w));
    let quoted: String = {
        let clean = prompt.split_whitespace().collect::<Vec<_>>().join(" ");
        if clean.chars().count() > 60 {
            format!("{}…", clean.chars().take(60).collect::<String>())
        } else {
            clean
        }
    };
    if has(&[
        "refresh",
        "resume",
        "reconnect",
        "drop",
        "offline",
        "network",
        "reload",
    ]) {
        return RESUME.into();
    }
    if has(&["stop", "cancel", "interrupt", "abort"]) {
        return CANCEL.into();
    }
    if has(&[
        "human", "operator", "person", "handoff", "hand off", "support",
    ]) {
        return HANDOFF.into();
    }
    if has(&["presence", "who is", "online", "device", "tab"]) {
        return PRESENCE.into();
    }
    if has(&["agent", "planner", "trip", "travel", "multi"]) {
        return AGENTS.into();
    }
    let greeting = lower
        .split(|c: char| !c.is_alphanumeric())
        .next()
        .is_some_and(|w| ["hi", "hello", "hey", "hallo", "bonjour"].contains(&w));
    if greeting {
        return HELLO.into();
    }
    format!("You asked: “{quoted}”. {GENERIC}")
}

const RESUME: &str = "Good question. When your connection drops, nothing is lost. Every channel in Tether is a durable, ordered log, and your browser remembers the last position it saw. When it reconnects, it sends that position back, and the server replays exactly what you missed before switching to the live stream: no gap, no duplicate.\n\nA page refresh works the same way. The SDK keeps the conversation and its position in session storage, so the page shows the answer so far at once and fetches only the rest. Try it now: press refresh while I am still typing, or use the “Simulate network drop” button, and watch this very message carry on where it was.";

const CANCEL: &str = "You can interrupt me at any time. The Stop button publishes a small cancel message on this conversation that points at my response. The server marks the response as cancelled right away, so even if the model keeps producing text, no further token is written, and everybody, including a tab you open later, sees the same final state.\n\nCancelling is just another message in the log, so it works the same over WebSocket, over plain HTTP, or from a script with curl.";

const HANDOFF: &str = "If you would rather talk to a person, an operator can take over this conversation from the Operator page. When they claim it, I stop answering and my status changes to handed-off, so you always know who you are talking to. The operator sees the whole history, writes to you in this same conversation, and hands it back to me when they are done.\n\nClaiming needs the operator capability, so a regular user cannot pretend to be an operator.";

const PRESENCE: &str = "Presence tells you who is here right now. Each open tab or device is one member, so if you open this conversation twice you will see yourself twice in the list, and you will see me with my current status: thinking, streaming or idle. Presence is live state rather than history, and it stays consistent when connections drop and come back.";

const AGENTS: &str = "Several agents can work on one conversation at once. On the Planner page, a coordinator splits a trip request into tasks for a flights agent, a hotels agent and a weather agent. Each of them streams its own part straight into the conversation and reports its progress through presence, so no central process relays their tokens. When all three are done, the coordinator writes the combined plan.";

const HELLO: &str = "Hello! I am the demo assistant. My answers come from a small built-in fake language model, so everything here runs offline, but they travel through Tether exactly like a real model's would: one message that grows token by token. Ask me about resuming after a refresh, stopping an answer, talking to a human, or who is online.";

const GENERIC: &str = "Here is how your question travels. Your message was published to this conversation's channel and stored durably. I saw it, asked the language model for an answer, and the model's tokens are being appended to one single message, which every open tab receives live.\n\nBecause the channel is an ordered log, a tab that joins late, or a page that refreshes in the middle of an answer, first receives the whole answer so far and then the rest as it is written. Nothing is duplicated and nothing goes missing. You can test it right now: refresh the page, open a second tab, or press Stop.";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbered_tokens_on_request() {
        assert_eq!(
            answer_tokens("go [[tokens:3]]").concat(),
            "Counting: t1 t2 t3"
        );
    }

    #[test]
    fn tokens_join_back_to_the_text() {
        for prompt in ["hello", "what if I refresh?", "anything", "talk to a human"] {
            let text = answer_text(prompt);
            let tokens = tokenize(&text);
            assert!(tokens.len() > 40, "{prompt}: {}", tokens.len());
            assert_eq!(tokens.concat(), text);
        }
    }

    #[test]
    fn directives_parse() {
        assert_eq!(directive("[[tps: 80 ]] hi", "tps"), Some(80));
        assert_eq!(directive("[[tps:x]]", "tps"), None);
    }
}
