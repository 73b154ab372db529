//! A deterministic fake of an OpenAI-compatible chat completions server.
//!
//! Tether's LLM bridge talks to any server that speaks
//! `POST /v1/chat/completions`; this fake speaks it well enough that the
//! tests, `tether demo` (offline, in-process) and `tether fake-llm` (for
//! benchmarks and trying the bridge by hand) need neither a network nor a
//! model. There is one implementation of the wire format, the pacing and
//! the failure directives; only *what* it answers is pluggable
//! ([`Answers`]): the default echoes the prompt and counts, the demo plugs
//! in its canned explanations.
//!
//! With `stream: true` it sends the real SSE chunk format
//! (`chat.completion.chunk` objects, a final chunk with `finish_reason`, a
//! `usage` chunk when `stream_options.include_usage` is set, then
//! `data: [DONE]`), paced at the configured rate; otherwise one
//! `chat.completion`.
//!
//! Directives in the last user message steer it, for tests:
//! - `[[tokens:N]]`: N numbered tokens (how they read is up to [`Answers`]);
//! - `[[tps:N]]`: N tokens per second for this request (0: unpaced);
//! - `[[fail:CODE]]`: answer HTTP CODE with an OpenAI-style error body;
//! - `[[malformed]]`: a garbage chunk half-way through the stream;
//! - `[[stall]]`: stop sending half-way, keeping the connection open;
//! - `[[no-usage]]`: never report usage;
//! - `[[no-stream]]`: answer in one piece even when asked to stream, as
//!   some servers do.

#![warn(missing_docs, unreachable_pub)]

mod reply;
mod request;

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::post;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub use request::directive;

/// Most tokens one answer may have, so a typo cannot make it endless.
pub const MAX_TOKENS: usize = 1_000_000;

/// What the fake answers: the tokens it streams for a prompt.
///
/// A function rather than a fixed text so the demo can plug in its own
/// answers while sharing the one wire implementation.
#[derive(Clone)]
pub struct Answers(Arc<AnswerFn>);

/// The function behind [`Answers`].
type AnswerFn = dyn Fn(&Prompt<'_>) -> Vec<String> + Send + Sync;

impl Answers {
    /// Answers with `f`.
    pub fn new(f: impl Fn(&Prompt<'_>) -> Vec<String> + Send + Sync + 'static) -> Answers {
        Answers(Arc::new(f))
    }

    /// The default: [`answer_tokens`], an echo of the prompt then numbered
    /// tokens, so a test can compute exactly what must arrive.
    pub fn echo() -> Answers {
        Answers::new(|prompt| answer_tokens(prompt.text, prompt.tokens))
    }

    fn tokens(&self, prompt: &Prompt<'_>) -> Vec<String> {
        (self.0)(prompt)
    }
}

impl Default for Answers {
    fn default() -> Answers {
        Answers::echo()
    }
}

impl fmt::Debug for Answers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Answers(..)")
    }
}

/// What an [`Answers`] function gets to decide from.
#[derive(Debug, Clone, Copy)]
pub struct Prompt<'a> {
    /// The last user message (content parts joined with spaces).
    pub text: &'a str,
    /// Numbered tokens asked for: `[[tokens:N]]` if present (capped at
    /// [`MAX_TOKENS`]), else [`FakeOptions::tokens`].
    pub tokens: usize,
    /// Whether the prompt carried `[[tokens:N]]` itself.
    pub tokens_asked: bool,
}

/// How the fake behaves.
#[derive(Debug, Clone)]
pub struct FakeOptions {
    /// Pace of a streamed answer; 0 sends as fast as possible.
    pub tokens_per_second: f64,
    /// Numbered tokens in an answer without `[[tokens:N]]`.
    pub tokens: usize,
    /// When set, requests must carry `Authorization: Bearer <key>`.
    pub api_key: Option<String>,
    /// Delay before the first token, as a real model takes to start.
    pub first_token: Duration,
    /// The model name reported when the request names none.
    pub model: String,
    /// What it answers.
    pub answers: Answers,
}

impl Default for FakeOptions {
    fn default() -> FakeOptions {
        FakeOptions {
            tokens_per_second: 150.0,
            tokens: 50,
            api_key: None,
            first_token: Duration::ZERO,
            model: "fake".into(),
            answers: Answers::echo(),
        }
    }
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

/// The fake's routes, to mount in another router or serve yourself.
pub fn router(options: FakeOptions) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(reply::completions))
        .with_state(Arc::new(options))
}

/// The tokens of the echo answer to `prompt` with `count` numbered tokens.
pub fn answer_tokens(prompt: &str, count: usize) -> Vec<String> {
    let mut tokens = Vec::with_capacity(count + 1);
    tokens.push(format!("You said: {prompt}."));
    tokens.extend((1..=count).map(|i| format!(" t{i}")));
    tokens
}

/// The whole echo answer to `prompt` with `count` numbered tokens.
pub fn answer(prompt: &str, count: usize) -> String {
    answer_tokens(prompt, count).concat()
}

/// Splits text into word pieces the way a model's tokens look: each word
/// with its leading space, long words in pieces of five characters.
pub fn tokenize(text: &str) -> Vec<String> {
    let mut tokens = Vec::new();
    let mut word: Vec<char> = Vec::new();
    let flush = |word: &mut Vec<char>, tokens: &mut Vec<String>| {
        let mut rest = &word[..];
        while !rest.is_empty() {
            let len = if rest.len() > 7 { 5 } else { rest.len() };
            tokens.push(rest[..len].iter().collect());
            rest = &rest[len..];
        }
        word.clear();
    };
    for c in text.chars() {
        if c == ' ' || c == '\n' {
            flush(&mut word, &mut tokens);
        }
        word.push(c);
    }
    flush(&mut word, &mut tokens);
    tokens
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echo_answers_are_deterministic() {
        assert_eq!(answer("hi", 3), "You said: hi. t1 t2 t3");
        assert_eq!(answer_tokens("hi", 0), vec!["You said: hi."]);
    }

    #[test]
    fn tokens_join_back_to_the_text() {
        let text = "Hello there, extraordinarily\nlong words split";
        let tokens = tokenize(text);
        assert_eq!(tokens.concat(), text);
        assert!(tokens.iter().all(|t| t.chars().count() <= 7), "{tokens:?}");
        assert_eq!(tokens[0], "Hello");
        assert_eq!(tokens[1], " there,");
        assert_eq!(tokenize(""), Vec::<String>::new());
    }
}
