//! W4: resume. Each channel gets a message and then `missed` appends that
//! the resuming clients did not see; a client resumes with `from` = the
//! serial of the message's create (the last position it had), and is caught
//! up when `synced` arrives after every missed fragment.
//!
//! - sequential: one client at a time reconnects (new WebSocket) and
//!   resumes; latency from starting the connection, and from sending the
//!   attach, to `synced`.
//! - storm: `storm` clients, already connected, all send their resuming
//!   attach at the same instant; per-client attach→synced latency and the
//!   time until the last one is caught up.

use std::sync::Arc;
use std::time::Duration;

use futures::SinkExt;
use serde::Serialize;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

use super::{concurrently, run_id, secs};
use crate::progress::{Counter, Progress};
use crate::stats::{Hist, Metrics, SharedHist};
use crate::target::Server;
use crate::ws::{self, Ws};
use crate::{Ctx, Result, clock, err, procstat, wire};

/// What to run.
#[derive(Debug, Clone, Serialize)]
pub struct ResumeSpec {
    /// Appends each resuming client missed.
    pub missed: usize,
    /// Channels the sequential resumes cycle through.
    pub channels: usize,
    /// Sequential resumes.
    pub sequential: usize,
    /// Clients resuming at once in the storm (0 = no storm).
    pub storm: usize,
    /// Channels the storm's clients are spread over.
    pub storm_channels: usize,
    /// Subscriber roll-up window (0 = every fragment is its own frame).
    pub rollup_ms: u64,
    /// Connections opened at once during setup.
    pub connect_concurrency: usize,
}

impl Default for ResumeSpec {
    fn default() -> ResumeSpec {
        ResumeSpec {
            missed: 1_000,
            channels: 20,
            sequential: 200,
            storm: 1_000,
            storm_channels: 100,
            rollup_ms: 0,
            connect_concurrency: 128,
        }
    }
}

/// Writes a message and `missed` appends to `channel`; returns the position
/// a client that saw only the create would resume from.
async fn fill_channel(ws: &mut Ws, channel: &str, missed: usize) -> Result<String> {
    let serial = ws::publish(ws, 1, channel, "").await?;
    let mut req = 1u64;
    let mut acked = 0usize;
    let mut sent = 0usize;
    while acked < missed {
        while sent < missed && sent - acked < 500 {
            req += 1;
            let frame = wire::append(req, channel, &serial, &wire::token(clock::now_ns()));
            ws.feed(Message::text(frame)).await?;
            sent += 1;
        }
        ws.flush().await?;
        let text = ws::next_text(ws)
            .await?
            .ok_or_else(|| err("publisher closed during setup"))?;
        match wire::frame_type(&text) {
            Some("ack") => acked += 1,
            Some("error") => return Err(err(format!("append failed during setup: {text}"))),
            _ => {}
        }
    }
    Ok(serial)
}

/// Reads until `synced`; returns the tokens received.
async fn catch_up(ws: &mut Ws) -> Result<u64> {
    let mut tokens = 0;
    loop {
        let text = tokio::time::timeout(ws::SETUP_WAIT, ws::next_text(ws))
            .await
            .map_err(|_| err("no synced within the setup timeout"))??
            .ok_or_else(|| err("closed before synced"))?;
        match wire::frame_type(&text) {
            Some("message") => {
                tokens += wire::data(&text).map_or(0, |d| wire::for_each_token(d, |_| {}));
            }
            Some("synced") => return Ok(tokens),
            Some("error") => return Err(err(format!("resume failed: {text}"))),
            _ => {}
        }
    }
}

/// Runs W4.
pub async fn run(server: &Server, spec: &ResumeSpec, ctx: &Ctx) -> Result<Metrics> {
    let id = run_id();
    let n_channels = spec
        .channels
        .max(if spec.storm > 0 {
            spec.storm_channels
        } else {
            0
        })
        .max(1);
    let names: Arc<Vec<String>> = Arc::new(
        (0..n_channels)
            .map(|i| format!("bench:w4-{id}-{i}"))
            .collect(),
    );
    let pub_url = server.ws_url("");
    let sub_url = server.ws_url(&format!("rollup_ms={}", spec.rollup_ms));

    // Setup: fill the channels, a few publishers at a time.
    let filled = Counter::default();
    let progress = Progress::start(
        "w4 setup",
        Duration::from_secs(10),
        vec![("channels", filled.clone())],
        ctx.quiet,
    );
    let positions: Arc<Vec<String>> = Arc::new(
        concurrently(n_channels, 8, |i| {
            let (url, names, filled) = (pub_url.clone(), names.clone(), filled.clone());
            let missed = spec.missed;
            async move {
                let mut ws = ws::connect_tether(&url).await?;
                let p = fill_channel(&mut ws, &names[i], missed).await?;
                super::stream::close(ws).await;
                filled.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                Ok(p)
            }
        })
        .await?,
    );
    progress.finish();

    let mut m = Metrics::new();
    m.insert("machine_load1".into(), procstat::load1());
    m.insert("missed".into(), spec.missed as f64);
    let mut incomplete = 0u64;

    // Sequential resumes over a new connection each.
    let mut with_connect = Hist::new();
    let mut attach_only = Hist::new();
    let done = Counter::default();
    let progress = Progress::start(
        "w4 resume",
        Duration::from_secs(5),
        vec![("resumed", done.clone())],
        ctx.quiet,
    );
    for i in 0..spec.sequential {
        let c = i % spec.channels.max(1);
        let t_a = clock::now_ns();
        let mut w = ws::connect_tether(&sub_url).await?;
        let t_b = clock::now_ns();
        ws::send(&mut w, wire::attach(1, &names[c], Some(&positions[c]))).await?;
        let tokens = catch_up(&mut w).await?;
        let t_c = clock::now_ns();
        if tokens != spec.missed as u64 {
            incomplete += 1;
        }
        with_connect.record_ns(t_c - t_a);
        attach_only.record_ns(t_c - t_b);
        done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        super::stream::close(w).await;
    }
    progress.finish();
    with_connect.summary().put(&mut m, "resume");
    attach_only.summary().put(&mut m, "resume_attach");

    // The storm: everyone resumes at the same instant.
    if spec.storm > 0 {
        let conns = concurrently(spec.storm, spec.connect_concurrency, |_| {
            ws::connect_tether(&sub_url)
        })
        .await?;
        let hist = SharedHist::default();
        let go = Instant::now() + Duration::from_millis(500);
        let caught = Counter::default();
        let progress = Progress::start(
            "w4 storm",
            Duration::from_secs(5),
            vec![("caught up", caught.clone())],
            ctx.quiet,
        );
        let tasks: Vec<_> = conns
            .into_iter()
            .enumerate()
            .map(|(i, mut w)| {
                let c = i % spec.storm_channels.max(1);
                let (names, positions, hist, caught) = (
                    names.clone(),
                    positions.clone(),
                    hist.clone(),
                    caught.clone(),
                );
                tokio::spawn(async move {
                    let frame = wire::attach(1, &names[c], Some(&positions[c]));
                    tokio::time::sleep_until(go).await;
                    let t = clock::now_ns();
                    ws::send(&mut w, frame).await?;
                    let tokens = catch_up(&mut w).await?;
                    let done_at = clock::now_ns();
                    hist.recorder().record_ns(done_at - t);
                    caught.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    super::stream::close(w).await;
                    Ok::<_, crate::Error>((tokens, done_at))
                })
            })
            .collect();
        tokio::time::sleep_until(go).await;
        let srv_a = server.sample();
        let go_ns = clock::ns_at(go.into_std());
        let mut last = go_ns;
        for task in tasks {
            let (tokens, done_at) = task.await??;
            if tokens != spec.missed as u64 {
                incomplete += 1;
            }
            last = last.max(done_at);
        }
        let srv_b = server.sample();
        progress.finish();
        let total = Duration::from_nanos(last.saturating_sub(go_ns));
        m.insert("storm_clients".into(), spec.storm as f64);
        m.insert("storm_total_ms".into(), total.as_secs_f64() * 1e3);
        m.insert(
            "storm_replayed_per_s".into(),
            (spec.storm * spec.missed) as f64 / secs(total),
        );
        hist.snapshot().summary().put(&mut m, "storm");
        if let (Some(a), Some(b)) = (srv_a, srv_b) {
            m.insert("storm_server_cpu_pct".into(), procstat::cpu_percent(&a, &b));
        }
    }
    m.insert("incomplete".into(), incomplete as f64);
    if let Some(s) = server.sample() {
        m.insert("server_rss_mib".into(), s.rss_kib as f64 / 1024.0);
    }
    Ok(m)
}
