//! The registry of running LLM jobs: what `GET /llm/jobs` lists, what
//! `DELETE /llm/jobs/{id}` cancels, and the bound on how many run at once.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tether_core::{ChannelName, ErrorCode, ErrorInfo, Serial};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

use super::LlmConfig;
use super::openai::{Upstream, UpstreamError};

/// Running jobs and the slots they hold.
pub(crate) struct Jobs {
    /// One permit per job. A semaphore rather than a counter next to the
    /// map: the permit travels with the job's task and is returned however
    /// that task ends, even by a panic.
    slots: Arc<Semaphore>,
    max: usize,
    /// Jobs running per credential (see
    /// [`crate::auth::Principal::credential_id`]); entries at zero are
    /// removed, so this holds only credentials with a running job.
    per_credential: Mutex<HashMap<String, usize>>,
    max_per_credential: usize,
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
pub(crate) struct JobHandle {
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

/// A job as `GET /llm/jobs` shows it (a wire type).
pub(crate) use tether_protocol::llm::JobInfo;

/// A reserved job slot, global and per credential; both are given back
/// when it is dropped (the job's task holds it), however the task ends.
pub(crate) struct Reservation {
    _slot: OwnedSemaphorePermit,
    jobs: Arc<Jobs>,
    credential: String,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.jobs.release_credential(&self.credential);
    }
}

/// Removes a job from the registry when dropped (the job's task holds it).
pub(crate) struct Registration {
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
    pub(crate) fn new(config: &LlmConfig) -> Jobs {
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
            per_credential: Mutex::new(HashMap::new()),
            max_per_credential: config.max_jobs_per_credential,
            running: Mutex::new(HashMap::new()),
            client,
        }
    }

    /// A slot for a new job of `credential`: `42906` when that credential
    /// already runs `llm.max_jobs_per_credential` jobs (so one caller cannot
    /// take every slot), `42901` when the server runs all it allows.
    pub(crate) fn reserve(self: &Arc<Jobs>, credential: &str) -> Result<Reservation, ErrorInfo> {
        {
            let mut counts = self
                .per_credential
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            let running = counts.entry(credential.to_owned()).or_insert(0);
            if *running >= self.max_per_credential {
                let running = *running;
                if running == 0 {
                    counts.remove(credential);
                }
                return Err(ErrorInfo::new(
                    ErrorCode::TooManyJobs,
                    format!(
                        "your credential runs {running} LLM jobs, the most one may run at once (llm.max_jobs_per_credential); retry when one ends"
                    ),
                ));
            }
            *running += 1;
        }
        match self.slots.clone().try_acquire_owned() {
            Ok(slot) => Ok(Reservation {
                _slot: slot,
                jobs: self.clone(),
                credential: credential.to_owned(),
            }),
            Err(_) => {
                self.release_credential(credential);
                Err(ErrorInfo::new(
                    ErrorCode::RateLimited,
                    format!(
                        "{} LLM jobs are running, the most this server allows (llm.max_concurrent_jobs); retry when one ends",
                        self.max
                    ),
                ))
            }
        }
    }

    fn release_credential(&self, credential: &str) {
        let mut counts = self
            .per_credential
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(running) = counts.get_mut(credential) {
            *running = running.saturating_sub(1);
            if *running == 0 {
                counts.remove(credential);
            }
        }
    }

    /// The upstream at `url` with the configured key and timeouts.
    pub(crate) fn upstream(
        &self,
        config: &LlmConfig,
        url: String,
    ) -> Result<Upstream, UpstreamError> {
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
    pub(crate) fn register(self: &Arc<Jobs>, handle: Arc<JobHandle>) -> Registration {
        let id = handle.id.clone();
        self.lock().insert(id.clone(), handle);
        Registration {
            jobs: self.clone(),
            id,
        }
    }

    /// Running jobs, oldest first.
    pub(crate) fn list(&self) -> Vec<JobInfo> {
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
    pub(crate) fn cancel(&self, id: &str) -> bool {
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
    pub(crate) fn running(&self) -> usize {
        self.lock().len()
    }

    /// Waits until no job runs, at most `within`; `false` on timeout. For
    /// shutdown: jobs end their messages (`error`, "the server shut down")
    /// when the shutdown flag flips, and the store should stay open until
    /// those final updates are in.
    pub(crate) async fn wait_idle(&self, within: Duration) -> bool {
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
pub(crate) fn new_job_id() -> String {
    format!("job_{:024x}", rand::random::<u128>() >> 32)
}
