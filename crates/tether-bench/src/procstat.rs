//! CPU time and memory of a process, from `/proc`.

use std::sync::OnceLock;
use std::time::Instant;

/// One reading of a process's counters.
#[derive(Debug, Clone, Copy)]
pub struct ProcSample {
    pub at: Instant,
    /// User + system CPU time, in clock ticks.
    pub cpu_ticks: u64,
    /// Resident set size (KiB).
    pub rss_kib: u64,
    /// Peak resident set size (KiB).
    pub hwm_kib: u64,
    /// Bytes the process caused to be written to storage (`/proc/<pid>/io`
    /// `write_bytes`; 0 when unreadable).
    pub write_bytes: u64,
}

/// Reads `/proc/<pid>/stat` and `/proc/<pid>/status`; `None` if gone.
pub fn sample(pid: u32) -> Option<ProcSample> {
    let at = Instant::now();
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which may itself contain spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let write_bytes = std::fs::read_to_string(format!("/proc/{pid}/io"))
        .ok()
        .and_then(|io| {
            io.lines()
                .find_map(|l| l.strip_prefix("write_bytes:"))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0);
    Some(ProcSample {
        at,
        cpu_ticks: utime + stime,
        rss_kib: kib("VmRSS:"),
        hwm_kib: kib("VmHWM:"),
        write_bytes,
    })
}

/// Clock ticks per second (`getconf CLK_TCK`; 100 on Linux in practice).
pub fn clk_tck() -> f64 {
    static TCK: OnceLock<f64> = OnceLock::new();
    *TCK.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// CPU used between two samples, in percent of one core (200 = two cores).
pub fn cpu_percent(a: &ProcSample, b: &ProcSample) -> f64 {
    let secs = b.at.duration_since(a.at).as_secs_f64();
    if secs <= 0.0 {
        return 0.0;
    }
    (b.cpu_ticks.saturating_sub(a.cpu_ticks)) as f64 / clk_tck() / secs * 100.0
}

/// CPU seconds between two samples.
pub fn cpu_secs(a: &ProcSample, b: &ProcSample) -> f64 {
    (b.cpu_ticks.saturating_sub(a.cpu_ticks)) as f64 / clk_tck()
}

/// Adds the server's CPU, memory and disk figures between two samples to
/// `m`, per second of `window` and per acknowledged append.
pub fn put_server_metrics(
    m: &mut crate::stats::Metrics,
    a: &ProcSample,
    b: &ProcSample,
    window: f64,
    acked: u64,
) {
    m.insert("server_cpu_pct".into(), cpu_percent(a, b));
    m.insert("server_rss_mib".into(), b.rss_kib as f64 / 1024.0);
    let written = b.write_bytes.saturating_sub(a.write_bytes) as f64;
    m.insert(
        "server_disk_write_mib_per_s".into(),
        written / window / 1048576.0,
    );
    if acked > 0 {
        m.insert(
            "server_disk_write_bytes_per_append".into(),
            written / acked as f64,
        );
        m.insert(
            "server_cpu_us_per_append".into(),
            cpu_secs(a, b) * 1e6 / acked as f64,
        );
    }
}

/// The 1-minute load average: how busy the shared machine was (other
/// processes compete with the server and the generator for the cores).
pub fn load1() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(f64::NAN)
}

/// Number of CPUs and the CPU model, for the report.
pub fn machine() -> (usize, String) {
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_else(|| "unknown".into());
    (cpus, model)
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_own_process() {
        let s = super::sample(std::process::id()).expect("own /proc entry");
        assert!(s.rss_kib > 0);
        assert!(super::clk_tck() > 0.0);
    }
}
