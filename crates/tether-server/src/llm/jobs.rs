//! The registry of running LLM jobs: what `GET /llm/jobs` lists, what
//! `DELETE /llm/jobs/{id}` cancels, and the bound on how many run at once.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tether_core::{ChannelName, ErrorCode, ErrorInfo, Serial};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

use super::LlmConfig;
use super::openai::{Upstream, UpstreamError};

/// Running jobs and the slots they hold.
pub struct Jobs {
    /// One permit per job. A semaphore rather than a counter next to the
    /// map: the permit travels with the job's task and is returned however
    /// that task ends, even by a panic.
    slots: Arc<Semaphore>,
    max: usize,
    /// A std mutex: held only to insert, remove or copy entries, never
    /// across an await.
    running: Mutex<HashMap<String, Arc<JobHandle>>>,
    /// Built once so every job shares one connection pool. An error is
    /// kept and reported per job rather than refusing to start the server
    /// over a feature that may not be used.
    client: Result<reqwest::Client, String>,
}

/// What the registry knows about one running job.
#[derive(Debug)]
pub struct JobHandle {
    /// The job id (`job_...`).
    pub id: String,
    /// The channel it writes to.
    pub channel: ChannelName,
    /// The response message.
    pub serial: Serial,
    /// The model asked for.
    pub model: String,
    /// When it started, ms since the Unix epoch.
    pub started_at: u64,
    /// Deltas appended so far.
    pub tokens: AtomicU64,
    /// Set to `true` to stop the job; REST cancel and the channel's cancel
    /// messages both end up here.
    pub cancel: watch::Sender<bool>,
}

/// A job as `GET /llm/jobs` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct JobInfo {
    /// The job id.
    pub job: String,
    /// The channel it writes to.
    pub channel: ChannelName,
    /// The response message.
    pub serial: Serial,
    /// The model asked for.
    pub model: String,
    /// When it started, ms since the Unix epoch.
    pub started_at: u64,
    /// Deltas appended so far.
    pub tokens: u64,
}

/// Removes a job from the registry when dropped (the job's task holds it).
pub struct Registration {
    jobs: Arc<Jobs>,
    id: String,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.jobs.lock().remove(&self.id);
    }
}

impl Jobs {
    /// A registry bounded by `config.max_concurrent_jobs`.
    pub fn new(config: &LlmConfig) -> Jobs {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(config.connect_timeout_secs))
            .build()
            .map_err(|err| err.to_string());
        if let Err(err) = &client {
            tracing::error!(error = %err, "the LLM bridge's HTTP client cannot be built");
        }
        Jobs {
            slots: Arc::new(Semaphore::new(config.max_concurrent_jobs)),
            max: config.max_concurrent_jobs,
            running: Mutex::new(HashMap::new()),
            client,
        }
    }

    /// A slot for a new job, or `42901` when all are taken.
    pub fn reserve(&self) -> Result<OwnedSemaphorePermit, ErrorInfo> {
        self.slots.clone().try_acquire_owned().map_err(|_| {
            ErrorInfo::new(
                ErrorCode::RateLimited,
                format!(
                    "{} LLM jobs are running, the most this server allows (llm.max_concurrent_jobs); retry when one ends",
                    self.max
                ),
            )
        })
    }

    /// The upstream at `url` with the configured key and timeouts.
    pub fn upstream(&self, config: &LlmConfig, url: String) -> Result<Upstream, UpstreamError> {
        let client = self.client.clone().map_err(UpstreamError::Client)?;
        Ok(Upstream {
            client,
            url,
            api_key: config.api_key.clone(),
            request_timeout: config.request_timeout(),
            idle_timeout: config.idle_timeout(),
        })
    }

    /// Lists `handle` until the returned registration is dropped.
    pub fn register(self: &Arc<Jobs>, handle: Arc<JobHandle>) -> Registration {
        let id = handle.id.clone();
        self.lock().insert(id.clone(), handle);
        Registration {
            jobs: self.clone(),
            id,
        }
    }

    /// Running jobs, oldest first.
    pub fn list(&self) -> Vec<JobInfo> {
        let mut jobs: Vec<JobInfo> = self
            .lock()
            .values()
            .map(|job| JobInfo {
                job: job.id.clone(),
                channel: job.channel.clone(),
                serial: job.serial,
                model: job.model.clone(),
                started_at: job.started_at,
                tokens: job.tokens.load(Ordering::Relaxed),
            })
            .collect();
        jobs.sort_by(|a, b| (a.started_at, &a.job).cmp(&(b.started_at, &b.job)));
        jobs
    }

    /// Asks job `id` to stop. `false` if no such job is running.
    pub fn cancel(&self, id: &str) -> bool {
        let job = self.lock().get(id).cloned();
        match job {
            Some(job) => {
                job.cancel.send_replace(true);
                true
            }
            None => false,
        }
    }

    /// How many jobs are running.
    pub fn running(&self) -> usize {
        self.lock().len()
    }

    /// Waits until no job runs, at most `within`; `false` on timeout. For
    /// shutdown: jobs end their messages (`error`, "the server shut down")
    /// when the shutdown flag flips, and the store should stay open until
    /// those final updates are in.
    pub async fn wait_idle(&self, within: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        while self.running() > 0 {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        true
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<JobHandle>>> {
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A fresh job id: random, so ids never repeat across restarts.
pub fn new_job_id() -> String {
    format!("job_{:024x}", rand::random::<u128>() >> 32)
}
