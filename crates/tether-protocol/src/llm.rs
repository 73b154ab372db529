//! Bodies of the server-side LLM bridge's REST endpoints
//! (`POST /channels/{channel}/llm`, `GET /llm/jobs`, `DELETE /llm/jobs/{id}`).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tether_core::{ChannelName, Serial};

/// One chat message, passed through to the upstream model as given
/// (`role`, `content` and whatever else it understands, such as `name`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ChatMessage {
    /// `system`, `user`, `assistant`, ...
    pub role: String,
    /// A string, or an array of content parts.
    pub content: Value,
    /// Other fields, forwarded untouched.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// Body of `POST /channels/{channel}/llm`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StartRequest {
    /// The conversation, OpenAI style.
    pub messages: Vec<ChatMessage>,
    /// Overrides `llm.model`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Sampling temperature (0-2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    /// Most tokens to generate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    /// The response message's name; `response` by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Merged into the response's extras (`stream` and `job` are the
    /// bridge's and cannot be set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extras: Option<Map<String, Value>>,
}

/// Reply to a started job (202), once its response message exists.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JobStarted {
    /// The job id (for `DELETE /llm/jobs/{id}`).
    pub job: String,
    /// The response message the job streams into.
    #[cfg_attr(feature = "openapi", schema(value_type = crate::openapi::Serial))]
    pub serial: Serial,
}

/// A running job, as listed by `GET /llm/jobs`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JobInfo {
    /// The job id.
    pub job: String,
    /// The channel it writes to.
    #[cfg_attr(feature = "openapi", schema(value_type = crate::openapi::ChannelName))]
    pub channel: ChannelName,
    /// The response message.
    #[cfg_attr(feature = "openapi", schema(value_type = crate::openapi::Serial))]
    pub serial: Serial,
    /// The model asked for.
    pub model: String,
    /// When it started, ms since the Unix epoch.
    pub started_at: u64,
    /// Deltas appended so far.
    pub tokens: u64,
}

/// Reply to `GET /llm/jobs`, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JobList {
    /// The running jobs.
    pub jobs: Vec<JobInfo>,
}

/// Reply to `DELETE /llm/jobs/{id}` (202): the job was asked to stop; its
/// message ends `cancelled` moments later.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JobCancelling {
    /// The job id.
    pub job: String,
    /// Always `cancelling`.
    pub status: String,
}
