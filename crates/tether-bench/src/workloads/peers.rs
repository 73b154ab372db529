//! Side-by-side runs against peer systems, same generator, same load, same
//! invocation, so the ratios survive a noisy shared machine.
//!
//! - [`http_log`]: durable append over HTTP + SSE tailing. Tether does REST
//!   `POST /channels/{c}/messages/{serial}/append` and
//!   `GET /channels/{c}/stream`; the Durable Streams reference server does
//!   `POST /v1/stream/{s}` and `GET /v1/stream/{s}?offset=-1&live=sse`.
//! - [`fanout`]: one channel, many WebSocket subscribers, server-side
//!   publishing over HTTP. Tether: `POST /channels/{c}/messages` and a
//!   `/ws` attach; Sockudo: Pusher's signed `POST /apps/{id}/events` and a
//!   `pusher:subscribe`.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures::StreamExt;
use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use serde::Serialize;
use sha2::Sha256;
use tokio::sync::watch;
use tokio::time::{Instant, sleep_until};
use tokio_tungstenite::tungstenite::Message;

use super::{concurrently, run_id, secs};
use crate::progress::{Counter, Progress};
use crate::stats::{Metrics, Recorder, SharedHist};
use crate::target::Server;
use crate::ws::{self, Ws};
use crate::{Ctx, Result, clock, err, procstat, wire};

/// The HTTP log protocol spoken to a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogProtocol {
    Tether,
    DurableStreams,
}

/// Appends per Tether message in [`http_log`] before a new one starts.
const TOKENS_PER_MESSAGE: usize = 1_000;

/// What to run for [`http_log`].
#[derive(Debug, Clone, Serialize)]
pub struct LogSpec {
    /// Streams (channels), each with one writer and one SSE reader.
    pub streams: usize,
    /// Appends per second per stream; 0 = as fast as one request in
    /// flight per stream allows.
    pub rate: f64,
    #[serde(serialize_with = "super::stream::ser_secs")]
    pub duration: Duration,
    #[serde(serialize_with = "super::stream::ser_secs")]
    pub warmup: Duration,
}

impl Default for LogSpec {
    fn default() -> LogSpec {
        LogSpec {
            streams: 50,
            rate: 0.0,
            duration: Duration::from_secs(10),
            warmup: Duration::from_secs(2),
        }
    }
}

/// Counters of one peer run.
struct Shared {
    sent: Counter,
    acked: Counter,
    delivered: Counter,
    errors: Counter,
    e2e: SharedHist,
    ack: SharedHist,
    window_start: u64,
    window_end: u64,
    stop_send: Instant,
    first_error: std::sync::Mutex<Option<String>>,
}

impl Shared {
    fn new(window_start: Instant, window_end: Instant) -> Shared {
        Shared {
            sent: Counter::default(),
            acked: Counter::default(),
            delivered: Counter::default(),
            errors: Counter::default(),
            e2e: SharedHist::default(),
            ack: SharedHist::default(),
            window_start: clock::ns_at(window_start.into_std()),
            window_end: clock::ns_at(window_end.into_std()),
            stop_send: window_end,
            first_error: std::sync::Mutex::new(None),
        }
    }

    fn in_window(&self, ts: u64) -> bool {
        ts >= self.window_start && ts < self.window_end
    }

    fn error(&self, what: String) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut first) = self.first_error.lock() {
            first.get_or_insert(what);
        }
    }

    /// Records the tokens of one delivery.
    fn delivered(&self, data: &str, rec: &mut Recorder) {
        let now = clock::now_ns();
        let n = wire::for_each_token(data, |ts| {
            if self.in_window(ts) {
                rec.record_ns(now.saturating_sub(ts));
            }
        });
        self.delivered.fetch_add(n, Ordering::Relaxed);
    }
}

fn http_client() -> Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(usize::MAX)
        .timeout(Duration::from_secs(30))
        .build()?)
}

/// Runs a paced (or closed-loop, `rate` = 0) sender: calls `send(ts)` until
/// the window ends; each call is one request.
async fn paced<F, Fut>(sh: Arc<Shared>, start: Instant, rate: f64, mut send: F)
where
    F: FnMut(u64) -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    let mut rec = sh.ack.recorder();
    let mut sent = 0u64;
    sleep_until(start).await;
    loop {
        if rate > 0.0 {
            let next = start + Duration::from_secs_f64(sent as f64 / rate);
            sleep_until(next).await;
        }
        if Instant::now() >= sh.stop_send {
            break;
        }
        let ts = clock::now_ns();
        sh.sent.fetch_add(1, Ordering::Relaxed);
        sent += 1;
        match send(ts).await {
            Ok(()) => {
                sh.acked.fetch_add(1, Ordering::Relaxed);
                if sh.in_window(ts) {
                    rec.record_ns(clock::now_ns().saturating_sub(ts));
                }
            }
            Err(e) => sh.error(e.to_string()),
        }
    }
}

/// Reads an SSE response, handing every `data:` line to `on_data`.
async fn read_sse(
    mut resp: reqwest::Response,
    sh: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) -> Result<()> {
    let mut rec = sh.e2e.recorder();
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    loop {
        let chunk = tokio::select! {
            biased;
            _ = stop.changed() => break,
            chunk = resp.chunk() => chunk?,
        };
        let Some(chunk) = chunk else { break };
        buf.extend_from_slice(&chunk);
        let mut consumed = 0;
        while let Some(nl) = memchr::memchr(b'\n', &buf[consumed..]) {
            let line = &buf[consumed..consumed + nl];
            consumed += nl + 1;
            let Some(value) = line.strip_prefix(b"data:") else {
                continue;
            };
            let value = std::str::from_utf8(value).unwrap_or_default().trim_start();
            if value.starts_with('T') {
                sh.delivered(value, &mut rec);
            } else if let Some(data) = wire::data(value) {
                sh.delivered(data, &mut rec);
            }
        }
        buf.drain(..consumed);
    }
    Ok(())
}

/// Durable append over HTTP + SSE reads (Tether vs Durable Streams).
pub async fn http_log(
    server: &Server,
    proto: LogProtocol,
    spec: &LogSpec,
    ctx: &Ctx,
) -> Result<Metrics> {
    let client = http_client()?;
    let id = run_id();
    let base = server.url.clone();
    // Create the streams; for Tether a stream is one message appended to.
    // (append or messages URL, SSE URL, Tether: serial of the first message)
    let targets: Vec<(String, String, String)> = concurrently(spec.streams, 16, |i| {
        let (client, base, id) = (client.clone(), base.clone(), id.clone());
        async move {
            match proto {
                LogProtocol::Tether => {
                    let channel = format!("bench:log-{id}-{i}");
                    let resp = client
                        .post(format!("{base}/channels/{channel}/messages"))
                        .json(&serde_json::json!({"data": ""}))
                        .send()
                        .await?
                        .error_for_status()?;
                    let body: serde_json::Value = resp.json().await?;
                    let serial = body["serial"].as_str().ok_or_else(|| err("no serial"))?;
                    Ok((
                        format!("{base}/channels/{channel}/messages"),
                        format!("{base}/channels/{channel}/stream?rollup_ms=0"),
                        serial.to_owned(),
                    ))
                }
                LogProtocol::DurableStreams => {
                    let url = format!("{base}/v1/stream/bench-{id}-{i}");
                    client
                        .put(&url)
                        .header("content-type", "text/plain")
                        .send()
                        .await?
                        .error_for_status()?;
                    Ok((
                        url.clone(),
                        format!("{url}?offset=-1&live=sse"),
                        String::new(),
                    ))
                }
            }
        }
    })
    .await?;
    let readers: Vec<reqwest::Response> = concurrently(spec.streams, 16, |i| {
        let (client, url) = (client.clone(), targets[i].1.clone());
        async move { Ok(client.get(url).send().await?.error_for_status()?) }
    })
    .await?;

    let t0 = Instant::now() + Duration::from_millis(300);
    let (ws_at, we_at) = (t0 + spec.warmup, t0 + spec.warmup + spec.duration);
    let sh = Arc::new(Shared::new(ws_at, we_at));
    let (stop_tx, stop_rx) = watch::channel(false);
    let read_tasks: Vec<_> = readers
        .into_iter()
        .map(|r| {
            let reading = read_sse(r, sh.clone(), stop_rx.clone());
            tokio::spawn(async move {
                if let Err(e) = reading.await {
                    eprintln!("  SSE reader: {e}");
                }
            })
        })
        .collect();
    let write_tasks: Vec<_> = targets
        .iter()
        .enumerate()
        .map(|(i, (url, _, serial))| {
            let (client, url, sh) = (client.clone(), url.clone(), sh.clone());
            // Tether: a stream is a message of at most TOKENS_PER_MESSAGE
            // appends (messages are capped at 64 KiB), then a new one.
            let current = Arc::new(std::sync::Mutex::new((serial.clone(), 0usize)));
            let phase = if spec.rate > 0.0 {
                Duration::from_secs_f64(i as f64 / spec.streams as f64 / spec.rate)
            } else {
                Duration::ZERO
            };
            tokio::spawn(paced(sh, t0 + phase, spec.rate, move |ts| {
                let token = wire::token(ts);
                let (client, url, current) = (client.clone(), url.clone(), current.clone());
                async move {
                    match proto {
                        LogProtocol::Tether => {
                            let (serial, full) = {
                                let mut c = current.lock().map_err(|_| err("poisoned"))?;
                                c.1 += 1;
                                (c.0.clone(), c.1 > TOKENS_PER_MESSAGE)
                            };
                            let serial = if full {
                                let body: serde_json::Value = client
                                    .post(&url)
                                    .json(&serde_json::json!({"data": ""}))
                                    .send()
                                    .await?
                                    .error_for_status()?
                                    .json()
                                    .await?;
                                let serial = body["serial"]
                                    .as_str()
                                    .ok_or_else(|| err("no serial"))?
                                    .to_owned();
                                *current.lock().map_err(|_| err("poisoned"))? = (serial.clone(), 1);
                                serial
                            } else {
                                serial
                            };
                            client
                                .post(format!("{url}/{serial}/append"))
                                .json(&serde_json::json!({"data": token}))
                                .send()
                                .await?
                                .error_for_status()?;
                        }
                        LogProtocol::DurableStreams => {
                            client
                                .post(&url)
                                .header("content-type", "text/plain")
                                .body(token)
                                .send()
                                .await?
                                .error_for_status()?;
                        }
                    }
                    Ok(())
                }
            }))
        })
        .collect();
    let label = match proto {
        LogProtocol::Tether => "log tether",
        LogProtocol::DurableStreams => "log ds",
    };
    Ok(measure(
        server,
        &sh,
        label,
        spec.warmup,
        spec.duration,
        ws_at,
        we_at,
        1,
        ctx,
        write_tasks,
        stop_tx,
        read_tasks,
    )
    .await)
}

/// Waits out warm-up and window, samples the server, waits for writers and
/// then for outstanding deliveries, and builds the metrics.
#[allow(clippy::too_many_arguments)]
async fn measure(
    server: &Server,
    sh: &Arc<Shared>,
    label: &str,
    warmup: Duration,
    duration: Duration,
    ws_at: Instant,
    we_at: Instant,
    fanout: u64,
    ctx: &Ctx,
    writers: Vec<tokio::task::JoinHandle<()>>,
    stop: watch::Sender<bool>,
    readers: Vec<tokio::task::JoinHandle<()>>,
) -> Metrics {
    let progress = Progress::start(
        label,
        warmup + duration,
        vec![
            ("acked", sh.acked.clone()),
            ("delivered", sh.delivered.clone()),
            ("errors", sh.errors.clone()),
        ],
        ctx.quiet,
    );
    sleep_until(ws_at).await;
    let (srv_a, me_a) = (server.sample(), procstat::sample(std::process::id()));
    let (acked_a, delivered_a) = (
        sh.acked.load(Ordering::Relaxed),
        sh.delivered.load(Ordering::Relaxed),
    );
    sleep_until(we_at).await;
    let (srv_b, me_b) = (server.sample(), procstat::sample(std::process::id()));
    let (acked_b, delivered_b) = (
        sh.acked.load(Ordering::Relaxed),
        sh.delivered.load(Ordering::Relaxed),
    );
    progress.finish();
    for w in writers {
        let _ = w.await;
    }
    let expected = sh.acked.load(Ordering::Relaxed) * fanout;
    let deadline = Instant::now() + Duration::from_secs(5);
    while sh.delivered.load(Ordering::Relaxed) < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Readers flush their latency samples when they end.
    let _ = stop.send(true);
    for r in readers {
        let _ = r.await;
    }
    let window = secs(duration);
    let acked = acked_b.saturating_sub(acked_a);
    let delivered = delivered_b.saturating_sub(delivered_a);
    let mut m = Metrics::new();
    m.insert("machine_load1".into(), procstat::load1());
    m.insert("appends_per_s".into(), acked as f64 / window);
    m.insert("deliveries_per_s".into(), delivered as f64 / window);
    sh.e2e.snapshot().summary().put(&mut m, "latency");
    sh.ack.snapshot().summary().put(&mut m, "ack");
    m.insert("errors".into(), sh.errors.load(Ordering::Relaxed) as f64);
    m.insert(
        "missing".into(),
        expected.saturating_sub(sh.delivered.load(Ordering::Relaxed)) as f64,
    );
    if let (Some(a), Some(b)) = (srv_a, srv_b) {
        procstat::put_server_metrics(&mut m, &a, &b, window, acked);
        if delivered > 0 {
            m.insert(
                "server_cpu_us_per_delivery".into(),
                procstat::cpu_secs(&a, &b) * 1e6 / delivered as f64,
            );
        }
    }
    if let (Some(a), Some(b)) = (me_a, me_b) {
        m.insert("bench_cpu_pct".into(), procstat::cpu_percent(&a, &b));
    }
    if let Ok(Some(first)) = sh.first_error.lock().map(|f| f.clone()) {
        eprintln!("  {label}: first error: {first}");
    }
    m
}

/// How to reach a Sockudo (Pusher protocol) app.
#[derive(Debug, Clone)]
pub struct PusherApp {
    pub id: String,
    pub key: String,
    pub secret: String,
}

/// The fan-out peer protocol.
#[derive(Debug, Clone)]
pub enum FanoutProtocol {
    Tether,
    Pusher(PusherApp),
}

/// What to run for [`fanout`].
#[derive(Debug, Clone, Serialize)]
pub struct FanoutSpec {
    /// WebSocket subscribers of the one channel.
    pub subscribers: usize,
    /// Publishes per second (over HTTP, `lanes` requests in flight at most).
    pub rate: f64,
    /// Concurrent publishing request loops.
    pub lanes: usize,
    #[serde(serialize_with = "super::stream::ser_secs")]
    pub duration: Duration,
    #[serde(serialize_with = "super::stream::ser_secs")]
    pub warmup: Duration,
}

impl Default for FanoutSpec {
    fn default() -> FanoutSpec {
        FanoutSpec {
            subscribers: 500,
            rate: 200.0,
            lanes: 4,
            duration: Duration::from_secs(10),
            warmup: Duration::from_secs(2),
        }
    }
}

/// Pusher's REST signature: HMAC-SHA256 over method, path and the sorted
/// query (which includes the body's MD5).
pub fn pusher_signed_query(app: &PusherApp, path: &str, body: &str, timestamp: u64) -> String {
    let body_md5 = hex(&Md5::digest(body.as_bytes()));
    let query = format!(
        "auth_key={}&auth_timestamp={timestamp}&auth_version=1.0&body_md5={body_md5}",
        app.key
    );
    let to_sign = format!("POST\n{path}\n{query}");
    let signature = match Hmac::<Sha256>::new_from_slice(app.secret.as_bytes()) {
        Ok(mut mac) => {
            mac.update(to_sign.as_bytes());
            hex(&mac.finalize().into_bytes())
        }
        Err(_) => String::new(),
    };
    format!("{query}&auth_signature={signature}")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

async fn subscribe(server: &Server, proto: &FanoutProtocol, channel: &str) -> Result<Ws> {
    match proto {
        FanoutProtocol::Tether => {
            let mut w = ws::connect_tether(&server.ws_url("rollup_ms=0")).await?;
            ws::attach(&mut w, 1, channel, None).await?;
            Ok(w)
        }
        FanoutProtocol::Pusher(app) => {
            let url = format!(
                "{}/app/{}?protocol=7&client=tether-bench&version=1.0",
                server.url.replacen("http://", "ws://", 1),
                app.key
            );
            let mut w = ws::connect(&url).await?;
            let established = |t: &str| t.contains("pusher:connection_established");
            expect_text(&mut w, established).await?;
            let sub =
                serde_json::json!({"event": "pusher:subscribe", "data": {"channel": channel}});
            ws::send(&mut w, sub.to_string()).await?;
            expect_text(&mut w, |t| t.contains("subscription_succeeded")).await?;
            Ok(w)
        }
    }
}

async fn expect_text(w: &mut Ws, wanted: impl Fn(&str) -> bool) -> Result<()> {
    let deadline = Instant::now() + ws::SETUP_WAIT;
    loop {
        let text = tokio::time::timeout_at(deadline, ws::next_text(w))
            .await
            .map_err(|_| err("timed out during subscribe"))??
            .ok_or_else(|| err("closed during subscribe"))?;
        if wanted(&text) {
            return Ok(());
        }
        if text.contains("pusher:error") {
            return Err(err(format!("subscribe failed: {text}")));
        }
    }
}

async fn fanout_subscriber(mut w: Ws, sh: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let mut rec = sh.e2e.recorder();
    loop {
        tokio::select! {
            biased;
            _ = stop.changed() => break,
            frame = w.next() => match frame {
                Some(Ok(Message::Text(text))) => {
                    if let Some(data) = wire::data(text.as_str()) {
                        sh.delivered(data, &mut rec);
                    }
                }
                Some(Ok(_)) => {}
                _ => {
                    sh.error("subscriber connection ended".into());
                    break;
                }
            },
        }
    }
    drop(rec);
    super::stream::close(w).await;
}

/// One channel, many WebSocket subscribers, publishing over HTTP.
pub async fn fanout(
    server: &Server,
    proto: &FanoutProtocol,
    spec: &FanoutSpec,
    ctx: &Ctx,
) -> Result<Metrics> {
    let client = http_client()?;
    let channel = match proto {
        FanoutProtocol::Tether => format!("bench:fanout-{}", run_id()),
        FanoutProtocol::Pusher(_) => format!("bench-fanout-{}", run_id()),
    };
    let subs = concurrently(spec.subscribers, 128, |_| {
        subscribe(server, proto, &channel)
    })
    .await?;
    let t0 = Instant::now() + Duration::from_millis(300);
    let (ws_at, we_at) = (t0 + spec.warmup, t0 + spec.warmup + spec.duration);
    let sh = Arc::new(Shared::new(ws_at, we_at));
    let (stop_tx, stop_rx) = watch::channel(false);
    let sub_tasks: Vec<_> = subs
        .into_iter()
        .map(|w| tokio::spawn(fanout_subscriber(w, sh.clone(), stop_rx.clone())))
        .collect();
    let lanes = spec.lanes.max(1);
    let lane_rate = spec.rate / lanes as f64;
    let writers: Vec<_> = (0..lanes)
        .map(|lane| {
            let (client, sh, proto, channel) = (client.clone(), sh.clone(), proto.clone(), channel.clone());
            let base = server.url.clone();
            let phase = if lane_rate > 0.0 {
                Duration::from_secs_f64(lane as f64 / lanes as f64 / lane_rate)
            } else {
                Duration::ZERO
            };
            tokio::spawn(paced(sh, t0 + phase, lane_rate, move |ts| {
                let token = wire::token(ts);
                let request = match &proto {
                    FanoutProtocol::Tether => client
                        .post(format!("{base}/channels/{channel}/messages"))
                        .json(&serde_json::json!({"data": token})),
                    FanoutProtocol::Pusher(app) => {
                        let path = format!("/apps/{}/events", app.id);
                        let body = serde_json::json!({"name": "tok", "channels": [channel], "data": token})
                            .to_string();
                        let now = std::time::SystemTime::now()
                            .duration_since(std::time::UNIX_EPOCH)
                            .map_or(0, |d| d.as_secs());
                        let query = pusher_signed_query(app, &path, &body, now);
                        client
                            .post(format!("{base}{path}?{query}"))
                            .header("content-type", "application/json")
                            .body(body)
                    }
                };
                async move {
                    let resp = request.send().await?;
                    if !resp.status().is_success() {
                        let status = resp.status();
                        let text = resp.text().await.unwrap_or_default();
                        return Err(err(format!("publish: {status}: {text}")));
                    }
                    Ok(())
                }
            }))
        })
        .collect();
    let label = match proto {
        FanoutProtocol::Tether => "fanout tether",
        FanoutProtocol::Pusher(_) => "fanout sockudo",
    };
    let mut m = measure(
        server,
        &sh,
        label,
        spec.warmup,
        spec.duration,
        ws_at,
        we_at,
        spec.subscribers as u64,
        ctx,
        writers,
        stop_tx,
        sub_tasks,
    )
    .await;
    if let Some(v) = m.remove("appends_per_s") {
        m.insert("publishes_per_s".into(), v);
    }
    m.insert("subscribers".into(), spec.subscribers as f64);
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pusher_signature_matches_the_documented_example() {
        // Pusher's REST API documentation example (key 278d425bdf160c739803,
        // secret 7ad3773142a6692b25b8, timestamp 1353088179).
        let app = PusherApp {
            id: "3".into(),
            key: "278d425bdf160c739803".into(),
            secret: "7ad3773142a6692b25b8".into(),
        };
        let body = r#"{"name":"foo","channels":["project-3"],"data":"{\"some\":\"data\"}"}"#;
        let q = pusher_signed_query(&app, "/apps/3/events", body, 1353088179);
        assert!(
            q.contains("body_md5=ec365a775a4cd0599faeb73354201b6f"),
            "{q}"
        );
        assert!(
            q.ends_with(
                "auth_signature=da454824c97ba181a32ccc17a72625ba02771f50b50e1e7430e47a1f3f457e6c"
            ),
            "{q}"
        );
    }
}
