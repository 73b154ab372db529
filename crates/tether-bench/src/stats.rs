//! Latency histograms (microseconds) and flat metric maps.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use hdrhistogram::Histogram;
use serde::Serialize;

/// Flat named numbers: what a run measured. Medians and ratios are taken
/// key by key.
pub type Metrics = BTreeMap<String, f64>;

/// A latency histogram in microseconds, 1 µs to 10 min, 3 significant digits.
#[derive(Debug, Clone)]
pub struct Hist(Histogram<u64>);

impl Default for Hist {
    fn default() -> Hist {
        Hist::new()
    }
}

impl Hist {
    /// An empty histogram.
    pub fn new() -> Hist {
        match Histogram::new_with_bounds(1, 600_000_000, 3) {
            Ok(h) => Hist(h),
            Err(_) => Hist(Histogram::new(3).unwrap_or_else(|_| unreachable!())),
        }
    }

    /// Records one latency in nanoseconds (clamped into range).
    pub fn record_ns(&mut self, ns: u64) {
        self.0.saturating_record((ns / 1_000).max(1));
    }

    /// Adds another histogram's counts.
    pub fn merge(&mut self, other: &Hist) {
        let _ = self.0.add(&other.0);
    }

    /// Number of samples.
    pub fn len(&self) -> u64 {
        self.0.len()
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Percentiles in milliseconds.
    pub fn summary(&self) -> Latency {
        let h = &self.0;
        let ms = |us: u64| us as f64 / 1_000.0;
        if h.is_empty() {
            return Latency::default();
        }
        Latency {
            count: h.len(),
            p50_ms: ms(h.value_at_quantile(0.50)),
            p90_ms: ms(h.value_at_quantile(0.90)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p999_ms: ms(h.value_at_quantile(0.999)),
            max_ms: ms(h.max()),
            mean_ms: h.mean() / 1_000.0,
        }
    }
}

/// Latency percentiles of one run.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Latency {
    pub count: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

impl Latency {
    /// Adds `prefix_p50_ms` ... to `m`.
    pub fn put(&self, m: &mut Metrics, prefix: &str) {
        m.insert(format!("{prefix}_count"), self.count as f64);
        m.insert(format!("{prefix}_p50_ms"), self.p50_ms);
        m.insert(format!("{prefix}_p90_ms"), self.p90_ms);
        m.insert(format!("{prefix}_p99_ms"), self.p99_ms);
        m.insert(format!("{prefix}_p999_ms"), self.p999_ms);
        m.insert(format!("{prefix}_max_ms"), self.max_ms);
        m.insert(format!("{prefix}_mean_ms"), self.mean_ms);
    }
}

/// A histogram shared by many tasks.
#[derive(Debug, Clone, Default)]
pub struct SharedHist(Arc<Mutex<Hist>>);

impl SharedHist {
    /// A per-task recorder that batches samples into this histogram.
    pub fn recorder(&self) -> Recorder {
        Recorder {
            buf: Vec::with_capacity(RECORDER_BATCH),
            shared: self.clone(),
        }
    }

    /// A copy of the merged histogram.
    pub fn snapshot(&self) -> Hist {
        self.0.lock().map(|h| h.clone()).unwrap_or_default()
    }

    fn add_all(&self, samples: &[u64]) {
        if let Ok(mut h) = self.0.lock() {
            for &ns in samples {
                h.record_ns(ns);
            }
        }
    }
}

const RECORDER_BATCH: usize = 512;

/// Buffers samples locally; flushes every few hundred and on drop, so
/// thousands of tasks share one histogram without contention.
#[derive(Debug)]
pub struct Recorder {
    buf: Vec<u64>,
    shared: SharedHist,
}

impl Recorder {
    /// Records one latency in nanoseconds.
    pub fn record_ns(&mut self, ns: u64) {
        self.buf.push(ns);
        if self.buf.len() >= RECORDER_BATCH {
            self.flush();
        }
    }

    /// Moves buffered samples into the shared histogram.
    pub fn flush(&mut self) {
        self.shared.add_all(&self.buf);
        self.buf.clear();
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.flush();
    }
}

/// The median of some numbers (mean of the middle two for an even count).
pub fn median(values: &mut [f64]) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    }
}

/// Key-by-key median of several runs' metrics.
pub fn median_metrics(runs: &[Metrics]) -> Metrics {
    let mut keys: Vec<&String> = runs.iter().flat_map(|m| m.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .map(|k| {
            let mut values: Vec<f64> = runs.iter().filter_map(|m| m.get(k).copied()).collect();
            (k.clone(), median(&mut values))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_and_medians() {
        let mut h = Hist::new();
        for ms in 1..=100u64 {
            h.record_ns(ms * 1_000_000);
        }
        let s = h.summary();
        assert_eq!(s.count, 100);
        assert!((s.p50_ms - 50.0).abs() < 0.1, "{s:?}");
        assert!((s.p99_ms - 99.0).abs() < 0.1, "{s:?}");
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        let a = Metrics::from([("x".into(), 1.0)]);
        let b = Metrics::from([("x".into(), 5.0)]);
        let c = Metrics::from([("x".into(), 2.0)]);
        assert_eq!(median_metrics(&[a, b, c])["x"], 2.0);
    }
}
