//! Soak: W1-style steady load for minutes while the server's RSS is sampled
//! every few seconds, then an idle cool-down, still sampled. Shows whether
//! memory plateaus under steady load (it must: every cache and buffer is
//! bounded) and what is given back once the load stops.
//!
//! Defaults: 200 channels at 15 appends/s each (3,000 appends/s), 120 s,
//! a sample every 5 s, 30 s of cool-down.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::stream::{self, StreamSpec, ser_secs};
use crate::stats::Metrics;
use crate::target::Server;
use crate::{Ctx, Result};

/// What a soak run does.
#[derive(Debug, Clone, Serialize)]
pub struct SoakSpec {
    /// The steady load (its `duration` is the loaded phase).
    pub load: StreamSpec,
    /// Time between RSS samples.
    #[serde(serialize_with = "ser_secs")]
    pub sample_every: Duration,
    /// Sampled idle time after the load stops.
    #[serde(serialize_with = "ser_secs")]
    pub cooldown: Duration,
}

impl Default for SoakSpec {
    fn default() -> SoakSpec {
        let mut load = StreamSpec::w1();
        load.label = "soak".into();
        load.channels = 200;
        load.rate = 15.0;
        load.duration = Duration::from_secs(120);
        load.warmup = Duration::from_secs(2);
        SoakSpec {
            load,
            sample_every: Duration::from_secs(5),
            cooldown: Duration::from_secs(30),
        }
    }
}

/// One RSS reading.
#[derive(Debug, Clone, Serialize)]
pub struct SoakSample {
    /// Seconds since the load started.
    pub t_s: f64,
    /// The server's resident set (MiB).
    pub rss_mib: f64,
    /// `load` or `idle`.
    pub phase: &'static str,
}

/// Runs the soak; returns the load's metrics (plus RSS figures) and the
/// RSS series.
pub async fn run(
    server: &Server,
    spec: &SoakSpec,
    ctx: &Ctx,
) -> Result<(Metrics, Vec<SoakSample>)> {
    let samples = Arc::new(std::sync::Mutex::new(Vec::new()));
    let loaded = Arc::new(AtomicBool::new(true));
    let stop = Arc::new(AtomicBool::new(false));
    let pid = server.pid;
    let sampler = {
        let (samples, loaded, stop) = (samples.clone(), loaded.clone(), stop.clone());
        let every = spec.sample_every.max(Duration::from_millis(100));
        tokio::spawn(async move {
            let start = Instant::now();
            let mut tick = tokio::time::interval(every);
            while !stop.load(Ordering::Relaxed) {
                tick.tick().await;
                let Some(s) = pid.and_then(crate::procstat::sample) else {
                    continue;
                };
                let phase = if loaded.load(Ordering::Relaxed) {
                    "load"
                } else {
                    "idle"
                };
                if let Ok(mut v) = samples.lock() {
                    v.push(SoakSample {
                        t_s: start.elapsed().as_secs_f64(),
                        rss_mib: s.rss_kib as f64 / 1024.0,
                        phase,
                    });
                }
            }
        })
    };
    let result = stream::run(server, &spec.load, ctx).await;
    loaded.store(false, Ordering::Relaxed);
    tokio::time::sleep(spec.cooldown).await;
    stop.store(true, Ordering::Relaxed);
    let _ = sampler.await;
    let mut m = result?;
    let series = samples.lock().map(|v| v.clone()).unwrap_or_default();
    put_rss_figures(&mut m, &series);
    Ok((m, series))
}

/// RSS at start, peak, end of load, after the cool-down, and the growth
/// rate over the second half of the loaded phase (a plateau is ~0).
fn put_rss_figures(m: &mut Metrics, series: &[SoakSample]) {
    let load: Vec<&SoakSample> = series.iter().filter(|s| s.phase == "load").collect();
    if let (Some(first), Some(last)) = (load.first(), load.last()) {
        m.insert("rss_start_mib".into(), first.rss_mib);
        m.insert("rss_end_of_load_mib".into(), last.rss_mib);
    }
    if let Some(peak) = series.iter().map(|s| s.rss_mib).reduce(f64::max) {
        m.insert("rss_peak_mib".into(), peak);
    }
    if let Some(idle) = series.iter().rev().find(|s| s.phase == "idle") {
        m.insert("rss_after_cooldown_mib".into(), idle.rss_mib);
    }
    let half = &load[load.len() / 2..];
    if let Some(slope) = slope(half) {
        m.insert("rss_growth_second_half_mib_per_min".into(), slope * 60.0);
    }
}

/// Least-squares slope of RSS over time (MiB/s).
fn slope(points: &[&SoakSample]) -> Option<f64> {
    if points.len() < 3 {
        return None;
    }
    let n = points.len() as f64;
    let mx = points.iter().map(|p| p.t_s).sum::<f64>() / n;
    let my = points.iter().map(|p| p.rss_mib).sum::<f64>() / n;
    let sxx: f64 = points.iter().map(|p| (p.t_s - mx).powi(2)).sum();
    let sxy: f64 = points.iter().map(|p| (p.t_s - mx) * (p.rss_mib - my)).sum();
    (sxx > 0.0).then(|| sxy / sxx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slope_of_a_line_and_of_a_plateau() {
        let line: Vec<SoakSample> = (0..10)
            .map(|i| SoakSample {
                t_s: f64::from(i),
                rss_mib: 100.0 + 2.0 * f64::from(i),
                phase: "load",
            })
            .collect();
        let refs: Vec<&SoakSample> = line.iter().collect();
        assert!((slope(&refs).unwrap_or(0.0) - 2.0).abs() < 1e-9);
        let flat: Vec<SoakSample> = (0..10)
            .map(|i| SoakSample {
                t_s: f64::from(i),
                rss_mib: 100.0,
                phase: "load",
            })
            .collect();
        let refs: Vec<&SoakSample> = flat.iter().collect();
        assert_eq!(slope(&refs), Some(0.0));
        assert_eq!(slope(&refs[..2]), None);
    }
}
