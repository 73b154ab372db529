//! The LLM bridge: streams an OpenAI-compatible model's answer into one
//! message. Its REST handlers (`POST /channels/{channel}/llm`,
//! `GET /llm/jobs`, `DELETE /llm/jobs/{id}`) are a front door,
//! `crate::doors::llm`; the Vercel AI SDK's resumable stream endpoint is
//! `crate::doors::aisdk`.
//!
//! # Layout
//! - this file: [`LlmConfig`].
//! - [`jobs`]: the registry of running jobs and its bound.
//! - [`bridge`]: one job: create the message, append each delta, end it
//!   with a status and usage.
//! - [`openai`]: the upstream client (`/v1/chat/completions` with
//!   `stream: true`) with typed errors; [`sse`] is its pure SSE decoder.
//!
//! The bridge is a *client* of the engine like any front door: it submits
//! operations and subscribes, so everything it writes is durable, ordered
//! and resumable exactly like an agent's appends over WebSocket.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub(crate) mod bridge;
pub(crate) mod jobs;
pub(crate) mod openai;
pub(crate) mod sse;

pub(crate) use jobs::Jobs;

/// Settings of the LLM bridge (`[llm]` in the config file, or
/// `TETHER_LLM__BASE_URL`, `TETHER_LLM__API_KEY`, ...).
///
/// The base URL and key come only from here, never from a request: the
/// bridge must not become an open proxy, and browser clients must never
/// see the key.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LlmConfig {
    /// An OpenAI-compatible server: `https://api.openai.com/v1`,
    /// `http://127.0.0.1:11434` (Ollama), `http://127.0.0.1:8000` (vLLM),
    /// `http://127.0.0.1:7401` (`tether fake-llm`). Requests go to
    /// `{base_url}/v1/chat/completions`, or `{base_url}/chat/completions`
    /// when it already ends in `/v1`. Unset: the bridge is off.
    pub base_url: Option<String>,
    /// Sent as `Authorization: Bearer ...`. Never returned to clients.
    pub api_key: Option<String>,
    /// The model used when a request names none.
    pub model: Option<String>,
    /// Jobs running at once; more are refused with `42901`. Each holds an
    /// upstream connection and a subscription, so this bounds both.
    pub max_concurrent_jobs: usize,
    /// A job still running after this long ends with status `error`, so a
    /// runaway generation cannot hold a slot (and spend tokens) forever.
    pub max_duration_secs: u64,
    /// Time to establish the TCP (and TLS) connection upstream.
    pub connect_timeout_secs: u64,
    /// Time from sending the request to the response headers: models can
    /// queue a request before they start, so this is longer than a connect.
    pub request_timeout_secs: u64,
    /// Longest silence between two chunks of a streaming response before
    /// the job gives up on the upstream: a stalled server must not hang a
    /// job until `max_duration_secs`.
    pub idle_timeout_secs: u64,
    /// Jobs one credential (key, or token identity) may run at once; more
    /// are refused with `42906`, so one caller cannot take every slot.
    pub max_jobs_per_credential: usize,
    /// Models a request may name. Empty: only `model`. Every job spends
    /// the upstream account's money, so widening this is a cost decision.
    pub allowed_models: Vec<String>,
}

impl Default for LlmConfig {
    fn default() -> LlmConfig {
        LlmConfig {
            base_url: None,
            api_key: None,
            model: None,
            max_concurrent_jobs: 64,
            max_duration_secs: 600,
            connect_timeout_secs: 10,
            request_timeout_secs: 60,
            idle_timeout_secs: 60,
            max_jobs_per_credential: 4,
            allowed_models: Vec::new(),
        }
    }
}

impl LlmConfig {
    /// The chat completions URL for the configured base URL.
    pub fn completions_url(&self) -> Option<String> {
        let base = self.base_url.as_deref()?.trim_end_matches('/');
        Some(if base.ends_with("/v1") {
            format!("{base}/chat/completions")
        } else {
            format!("{base}/v1/chat/completions")
        })
    }

    /// Whether a request may name `model`: one of `allowed_models`, or
    /// the configured `model` (always allowed: the operator chose it).
    pub fn model_allowed(&self, model: &str) -> bool {
        self.model.as_deref() == Some(model) || self.allowed_models.iter().any(|m| m == model)
    }

    /// The models a request may name, for error messages.
    pub fn allowed_model_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.model.iter().cloned().collect();
        names.extend(
            self.allowed_models
                .iter()
                .filter(|m| self.model.as_ref() != Some(*m))
                .cloned(),
        );
        names
    }

    /// See [`LlmConfig::max_duration_secs`].
    pub fn max_duration(&self) -> Duration {
        Duration::from_secs(self.max_duration_secs)
    }

    /// See [`LlmConfig::request_timeout_secs`].
    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs(self.request_timeout_secs)
    }

    /// See [`LlmConfig::idle_timeout_secs`].
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.idle_timeout_secs)
    }
}

/// Written by hand so the API key never reaches a log line.
impl fmt::Debug for LlmConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LlmConfig")
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("model", &self.model)
            .field("max_concurrent_jobs", &self.max_concurrent_jobs)
            .field("max_duration_secs", &self.max_duration_secs)
            .field("connect_timeout_secs", &self.connect_timeout_secs)
            .field("request_timeout_secs", &self.request_timeout_secs)
            .field("idle_timeout_secs", &self.idle_timeout_secs)
            .field("max_jobs_per_credential", &self.max_jobs_per_credential)
            .field("allowed_models", &self.allowed_models)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::LlmConfig;

    #[test]
    fn completions_url_accepts_both_base_url_styles() {
        let url = |base: &str| {
            LlmConfig {
                base_url: Some(base.into()),
                ..LlmConfig::default()
            }
            .completions_url()
        };
        assert_eq!(
            url("http://h:1").as_deref(),
            Some("http://h:1/v1/chat/completions")
        );
        assert_eq!(
            url("https://api.openai.com/v1/").as_deref(),
            Some("https://api.openai.com/v1/chat/completions")
        );
        assert_eq!(LlmConfig::default().completions_url(), None);
    }

    #[test]
    fn debug_redacts_the_key() {
        let config = LlmConfig {
            api_key: Some("sk-secret".into()),
            ..LlmConfig::default()
        };
        assert!(!format!("{config:?}").contains("sk-secret"));
    }
}
