//! W3: idle connections. Opens N WebSockets that do nothing and measures
//! the server's resident memory before and after; then attaches each to a
//! channel of its own (an idle subscriber) and measures again.
//!
//! The whole run stays well under the server's idle timeout (45 s), so the
//! connections need no reader tasks: the few heartbeats wait in the kernel.

use std::time::Duration;

use serde::Serialize;

use super::concurrently;
use super::run_id;
use crate::stats::Metrics;
use crate::target::Server;
use crate::ws::{self, Ws};
use crate::{Ctx, Result, err, procstat};

/// What to run.
#[derive(Debug, Clone, Serialize)]
pub struct IdleSpec {
    /// Idle connections to open.
    pub connections: usize,
    /// Also measure with each connection attached to its own channel.
    pub attach: bool,
    /// Wait before reading memory.
    #[serde(serialize_with = "super::stream::ser_secs")]
    pub settle: Duration,
    /// Connections opened at once.
    pub connect_concurrency: usize,
}

impl Default for IdleSpec {
    fn default() -> IdleSpec {
        IdleSpec {
            connections: 5_000,
            attach: true,
            settle: Duration::from_secs(2),
            connect_concurrency: 128,
        }
    }
}

async fn settled_rss(server: &Server, settle: Duration) -> Result<procstat::ProcSample> {
    tokio::time::sleep(settle).await;
    server
        .sample()
        .ok_or_else(|| err("W3 needs the server's pid (spawned server or --pid)"))
}

/// Runs W3.
pub async fn run(server: &Server, spec: &IdleSpec, ctx: &Ctx) -> Result<Metrics> {
    let _ = ctx;
    let url = server.ws_url("");
    // Warm the server's allocator and runtime with a few connections first,
    // so the baseline is not a cold process.
    let warm = concurrently(50, 50, |_| ws::connect_tether(&url)).await?;
    for w in warm {
        super::stream::close(w).await;
    }
    let base = settled_rss(server, spec.settle).await?;
    let started = std::time::Instant::now();
    let mut conns: Vec<Ws> = concurrently(spec.connections, spec.connect_concurrency, |_| {
        ws::connect_tether(&url)
    })
    .await?;
    let open_secs = started.elapsed().as_secs_f64();
    let connected = settled_rss(server, spec.settle).await?;
    let idle_cpu = {
        let a = server.sample();
        tokio::time::sleep(Duration::from_secs(1)).await;
        match (a, server.sample()) {
            (Some(a), Some(b)) => procstat::cpu_percent(&a, &b),
            _ => f64::NAN,
        }
    };
    let n = spec.connections as f64;
    let kib = |a: &procstat::ProcSample, b: &procstat::ProcSample| {
        (b.rss_kib as f64 - a.rss_kib as f64) / n
    };
    let mut m = Metrics::new();
    m.insert("machine_load1".into(), procstat::load1());
    m.insert("connections".into(), n);
    m.insert("connect_per_s".into(), n / open_secs.max(1e-9));
    m.insert("rss_base_mib".into(), base.rss_kib as f64 / 1024.0);
    m.insert(
        "rss_connected_mib".into(),
        connected.rss_kib as f64 / 1024.0,
    );
    m.insert("kib_per_connection".into(), kib(&base, &connected));
    m.insert("server_cpu_pct_idle".into(), idle_cpu);
    if spec.attach {
        let id = run_id();
        let mut attached = Vec::with_capacity(conns.len());
        let mut i = 0usize;
        // Attach in waves, like connecting.
        while !conns.is_empty() {
            let wave: Vec<Ws> = conns
                .drain(..spec.connect_concurrency.min(conns.len()))
                .collect();
            let futs = wave.into_iter().map(|mut w| {
                i += 1;
                let channel = format!("bench:w3-{id}-{i}");
                async move {
                    ws::attach(&mut w, 1, &channel, None).await?;
                    Ok::<_, crate::Error>(w)
                }
            });
            for w in futures::future::join_all(futs).await {
                attached.push(w?);
            }
        }
        let after = settled_rss(server, spec.settle).await?;
        m.insert("rss_attached_mib".into(), after.rss_kib as f64 / 1024.0);
        m.insert("kib_per_attached_connection".into(), kib(&base, &after));
        conns = attached;
    }
    futures::future::join_all(conns.into_iter().map(super::stream::close)).await;
    Ok(m)
}
