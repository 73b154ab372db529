//! The upstream: an OpenAI-compatible `POST /v1/chat/completions` with
//! `stream: true`, read chunk by chunk.
//!
//! Only the fields every compatible server (OpenAI, vLLM, llama.cpp,
//! Ollama) agrees on are used: `choices[0].delta.content`,
//! `choices[0].finish_reason`, `usage`, and an `error` object some servers
//! send mid-stream. Every way the upstream can fail is an
//! [`UpstreamError`] whose message is safe to store in a channel for
//! browsers to read: it names the failure, never the URL or the key.

use std::collections::VecDeque;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::sse::SseDecoder;

/// Most bytes of an error body kept for the message: enough for the
/// upstream's explanation, not enough to flood a channel.
const MAX_ERROR_BODY: usize = 4096;
/// Most bytes of a non-streaming answer (from a server that ignored
/// `stream: true`) read into memory.
const MAX_COMPLETION_BODY: usize = 16 * 1024 * 1024;
/// Characters of an upstream explanation put into an error message.
const MAX_REASON_CHARS: usize = 300;

/// One chat message, passed through as given (a wire type: the bridge's
/// start request carries them).
pub(crate) use tether_protocol::llm::ChatMessage;

/// The body sent upstream.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ChatRequest {
    /// Model name, as the upstream knows it.
    pub model: String,
    /// The conversation.
    pub messages: Vec<ChatMessage>,
    /// Sampling temperature.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    /// Most tokens to generate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    /// Always true: the bridge exists to stream.
    pub stream: bool,
    /// Asks for a final `usage` chunk (OpenAI, vLLM); servers that always
    /// send usage, or never, ignore it.
    pub stream_options: StreamOptions,
}

/// `stream_options` of a request.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub(crate) struct StreamOptions {
    /// Send token counts in a last chunk.
    pub include_usage: bool,
}

/// Token counts reported by the upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub(crate) struct Usage {
    /// Tokens of the prompt.
    #[serde(default)]
    pub prompt_tokens: u64,
    /// Tokens generated.
    #[serde(default)]
    pub completion_tokens: u64,
    /// Their sum, when the upstream says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_tokens: Option<u64>,
}

/// What one chunk of the stream carried.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Chunk {
    /// Text to append (often empty: role-only and final chunks).
    pub content: String,
    /// Why generation stopped (`stop`, `length`, ...), on the last chunk.
    pub finish_reason: Option<String>,
    /// Token counts, usually on the last chunk.
    pub usage: Option<Usage>,
}

/// Why talking to the upstream failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum UpstreamError {
    /// The HTTP client could not be built (reported per job, not at start).
    #[error("the HTTP client is unavailable: {0}")]
    Client(String),
    /// No connection could be made.
    #[error("cannot reach the model server: {0}")]
    Connect(String),
    /// No response headers within the request timeout.
    #[error("the model server did not answer within {0} s")]
    RequestTimeout(u64),
    /// No chunk within the idle timeout.
    #[error("the model server sent nothing for {0} s")]
    IdleTimeout(u64),
    /// A non-2xx answer.
    #[error("the model server answered HTTP {status}: {reason}")]
    Status {
        /// The HTTP status.
        status: u16,
        /// The upstream's explanation (its `error.message`, or the body).
        reason: String,
    },
    /// A chunk that is not what the protocol says.
    #[error("the model server sent a malformed chunk: {0}")]
    Malformed(String),
    /// An `{"error": ...}` chunk in the middle of the stream.
    #[error("the model server reported an error: {0}")]
    Reported(String),
    /// The connection broke while reading.
    #[error("the connection to the model server broke: {0}")]
    Broken(String),
    /// The body ended before `[DONE]` or a finish reason.
    #[error("the model server closed the stream before the end of the answer")]
    Truncated,
}

/// Where and how to call the upstream.
#[derive(Clone)]
pub(crate) struct Upstream {
    /// Shared so connections are pooled across jobs.
    pub client: reqwest::Client,
    /// The chat completions URL.
    pub url: String,
    /// Bearer token.
    pub api_key: Option<String>,
    /// See [`super::LlmConfig::request_timeout_secs`].
    pub request_timeout: Duration,
    /// See [`super::LlmConfig::idle_timeout_secs`].
    pub idle_timeout: Duration,
}

impl Upstream {
    /// Sends the request and returns the stream of chunks once the
    /// response headers say it succeeded.
    pub(crate) async fn open(&self, request: &ChatRequest) -> Result<ChunkStream, UpstreamError> {
        let mut builder = self.client.post(&self.url).json(request);
        if let Some(key) = &self.api_key {
            builder = builder.bearer_auth(key);
        }
        let response = tokio::time::timeout(self.request_timeout, builder.send())
            .await
            .map_err(|_| UpstreamError::RequestTimeout(self.request_timeout.as_secs()))?
            .map_err(|err| transport_error(&err))?;
        let status = response.status();
        let is_json = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json"));
        let mut stream = ChunkStream {
            response,
            idle_timeout: self.idle_timeout,
            decoder: SseDecoder::new(),
            pending: VecDeque::new(),
            finished: false,
            done: false,
        };
        if !status.is_success() {
            let body = stream.read_capped(MAX_ERROR_BODY).await.unwrap_or_default();
            return Err(UpstreamError::Status {
                status: status.as_u16(),
                reason: error_reason(&body),
            });
        }
        if is_json {
            // A server that ignored `stream: true` and answered in one piece.
            let body = stream.read_capped(MAX_COMPLETION_BODY).await?;
            let chunk = parse_completion(&body)?;
            stream.done = true;
            stream.finished = true;
            stream.pending.push_back(Ok(chunk));
        }
        Ok(stream)
    }
}

/// A streaming response, read one [`Chunk`] at a time.
pub(crate) struct ChunkStream {
    response: reqwest::Response,
    idle_timeout: Duration,
    decoder: SseDecoder,
    /// Decoded chunks not yet returned.
    pending: VecDeque<Result<Chunk, UpstreamError>>,
    /// `[DONE]` or a finish reason was seen: the end of the body is then
    /// the normal end of the answer, not a truncation.
    finished: bool,
    /// `[DONE]` or the end of the body was reached.
    done: bool,
}

impl ChunkStream {
    /// The next chunk; `None` at the end of a complete answer.
    pub(crate) async fn next(&mut self) -> Result<Option<Chunk>, UpstreamError> {
        loop {
            if let Some(chunk) = self.pending.pop_front() {
                return chunk.map(Some);
            }
            if self.done {
                return if self.finished {
                    Ok(None)
                } else {
                    Err(UpstreamError::Truncated)
                };
            }
            let read = tokio::time::timeout(self.idle_timeout, self.response.chunk())
                .await
                .map_err(|_| UpstreamError::IdleTimeout(self.idle_timeout.as_secs()))?
                .map_err(|err| UpstreamError::Broken(root_cause(&err)))?;
            let mut events = Vec::new();
            let decoded = match read {
                Some(bytes) => self.decoder.push(&bytes, &mut events),
                None => {
                    self.done = true;
                    self.decoder.finish(&mut events)
                }
            };
            decoded.map_err(|err| UpstreamError::Malformed(err.to_string()))?;
            for data in events {
                if data.trim() == "[DONE]" {
                    self.done = true;
                    self.finished = true;
                    break;
                }
                let chunk = parse_chunk(&data);
                if let Ok(chunk) = &chunk {
                    self.finished |= chunk.finish_reason.is_some();
                }
                self.pending.push_back(chunk);
            }
        }
    }

    /// Reads the rest of the body, keeping at most `cap` bytes.
    async fn read_capped(&mut self, cap: usize) -> Result<String, UpstreamError> {
        let mut body = Vec::new();
        loop {
            let read = tokio::time::timeout(self.idle_timeout, self.response.chunk())
                .await
                .map_err(|_| UpstreamError::IdleTimeout(self.idle_timeout.as_secs()))?
                .map_err(|err| UpstreamError::Broken(root_cause(&err)))?;
            let Some(bytes) = read else { break };
            let room = cap.saturating_sub(body.len());
            body.extend_from_slice(&bytes[..bytes.len().min(room)]);
            if body.len() >= cap {
                break;
            }
        }
        Ok(String::from_utf8_lossy(&body).into_owned())
    }
}

#[derive(Deserialize)]
struct WireChunk {
    #[serde(default)]
    choices: Vec<WireChoice>,
    #[serde(default)]
    usage: Option<Usage>,
    #[serde(default)]
    error: Option<Value>,
}

#[derive(Deserialize)]
struct WireChoice {
    #[serde(default)]
    index: u32,
    #[serde(default)]
    delta: Option<WireContent>,
    /// Non-streaming answers carry `message` instead of `delta`.
    #[serde(default)]
    message: Option<WireContent>,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct WireContent {
    #[serde(default)]
    content: Option<String>,
}

/// Parses one `data:` payload of the stream.
pub(crate) fn parse_chunk(data: &str) -> Result<Chunk, UpstreamError> {
    let wire: WireChunk = serde_json::from_str(data)
        .map_err(|err| UpstreamError::Malformed(format!("{err} in {}", excerpt(data))))?;
    if let Some(error) = wire.error {
        return Err(UpstreamError::Reported(error_reason(&error.to_string())));
    }
    let mut chunk = Chunk {
        usage: wire.usage,
        ..Chunk::default()
    };
    for choice in wire.choices.into_iter().filter(|c| c.index == 0) {
        let content = choice.delta.or(choice.message).and_then(|d| d.content);
        if let Some(content) = content {
            chunk.content.push_str(&content);
        }
        if choice.finish_reason.is_some() {
            chunk.finish_reason = choice.finish_reason;
        }
    }
    Ok(chunk)
}

/// Parses a whole (non-streaming) completion into one chunk.
fn parse_completion(body: &str) -> Result<Chunk, UpstreamError> {
    let mut chunk = parse_chunk(body)?;
    chunk.finish_reason.get_or_insert_with(|| "stop".into());
    Ok(chunk)
}

/// The upstream's explanation: `error.message` of a JSON body, or the
/// body itself, shortened.
fn error_reason(body: &str) -> String {
    let parsed: Option<Value> = serde_json::from_str(body).ok();
    let message = parsed.as_ref().and_then(|v| {
        let error = v.get("error").unwrap_or(v);
        error
            .get("message")
            .and_then(Value::as_str)
            .or_else(|| error.as_str())
    });
    match message {
        Some(message) => excerpt(message),
        None if body.trim().is_empty() => "no explanation given".into(),
        None => excerpt(body.trim()),
    }
}

fn excerpt(text: &str) -> String {
    let mut out: String = text.chars().take(MAX_REASON_CHARS).collect();
    if out.len() < text.len() {
        out.push('…');
    }
    out
}

/// A send failure, classified, without the URL.
fn transport_error(err: &reqwest::Error) -> UpstreamError {
    if err.is_connect() {
        UpstreamError::Connect(root_cause(err))
    } else if err.is_timeout() {
        UpstreamError::Connect("connection timed out".into())
    } else {
        UpstreamError::Broken(root_cause(err))
    }
}

/// The innermost cause of an error ("Connection refused (os error 111)"):
/// the outer layers only repeat "error sending request for url (...)".
fn root_cause(err: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = err;
    while let Some(inner) = cause.source() {
        cause = inner;
    }
    excerpt(&cause.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_openai_chunks() {
        let chunk = parse_chunk(
            r#"{"id":"x","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":null}]}"#,
        )
        .unwrap();
        assert_eq!(chunk.content, "Hi");
        let last = parse_chunk(
            r#"{"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":5,"total_tokens":8}}"#,
        )
        .unwrap();
        assert_eq!(last.usage.map(|u| u.completion_tokens), Some(5));
        let role = parse_chunk(r#"{"choices":[{"index":0,"delta":{"role":"assistant"}}]}"#);
        assert_eq!(role.unwrap().content, "");
    }

    #[test]
    fn bad_chunks_are_typed_errors() {
        assert!(matches!(
            parse_chunk("{not json"),
            Err(UpstreamError::Malformed(_))
        ));
        assert!(matches!(
            parse_chunk("42"),
            Err(UpstreamError::Malformed(_))
        ));
        assert_eq!(
            parse_chunk(r#"{"error":{"message":"overloaded"}}"#),
            Err(UpstreamError::Reported("overloaded".into()))
        );
    }

    #[test]
    fn error_reasons_are_short_and_plain() {
        assert_eq!(
            error_reason(r#"{"error":{"message":"bad key"}}"#),
            "bad key"
        );
        assert_eq!(error_reason("  "), "no explanation given");
        assert!(error_reason(&"x".repeat(10_000)).chars().count() <= MAX_REASON_CHARS + 1);
    }
}
