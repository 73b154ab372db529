//! REST for the bridge: start a job on a channel, list and cancel jobs.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value};
use tether_core::capability::Operation as Cap;
use tether_core::fold::STREAM_STATUS;
use tether_core::{ErrorCode, ErrorInfo, NewMessage, Operation};
use tether_protocol::llm::{JobCancelling, JobList, JobStarted};
use tokio::sync::watch;

use super::caller::Caller;
use crate::auth::Principal;
use crate::engine::{Identity, store_error};
use crate::error::ApiError;
use crate::llm::LlmConfig;
use crate::llm::bridge::Job;
use crate::llm::jobs::{JobHandle, new_job_id};
use crate::llm::openai::{ChatRequest, StreamOptions};
use crate::protocol;
use crate::runtime::now_ms;
use crate::state::App;

/// Identity stamped on a job's message when the caller has none.
const BRIDGE_CLIENT_ID: &str = "llm-bridge";
/// Longest accepted model name.
const MAX_MODEL_LEN: usize = 200;

pub(crate) use tether_protocol::llm::StartRequest;

/// Checks of a start request against the server's configuration.
trait Checked {
    fn chat_request(&self, config: &LlmConfig) -> Result<ChatRequest, ErrorInfo>;
    fn extras(&self, job: &str) -> Map<String, Value>;
}

impl Checked for StartRequest {
    /// The upstream request, or `40008` naming what is wrong.
    fn chat_request(&self, config: &LlmConfig) -> Result<ChatRequest, ErrorInfo> {
        let invalid = |msg: &str| ErrorInfo::new(ErrorCode::InvalidParameter, msg);
        if self.messages.is_empty() {
            return Err(invalid("messages must hold at least one message"));
        }
        if let Some(bad) = self
            .messages
            .iter()
            .find(|m| m.role.is_empty() || !(m.content.is_string() || m.content.is_array()))
        {
            return Err(invalid(&format!(
                "each message needs a role and a string (or array) content; got role {:?}",
                bad.role
            )));
        }
        if self.temperature.is_some_and(|t| !(0.0..=2.0).contains(&t)) {
            return Err(invalid("temperature must be between 0 and 2"));
        }
        if self.max_tokens == Some(0) {
            return Err(invalid("max_tokens must be positive"));
        }
        let model = self
            .model
            .clone()
            .or_else(|| config.model.clone())
            .filter(|m| !m.is_empty())
            .ok_or_else(|| invalid("no model: give one, or set llm.model in the config"))?;
        if model.len() > MAX_MODEL_LEN {
            return Err(invalid("model names are at most 200 characters"));
        }
        if !config.model_allowed(&model) {
            // Every job spends the upstream account's money; which models
            // it may spend it on is the operator's decision, not a caller's.
            return Err(ErrorInfo::new(
                ErrorCode::Forbidden,
                format!(
                    "model {model:?} is not allowed on this server; allowed: {} (llm.model, llm.allowed_models)",
                    match config.allowed_model_names() {
                        names if names.is_empty() => "none".to_owned(),
                        names => names.join(", "),
                    }
                ),
            ));
        }
        Ok(ChatRequest {
            model,
            messages: self.messages.clone(),
            temperature: self.temperature,
            max_tokens: self.max_tokens,
            stream: true,
            stream_options: StreamOptions {
                include_usage: true,
            },
        })
    }

    /// The response message's extras: the caller's, then the bridge's.
    fn extras(&self, job: &str) -> Map<String, Value> {
        let mut extras = Map::new();
        extras.insert("role".into(), "assistant".into());
        if let Some(given) = &self.extras {
            extras.extend(given.clone());
        }
        extras.insert(STREAM_STATUS.into(), "streaming".into());
        extras.insert("job".into(), job.into());
        extras
    }
}

/// `POST /channels/{channel}/llm`: starts a job and answers `202` with
/// `{"job", "serial"}` once the response message exists. The job runs on
/// in its own task, whether or not anyone is still connected.
#[utoipa::path(
    post,
    path = "/channels/{channel}/llm",
    tag = "llm",
    params(("channel" = tether_protocol::openapi::ChannelName, Path, description = "The channel, e.g. `conversation:42`.")),
    request_body = StartRequest,
    responses(
        (status = 202, description = "Started: the job and the response message it streams into.", body = JobStarted),
        (status = "4XX", description = "Refused; the code says why (docs/errors.md).", body = tether_protocol::ErrorBody),
        (status = "5XX", description = "Not applied: server or storage failure, shutting down.", body = tether_protocol::ErrorBody),
    )
)]
pub(crate) async fn start(
    State(app): State<App>,
    Caller(caller): Caller,
    Path(channel): Path<String>,
    body: Result<Json<StartRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let channel = protocol::channel(&channel)?;
    caller.require(&channel, Cap::Publish)?;
    let body = body?.0;
    let config = &app.config.llm;
    let url = completions_url(config)?;
    let request = body.chat_request(config)?;
    let upstream = app
        .llm
        .upstream(config, url)
        .map_err(|err| ErrorInfo::new(ErrorCode::Internal, err.to_string()))?;
    let permit = app.llm.reserve(&caller.credential_id(None))?;
    let id = new_job_id();
    let identity = Identity {
        client_id: Some(
            caller
                .client_id
                .clone()
                .unwrap_or_else(|| BRIDGE_CLIENT_ID.into()),
        ),
        connection_id: None,
    };
    let create = Operation::Create(NewMessage {
        id: None,
        name: Some(body.name.clone().unwrap_or_else(|| "response".into())),
        data: Value::String(String::new()),
        extras: Some(body.extras(&id)),
    });
    let receipt = app
        .engine
        .submit(channel.clone(), create, &caller, &identity)
        .await?;
    let ack = receipt.await.map_err(store_error)?;
    let (cancel, _) = watch::channel(false);
    let handle = Arc::new(JobHandle {
        id: id.clone(),
        channel,
        serial: ack.serial,
        model: request.model.clone(),
        started_at: now_ms(),
        tokens: AtomicU64::new(0),
        cancel,
    });
    let registration = app.llm.register(handle.clone());
    let job = Job {
        engine: app.engine.clone(),
        upstream,
        request,
        handle,
        identity,
        max_duration: config.max_duration(),
        shutdown: app.shutdown.clone(),
    };
    metrics::gauge!("tether_llm_jobs_running").increment(1.0);
    tokio::spawn(async move {
        let (_permit, _registration) = (permit, registration);
        let job_id = job.handle.id.clone();
        let ending = job.run().await;
        metrics::gauge!("tether_llm_jobs_running").decrement(1.0);
        metrics::counter!("tether_llm_jobs_total", "status" => ending.status()).increment(1);
        tracing::info!(job = %job_id, status = ending.status(), ?ending, "LLM job ended");
    });
    Ok((
        StatusCode::ACCEPTED,
        Json(JobStarted {
            job: id,
            serial: ack.serial,
        }),
    )
        .into_response())
}

/// `GET /llm/jobs`: `{"jobs": [{job, channel, serial, model, started_at,
/// tokens}]}`, oldest first. Needs the `stats` capability.
#[utoipa::path(
    get,
    path = "/llm/jobs",
    tag = "llm",
    responses(
        (status = 200, description = "The running jobs, oldest first.", body = JobList),
        (status = "4XX", description = "Refused; the code says why (docs/errors.md).", body = tether_protocol::ErrorBody),
        (status = "5XX", description = "Not applied: server or storage failure, shutting down.", body = tether_protocol::ErrorBody),
    )
)]
pub(crate) async fn list(
    State(app): State<App>,
    Caller(caller): Caller,
) -> Result<Response, ApiError> {
    require_stats(&caller)?;
    Ok(Json(JobList {
        jobs: app.llm.list(),
    })
    .into_response())
}

/// `DELETE /llm/jobs/{id}`: asks a job to stop; its message ends
/// `cancelled` moments later. Needs the `stats` capability.
#[utoipa::path(
    delete,
    path = "/llm/jobs/{job}",
    tag = "llm",
    params(("job" = String, Path, description = "The job id from the start reply or the list.")),
    responses(
        (status = 202, description = "Asked to stop.", body = JobCancelling),
        (status = "4XX", description = "Refused; the code says why (docs/errors.md).", body = tether_protocol::ErrorBody),
        (status = "5XX", description = "Not applied: server or storage failure, shutting down.", body = tether_protocol::ErrorBody),
    )
)]
pub(crate) async fn cancel(
    State(app): State<App>,
    Caller(caller): Caller,
    Path(job): Path<String>,
) -> Result<Response, ApiError> {
    require_stats(&caller)?;
    if !app.llm.cancel(&job) {
        return Err(ErrorInfo::new(ErrorCode::NotFound, format!("no running job {job:?}")).into());
    }
    Ok((
        StatusCode::ACCEPTED,
        Json(JobCancelling {
            job,
            status: "cancelling".into(),
        }),
    )
        .into_response())
}

/// Jobs span channels, so managing them is an operator's task: the same
/// capability as reading metrics.
fn require_stats(caller: &Principal) -> Result<(), ErrorInfo> {
    if caller.capabilities.allows_anywhere(Cap::Stats) && caller.ceiling.allows_anywhere(Cap::Stats)
    {
        Ok(())
    } else {
        Err(ErrorInfo::new(
            ErrorCode::Forbidden,
            "managing LLM jobs needs the stats capability",
        ))
    }
}

/// The upstream URL, or `40401` when the bridge is off (or cannot reach
/// an `https://` upstream in this build).
fn completions_url(config: &LlmConfig) -> Result<String, ErrorInfo> {
    let url = config.completions_url().ok_or_else(|| {
        ErrorInfo::new(
            ErrorCode::NotFound,
            "the LLM bridge is off on this server: set llm.base_url in its config",
        )
    })?;
    if url.starts_with("https://") && !cfg!(feature = "tls") {
        return Err(ErrorInfo::new(
            ErrorCode::NotFound,
            "llm.base_url is https:// but this server was built without the `tls` feature",
        ));
    }
    Ok(url)
}
