//! Streaming workloads: publishers append 32-byte timestamped tokens over
//! WebSocket at a set rate (or as fast as a window of unacknowledged
//! appends allows), subscribers receive every fragment (`rollup_ms=0`) and
//! record append→delivery latency.
//!
//! W1 is `channels = N, subscribers_per_channel = 1`; W2 is `channels = 1,
//! subscribers_per_channel = N`.
//!
//! Timing: all connections are set up first. Publishers start together
//! (each offset by a fraction of its period so ticks do not align), run a
//! warm-up, then the measured window. Throughput is counted over the window
//! only; latency is recorded for tokens *sent* inside it. After the window
//! publishers stop, wait for their acks, and subscribers get a few seconds
//! to receive everything acknowledged (what they never got is `missing`).
//! Each token carries the time it was written into the frame, so latency
//! includes the generator's and the server's queueing; `bench_cpu_pct`
//! shows how much of the two cores the generator itself took.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde::Serialize;
use tokio::sync::watch;
use tokio::time::{Instant, MissedTickBehavior, sleep_until};
use tokio_tungstenite::tungstenite::Message;

use super::{concurrently, run_id, secs};
use crate::progress::{Counter, Progress};
use crate::stats::{Metrics, Recorder, SharedHist};
use crate::target::Server;
use crate::ws::{self, Ws};
use crate::{Ctx, Result, clock, err, procstat, wire};

/// What to run.
#[derive(Debug, Clone, Serialize)]
pub struct StreamSpec {
    /// Name used in channel names and the progress bar.
    pub label: String,
    /// Channels, each with one publisher connection.
    pub channels: usize,
    /// Subscriber connections per channel.
    pub subscribers_per_channel: usize,
    /// Appends per second per channel; 0 = closed loop (see `window`).
    pub rate: f64,
    /// Closed loop: unacknowledged appends each publisher keeps in flight.
    pub window: usize,
    /// Measured phase.
    #[serde(serialize_with = "ser_secs")]
    pub duration: Duration,
    /// Phase before the measured one.
    #[serde(serialize_with = "ser_secs")]
    pub warmup: Duration,
    /// Appends per message; then the publisher starts a new message (a
    /// streamed response of N tokens; messages are capped at 64 KiB).
    pub tokens_per_message: usize,
    /// Open loop: a publisher this far behind stops sending until acks
    /// come back.
    pub max_inflight: usize,
    /// Subscriber roll-up window (0 = every fragment).
    pub rollup_ms: u64,
    /// Connections opened at once during setup.
    pub connect_concurrency: usize,
}

/// Serializes a duration as seconds.
pub fn ser_secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

impl StreamSpec {
    /// W1 defaults: 1,000 channels at 50 tokens/s each (a typical LLM
    /// stream speed), one subscriber each.
    pub fn w1() -> StreamSpec {
        StreamSpec {
            label: "w1".into(),
            channels: 1_000,
            subscribers_per_channel: 1,
            rate: 50.0,
            window: 32,
            duration: Duration::from_secs(10),
            warmup: Duration::from_secs(2),
            tokens_per_message: 1_000,
            max_inflight: 2_000,
            rollup_ms: 0,
            connect_concurrency: 128,
        }
    }

    /// W2 defaults: one channel, 1,000 subscribers, 200 appends/s.
    pub fn w2() -> StreamSpec {
        StreamSpec {
            label: "w2".into(),
            channels: 1,
            subscribers_per_channel: 1_000,
            rate: 200.0,
            ..StreamSpec::w1()
        }
    }
}

/// Counters and histograms every task of a run shares.
struct Shared {
    sent: Counter,
    acked: Counter,
    delivered: Counter,
    errors: Counter,
    e2e: SharedHist,
    ack: SharedHist,
    /// Tokens sent in `[window_start, window_end)` (ns) are measured.
    window_start: u64,
    window_end: u64,
    stop_send: Instant,
    first_error: Mutex<Option<String>>,
}

impl Shared {
    fn in_window(&self, ts: u64) -> bool {
        ts >= self.window_start && ts < self.window_end
    }

    fn error(&self, text: &str) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut first) = self.first_error.lock() {
            first.get_or_insert_with(|| text.chars().take(300).collect());
        }
    }
}

/// How long publishers wait for outstanding acks, and subscribers for
/// outstanding deliveries, after the window.
const DRAIN: Duration = Duration::from_secs(5);

/// Runs the workload; see the module docs.
pub async fn run(server: &Server, spec: &StreamSpec, ctx: &Ctx) -> Result<Metrics> {
    let spec = Arc::new(spec.clone());
    let id = run_id();
    let names: Arc<Vec<String>> = Arc::new(
        (0..spec.channels)
            .map(|i| format!("bench:{}-{id}-{i}", spec.label))
            .collect(),
    );
    let sub_url = server.ws_url(&format!("rollup_ms={}", spec.rollup_ms));
    let pub_url = server.ws_url("");
    let n_subs = spec.channels * spec.subscribers_per_channel;
    let subs = concurrently(n_subs, spec.connect_concurrency, |k| {
        let url = sub_url.clone();
        let names = names.clone();
        async move {
            let mut ws = ws::connect_tether(&url).await?;
            ws::attach(&mut ws, 1, &names[k % names.len()], None).await?;
            Ok(ws)
        }
    })
    .await?;
    let pubs = concurrently(spec.channels, spec.connect_concurrency, |_| {
        let url = pub_url.clone();
        async move { ws::connect_tether(&url).await }
    })
    .await?;

    let t0 = Instant::now() + Duration::from_millis(300);
    let window_start = t0 + spec.warmup;
    let window_end = window_start + spec.duration;
    let sh = Arc::new(Shared {
        sent: Counter::default(),
        acked: Counter::default(),
        delivered: Counter::default(),
        errors: Counter::default(),
        e2e: SharedHist::default(),
        ack: SharedHist::default(),
        window_start: clock::ns_at(window_start.into_std()),
        window_end: clock::ns_at(window_end.into_std()),
        stop_send: window_end,
        first_error: Mutex::new(None),
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let sub_tasks: Vec<_> = subs
        .into_iter()
        .map(|ws| tokio::spawn(subscriber(ws, sh.clone(), stop_rx.clone())))
        .collect();
    let pub_tasks: Vec<_> = pubs
        .into_iter()
        .enumerate()
        .map(|(i, ws)| {
            let phase = if spec.rate > 0.0 {
                Duration::from_secs_f64(i as f64 / spec.channels as f64 / spec.rate)
            } else {
                Duration::ZERO
            };
            tokio::spawn(publisher(
                ws,
                names[i].clone(),
                spec.clone(),
                sh.clone(),
                t0 + phase,
            ))
        })
        .collect();

    let progress = Progress::start(
        &spec.label,
        spec.warmup + spec.duration,
        vec![
            ("acked", sh.acked.clone()),
            ("delivered", sh.delivered.clone()),
            ("errors", sh.errors.clone()),
        ],
        ctx.quiet,
    );
    sleep_until(window_start).await;
    let (srv_a, me_a) = (server.sample(), procstat::sample(std::process::id()));
    let (acked_a, delivered_a) = (
        sh.acked.load(Ordering::Relaxed),
        sh.delivered.load(Ordering::Relaxed),
    );
    sleep_until(window_end).await;
    let (srv_b, me_b) = (server.sample(), procstat::sample(std::process::id()));
    let (acked_b, delivered_b) = (
        sh.acked.load(Ordering::Relaxed),
        sh.delivered.load(Ordering::Relaxed),
    );
    progress.finish();

    let mut failures = Vec::new();
    for task in pub_tasks {
        match task.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => failures.push(e.to_string()),
            Err(e) => failures.push(e.to_string()),
        }
    }
    let expected = sh.acked.load(Ordering::Relaxed) * spec.subscribers_per_channel as u64;
    let drain_deadline = Instant::now() + DRAIN;
    while sh.delivered.load(Ordering::Relaxed) < expected && Instant::now() < drain_deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = stop_tx.send(true);
    for task in sub_tasks {
        if let Ok(Err(e)) = task.await {
            failures.push(e.to_string());
        }
    }
    if let Some(first) = failures.first() {
        sh.error(first);
    }

    let window = secs(spec.duration);
    let acked = acked_b.saturating_sub(acked_a);
    let mut m = Metrics::new();
    m.insert("machine_load1".into(), procstat::load1());
    m.insert("channels".into(), spec.channels as f64);
    m.insert("subscribers".into(), n_subs as f64);
    m.insert("connections".into(), (n_subs + spec.channels) as f64);
    if spec.rate > 0.0 {
        m.insert("offered_per_s".into(), spec.rate * spec.channels as f64);
    }
    m.insert("appends_per_s".into(), acked as f64 / window);
    m.insert(
        "deliveries_per_s".into(),
        delivered_b.saturating_sub(delivered_a) as f64 / window,
    );
    sh.e2e.snapshot().summary().put(&mut m, "latency");
    sh.ack.snapshot().summary().put(&mut m, "ack");
    m.insert("errors".into(), sh.errors.load(Ordering::Relaxed) as f64);
    m.insert(
        "missing".into(),
        expected.saturating_sub(sh.delivered.load(Ordering::Relaxed)) as f64,
    );
    if let (Some(a), Some(b)) = (srv_a, srv_b) {
        procstat::put_server_metrics(&mut m, &a, &b, window, acked);
    }
    if let (Some(a), Some(b)) = (me_a, me_b) {
        m.insert("bench_cpu_pct".into(), procstat::cpu_percent(&a, &b));
    }
    if let Ok(Some(first)) = sh.first_error.lock().map(|f| f.clone()) {
        eprintln!("  {}: first error: {first}", spec.label);
    }
    Ok(m)
}

/// One publisher's state.
struct Pub {
    channel: String,
    req: u64,
    serial: Option<String>,
    create_req: Option<u64>,
    in_message: usize,
    /// `(req, send time)` of unacknowledged appends, in order.
    inflight: VecDeque<(u64, u64)>,
    sent: u64,
}

impl Pub {
    /// Sends appends until `due` were sent or `limit` are in flight;
    /// starts a new message when the current one is full.
    async fn fill(
        &mut self,
        ws: &mut Ws,
        due: u64,
        limit: usize,
        spec: &StreamSpec,
        sh: &Shared,
    ) -> Result<()> {
        let mut fed = false;
        while self.sent < due && self.inflight.len() < limit {
            if self.in_message >= spec.tokens_per_message {
                self.serial = None;
                self.in_message = 0;
            }
            let Some(serial) = &self.serial else {
                if self.create_req.is_none() {
                    self.req += 1;
                    self.create_req = Some(self.req);
                    ws.feed(Message::text(wire::publish(self.req, &self.channel, "")))
                        .await?;
                    fed = true;
                }
                break;
            };
            self.req += 1;
            let ts = clock::now_ns();
            let frame = wire::append(self.req, &self.channel, serial, &wire::token(ts));
            ws.feed(Message::text(frame)).await?;
            self.inflight.push_back((self.req, ts));
            self.sent += 1;
            self.in_message += 1;
            sh.sent.fetch_add(1, Ordering::Relaxed);
            fed = true;
        }
        if fed {
            ws.flush().await?;
        }
        Ok(())
    }

    fn on_frame(&mut self, text: &str, sh: &Shared, rec: &mut Recorder) {
        let kind = wire::frame_type(text).unwrap_or_default();
        if kind != "ack" && kind != "error" {
            return;
        }
        let req = wire::req(text);
        if kind == "error" {
            sh.error(text);
        }
        if req.is_some() && req == self.create_req {
            self.create_req = None;
            if kind == "ack" {
                self.serial = wire::serial(text).map(str::to_owned);
            }
            return;
        }
        let Some(req) = req else { return };
        while let Some(&(r, ts)) = self.inflight.front() {
            if r > req {
                break;
            }
            self.inflight.pop_front();
            if r == req && kind == "ack" {
                sh.acked.fetch_add(1, Ordering::Relaxed);
                if sh.in_window(ts) {
                    rec.record_ns(clock::now_ns().saturating_sub(ts));
                }
            }
        }
    }
}

async fn publisher(
    mut ws: Ws,
    channel: String,
    spec: Arc<StreamSpec>,
    sh: Arc<Shared>,
    start: Instant,
) -> Result<()> {
    let mut p = Pub {
        channel,
        req: 0,
        serial: None,
        create_req: None,
        in_message: 0,
        inflight: VecDeque::new(),
        sent: 0,
    };
    let mut rec = sh.ack.recorder();
    let open = spec.rate > 0.0;
    let (limit, tick_every) = if open {
        let period = Duration::from_secs_f64(1.0 / spec.rate);
        (
            spec.max_inflight,
            period.clamp(Duration::from_millis(1), Duration::from_millis(50)),
        )
    } else {
        (spec.window.max(1), Duration::from_secs(3600))
    };
    let mut tick = tokio::time::interval_at(start, tick_every);
    tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let stop_timer = sleep_until(sh.stop_send);
    let drain_timer = sleep_until(sh.stop_send + DRAIN);
    tokio::pin!(stop_timer, drain_timer);
    let mut stopping = false;
    sleep_until(start).await;
    loop {
        if !stopping && Instant::now() >= sh.stop_send {
            stopping = true;
        }
        if stopping && p.inflight.is_empty() && p.create_req.is_none() {
            break;
        }
        if !open && !stopping {
            p.fill(&mut ws, u64::MAX, limit, &spec, &sh).await?;
        }
        tokio::select! {
            frame = ws.next() => match frame {
                Some(Ok(Message::Text(text))) => p.on_frame(text.as_str(), &sh, &mut rec),
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e.into()),
                None => return Err(err("publisher connection closed")),
            },
            _ = tick.tick(), if open && !stopping => {
                let elapsed = Instant::now().saturating_duration_since(start);
                let due = (elapsed.as_secs_f64() * spec.rate) as u64 + 1;
                p.fill(&mut ws, due, limit, &spec, &sh).await?;
            }
            _ = &mut stop_timer, if !stopping => stopping = true,
            _ = &mut drain_timer => break,
        }
    }
    drop(rec);
    close(ws).await;
    Ok(())
}

async fn subscriber(mut ws: Ws, sh: Arc<Shared>, mut stop: watch::Receiver<bool>) -> Result<()> {
    let mut rec = sh.e2e.recorder();
    loop {
        tokio::select! {
            biased;
            _ = stop.changed() => break,
            frame = ws.next() => match frame {
                Some(Ok(Message::Text(text))) => {
                    let text = text.as_str();
                    if wire::frame_type(text) == Some("message") {
                        if let Some(data) = wire::data(text) {
                            let now = clock::now_ns();
                            let n = wire::for_each_token(data, |ts| {
                                if sh.in_window(ts) {
                                    rec.record_ns(now.saturating_sub(ts));
                                }
                            });
                            sh.delivered.fetch_add(n, Ordering::Relaxed);
                        }
                    } else if wire::frame_type(text) == Some("error") {
                        sh.error(text);
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e.into()),
                None => return Err(err("subscriber connection closed")),
            },
        }
    }
    drop(rec);
    close(ws).await;
    Ok(())
}

/// Closes cleanly (so the server does not park a resumable session), but
/// never waits long.
pub async fn close(mut ws: Ws) {
    let _ = tokio::time::timeout(Duration::from_secs(1), ws.close(None)).await;
}
