//! A progress bar with live rates while a workload runs.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A counter shown on the bar as a rate.
pub type Counter = Arc<AtomicU64>;

/// The bar and the task updating it.
pub struct Progress {
    bar: ProgressBar,
    ticker: Option<tokio::task::JoinHandle<()>>,
}

impl Progress {
    /// A bar over `total` (the measured phase), showing each counter's rate.
    pub fn start(
        label: &str,
        total: Duration,
        counters: Vec<(&'static str, Counter)>,
        quiet: bool,
    ) -> Progress {
        let bar = if quiet {
            ProgressBar::hidden()
        } else {
            ProgressBar::with_draw_target(
                Some(total.as_millis().try_into().unwrap_or(u64::MAX)),
                ProgressDrawTarget::stderr(),
            )
        };
        if let Ok(style) =
            ProgressStyle::with_template("{prefix:>12} [{bar:30}] {elapsed:>4} {msg}")
        {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_prefix(label.to_owned());
        let ticker = (!quiet).then(|| {
            let bar = bar.clone();
            tokio::spawn(async move {
                let start = Instant::now();
                let mut last: Vec<u64> = counters
                    .iter()
                    .map(|(_, c)| c.load(Ordering::Relaxed))
                    .collect();
                let mut last_at = Instant::now();
                loop {
                    tokio::time::sleep(Duration::from_millis(250)).await;
                    let now = Instant::now();
                    let secs = now.duration_since(last_at).as_secs_f64().max(1e-6);
                    let mut msg = String::new();
                    for (i, (name, c)) in counters.iter().enumerate() {
                        let v = c.load(Ordering::Relaxed);
                        let rate = (v.saturating_sub(last[i])) as f64 / secs;
                        last[i] = v;
                        msg.push_str(&format!("{name} {v} ({rate:.0}/s)  "));
                    }
                    last_at = now;
                    bar.set_position(
                        now.duration_since(start)
                            .as_millis()
                            .try_into()
                            .unwrap_or(u64::MAX),
                    );
                    bar.set_message(msg);
                }
            })
        });
        Progress { bar, ticker }
    }

    /// Removes the bar.
    pub fn finish(self) {
        if let Some(t) = self.ticker {
            t.abort();
        }
        self.bar.finish_and_clear();
    }
}
