//! Results: runs with their repeats and medians, ratios between runs of
//! the same invocation, the JSON file, the human summary and the SVG plot.

use serde::Serialize;
use serde_json::Value;

use crate::stats::{Metrics, median_metrics};

/// Where the numbers were taken.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub nproc: usize,
    pub cpu_model: String,
    pub kernel: String,
}

impl Machine {
    /// This machine.
    pub fn here() -> Machine {
        let (nproc, cpu_model) = crate::procstat::machine();
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_owned())
            .unwrap_or_default();
        Machine {
            nproc,
            cpu_model,
            kernel,
        }
    }
}

/// One workload against one system, repeated.
#[derive(Debug, Clone, Serialize)]
pub struct RunRecord {
    /// `w1`, `w2`, ... `peer-ds`.
    pub workload: String,
    /// What ran, e.g. `tether (fsync batch)` or `durable-streams (file)`.
    pub label: String,
    pub params: Value,
    pub repeats: Vec<Metrics>,
    /// Key-by-key median of the repeats.
    pub median: Metrics,
}

impl RunRecord {
    /// A record with its median computed.
    pub fn new(workload: &str, label: &str, params: Value, repeats: Vec<Metrics>) -> RunRecord {
        RunRecord {
            workload: workload.into(),
            label: label.into(),
            params,
            median: median_metrics(&repeats),
            repeats,
        }
    }
}

/// Key-by-key quotient of two runs' medians.
#[derive(Debug, Clone, Serialize)]
pub struct Ratio {
    pub name: String,
    pub numerator: String,
    pub denominator: String,
    pub ratios: Metrics,
}

/// Everything one invocation measured.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub tool: String,
    pub command: Vec<String>,
    pub started_unix: u64,
    pub machine: Machine,
    pub runs: Vec<RunRecord>,
    pub ratios: Vec<Ratio>,
    /// Points of a latency-vs-load sweep, if one ran.
    pub sweep: Vec<SweepPoint>,
    /// The server's RSS over a soak run, if one ran.
    pub soak: Vec<crate::workloads::soak::SoakSample>,
    /// Workloads that could not run, and why.
    pub skipped: Vec<(String, String)>,
}

/// One load level of the sweep.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct SweepPoint {
    pub offered_per_s: f64,
    pub appends_per_s: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Report {
    /// An empty report for this invocation.
    pub fn new() -> Report {
        Report {
            tool: format!("tether-bench {}", env!("CARGO_PKG_VERSION")),
            command: std::env::args().collect(),
            started_unix: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            machine: Machine::here(),
            runs: Vec::new(),
            ratios: Vec::new(),
            sweep: Vec::new(),
            soak: Vec::new(),
            skipped: Vec::new(),
        }
    }

    /// Adds `num / den` for every metric both runs have.
    pub fn add_ratio(&mut self, name: &str, num: &RunRecord, den: &RunRecord) {
        let ratios = num
            .median
            .iter()
            .filter_map(|(k, a)| {
                let b = den.median.get(k)?;
                (*b != 0.0 && a.is_finite() && b.is_finite()).then(|| (k.clone(), a / b))
            })
            .collect();
        self.ratios.push(Ratio {
            name: name.into(),
            numerator: num.label.clone(),
            denominator: den.label.clone(),
            ratios,
        });
    }

    /// The human summary.
    pub fn summary(&self) -> String {
        let mut out = format!(
            "machine: {} CPUs, {}, Linux {}\n",
            self.machine.nproc, self.machine.cpu_model, self.machine.kernel
        );
        for run in &self.runs {
            out.push_str(&format!(
                "\n{} — {} (median of {})\n",
                run.workload,
                run.label,
                run.repeats.len()
            ));
            for (k, v) in shown(&run.median) {
                out.push_str(&format!("  {k:<32} {}\n", fmt_num(v)));
            }
        }
        for ratio in &self.ratios {
            out.push_str(&format!(
                "\nratio {}: {} / {}\n",
                ratio.name, ratio.numerator, ratio.denominator
            ));
            for (k, v) in shown(&ratio.ratios) {
                out.push_str(&format!("  {k:<32} {v:.3}\n"));
            }
        }
        if !self.sweep.is_empty() {
            out.push_str(
                "\nsweep (W1 latency vs load)\n  offered/s   acked/s    p50 ms   p90 ms   p99 ms\n",
            );
            for p in &self.sweep {
                out.push_str(&format!(
                    "  {:>9.0} {:>9.0} {:>8.2} {:>8.2} {:>8.2}\n",
                    p.offered_per_s, p.appends_per_s, p.p50_ms, p.p90_ms, p.p99_ms
                ));
            }
        }
        if !self.soak.is_empty() {
            out.push_str("\nsoak: server RSS (MiB) over time (s)\n");
            for s in &self.soak {
                out.push_str(&format!(
                    "  {:>7.1} {:>8.1}  {}\n",
                    s.t_s, s.rss_mib, s.phase
                ));
            }
        }
        for (what, why) in &self.skipped {
            out.push_str(&format!("\nskipped {what}: {why}\n"));
        }
        out
    }
}

impl Default for Report {
    fn default() -> Report {
        Report::new()
    }
}

/// The metrics worth a line in the summary.
fn shown(m: &Metrics) -> impl Iterator<Item = (&String, f64)> {
    m.iter()
        .filter(|(k, _)| {
            !k.ends_with("_count") && !k.ends_with("_mean_ms") && !k.ends_with("_p999_ms")
        })
        .map(|(k, v)| (k, *v))
}

fn fmt_num(v: f64) -> String {
    if v.is_nan() {
        "-".into()
    } else if v.abs() >= 1000.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

/// An SVG line chart of p50/p90/p99 latency (log scale) against offered
/// load.
pub fn sweep_svg(points: &[SweepPoint], title: &str) -> String {
    let (w, h) = (720.0, 440.0);
    let (left, right, top, bottom) = (70.0, 150.0, 40.0, 60.0);
    let pw = w - left - right;
    let ph = h - top - bottom;
    let xmax = points
        .iter()
        .map(|p| p.appends_per_s.max(p.offered_per_s))
        .fold(1.0, f64::max)
        * 1.05;
    let lat = |p: &SweepPoint| [p.p50_ms, p.p90_ms, p.p99_ms];
    let all: Vec<f64> = points.iter().flat_map(lat).filter(|v| *v > 0.0).collect();
    let ymin = 10f64.powf(
        all.iter()
            .copied()
            .fold(f64::MAX, f64::min)
            .max(0.001)
            .log10()
            .floor(),
    );
    let ymax = 10f64
        .powf(all.iter().copied().fold(0.001, f64::max).log10().ceil())
        .max(ymin * 10.0);
    let x = |v: f64| left + v / xmax * pw;
    let y = |v: f64| {
        let v = v.max(ymin);
        top + ph - (v.log10() - ymin.log10()) / (ymax.log10() - ymin.log10()) * ph
    };
    let mut s = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<text x="{}" y="22" text-anchor="middle" font-size="14">{title}</text>
"#,
        left + pw / 2.0
    );
    // Grid: decades on y, five steps on x.
    let mut d = ymin;
    while d <= ymax * 1.0001 {
        s.push_str(&format!(
            r##"<line x1="{left}" x2="{}" y1="{y:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end">{}</text>
"##,
            left + pw,
            left - 6.0,
            y(d) + 4.0,
            trim(d),
            y = y(d)
        ));
        d *= 10.0;
    }
    for i in 0..=5 {
        let v = xmax * f64::from(i) / 5.0;
        s.push_str(&format!(
            r##"<line x1="{xv:.1}" x2="{xv:.1}" y1="{top}" y2="{}" stroke="#eee"/><text x="{xv:.1}" y="{}" text-anchor="middle">{}</text>
"##,
            top + ph,
            top + ph + 18.0,
            human(v),
            xv = x(v)
        ));
    }
    s.push_str(&format!(
        r##"<text x="{}" y="{}" text-anchor="middle">offered appends/s (durable, fsync batch); achieved in the table</text>
<text transform="translate(18,{}) rotate(-90)" text-anchor="middle">append → subscriber latency (ms, log)</text>
<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#333"/>
"##,
        left + pw / 2.0,
        h - 15.0,
        top + ph / 2.0
    ));
    let series = [("p50", "#1f77b4"), ("p90", "#ff7f0e"), ("p99", "#d62728")];
    for (i, (name, color)) in series.iter().enumerate() {
        let pts: Vec<String> = points
            .iter()
            .map(|p| format!("{:.1},{:.1}", x(p.offered_per_s), y(lat(p)[i])))
            .collect();
        s.push_str(&format!(
            r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/>
"#,
            pts.join(" ")
        ));
        for p in points {
            s.push_str(&format!(
                r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{color}"/>
"#,
                x(p.offered_per_s),
                y(lat(p)[i])
            ));
        }
        let ly = top + 20.0 + 20.0 * i as f64;
        s.push_str(&format!(
            r#"<line x1="{}" x2="{}" y1="{ly}" y2="{ly}" stroke="{color}" stroke-width="2"/><text x="{}" y="{}">{name}</text>
"#,
            left + pw + 15.0,
            left + pw + 40.0,
            left + pw + 46.0,
            ly + 4.0
        ));
    }
    s.push_str("</svg>\n");
    s
}

fn trim(v: f64) -> String {
    if v >= 1.0 {
        format!("{v:.0}")
    } else {
        format!("{v}")
    }
}

fn human(v: f64) -> String {
    if v >= 1_000_000.0 {
        format!("{:.1}M", v / 1e6)
    } else if v >= 1_000.0 {
        format!("{:.0}k", v / 1e3)
    } else {
        format!("{v:.0}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn svg_has_three_series() {
        let p = |x: f64, l: f64| SweepPoint {
            offered_per_s: x,
            appends_per_s: x,
            p50_ms: l,
            p90_ms: l * 2.0,
            p99_ms: l * 5.0,
            max_ms: l * 10.0,
        };
        let svg = sweep_svg(&[p(1000.0, 0.5), p(5000.0, 1.0), p(20000.0, 8.0)], "t");
        assert_eq!(svg.matches("<polyline").count(), 3);
        assert!(svg.starts_with("<svg"));
    }
}
