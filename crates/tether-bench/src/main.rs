//! `tether-bench`: runs named workloads against Tether (a spawned release
//! binary by default, or `--url`) and against peer systems, and prints a
//! summary and writes a JSON result. See `docs/benchmarks.md`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use serde_json::json;
use tether_bench::report::{Report, RunRecord, SweepPoint, sweep_svg};
use tether_bench::stats::Metrics;
use tether_bench::target::{Server, TetherSpec};
use tether_bench::workloads::fixed::{self, FixedSpec};
use tether_bench::workloads::idle::IdleSpec;
use tether_bench::workloads::peers::{
    self, FanoutProtocol, FanoutSpec, LogProtocol, LogSpec, PusherApp,
};
use tether_bench::workloads::resume::ResumeSpec;
use tether_bench::workloads::soak::{self, SoakSpec};
use tether_bench::workloads::stream::{self, StreamSpec};
use tether_bench::workloads::write_amp::{self, WriteAmpSpec};
use tether_bench::workloads::{idle, resume};
use tether_bench::{Ctx, Result, err};

/// Tether's load generator.
///
/// Workloads: w1 (token storm), w1-peak (W1 closed loop: peak durable
/// appends/s), w2 (fan-out), w3 (idle connections), w4 (resume), w5
/// (durability cost: W1 with --fsync batch vs never), sweep (W1 at several
/// rates: latency vs load, plotted to --svg), peer-ds (vs the Durable
/// Streams reference server), peer-sockudo (vs Sockudo), all (w1 w1-peak
/// w2 w3 w4 w5), plot (re-draw a sweep's SVG from --from RESULT.json),
/// soak (steady W1 load for --duration with the server's RSS sampled every
/// --sample-every seconds, then --cooldown idle seconds; not in `all`),
/// write-amp (disk bytes written per appended byte: one 20,000-append
/// message one append at a time, and 1,000 × 200; not in `all`), fixed
/// (--channels streams × --appends appends with a subscriber each, an exact
/// amount of work for bench/instructions.sh; not in `all`).
#[derive(Debug, Parser)]
#[command(name = "tether-bench", version)]
struct Opts {
    /// Workloads to run, in order.
    #[arg(required = true)]
    workloads: Vec<String>,
    /// Use a running server instead of spawning one per run.
    #[arg(long)]
    url: Option<String>,
    /// With --url: the server's pid, to measure its CPU and RSS.
    #[arg(long)]
    pid: Option<u32>,
    /// The `tether` binary to spawn [default: `tether` next to this binary].
    #[arg(long)]
    bin: Option<PathBuf>,
    /// --fsync mode of the spawned server (w5 runs batch and never).
    #[arg(long, default_value = "batch")]
    fsync: String,
    /// Write the JSON result here.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Write the sweep's SVG plot here.
    #[arg(long)]
    svg: Option<PathBuf>,
    /// Run each workload this many times; medians are reported.
    #[arg(long, default_value_t = 1)]
    repeat: usize,
    /// Tiny run: small N, about a second per workload (CI).
    #[arg(long)]
    smoke: bool,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
    /// Measured seconds per streaming run.
    #[arg(long)]
    duration: Option<f64>,
    /// Warm-up seconds before each measured window.
    #[arg(long)]
    warmup: Option<f64>,

    /// W1: channels (one publisher and one subscriber each).
    #[arg(long)]
    channels: Option<usize>,
    /// fixed: appends per stream.
    #[arg(long)]
    appends: Option<usize>,
    /// W1: appends per second per channel.
    #[arg(long)]
    rate: Option<f64>,
    /// W1/W1-peak/W2: appends per message before a publisher starts a new
    /// one (a response of N tokens) [default: 1000].
    #[arg(long)]
    tokens_per_message: Option<usize>,
    /// W1/W2: subscriber roll-up window in ms (0 = every fragment is its
    /// own frame) [default: 0].
    #[arg(long)]
    rollup_ms: Option<u64>,
    /// plot: a JSON result with a sweep, to re-draw its SVG (--svg).
    #[arg(long)]
    from: Option<PathBuf>,
    /// W1-peak: unacknowledged appends per publisher.
    #[arg(long)]
    window: Option<usize>,
    /// W1-peak: channels [default: 100].
    #[arg(long)]
    peak_channels: Option<usize>,
    /// W2: subscribers of the one channel.
    #[arg(long)]
    subscribers: Option<usize>,
    /// W2: appends per second on the one channel.
    #[arg(long)]
    fanout_rate: Option<f64>,
    /// W3: idle connections.
    #[arg(long)]
    idle: Option<usize>,
    /// W4: appends each resuming client missed.
    #[arg(long)]
    missed: Option<usize>,
    /// W4: sequential resumes.
    #[arg(long)]
    resumes: Option<usize>,
    /// W4: clients in the resume storm.
    #[arg(long)]
    storm: Option<usize>,
    /// Soak: seconds between RSS samples [default: 5].
    #[arg(long)]
    sample_every: Option<f64>,
    /// Soak: sampled idle seconds after the load [default: 30].
    #[arg(long)]
    cooldown: Option<f64>,
    /// Sweep: per-channel rates, comma-separated (at --channels).
    #[arg(long, value_delimiter = ',')]
    sweep_rates: Option<Vec<f64>>,

    /// peer-ds: directory with start.mjs and node_modules.
    #[arg(long, default_value = "bench/durable-streams")]
    ds_dir: PathBuf,
    /// peer-ds: streams (one writer, one SSE reader each).
    #[arg(long)]
    ds_streams: Option<usize>,
    /// peer-ds: appends/s per stream (0 = one request in flight, flat out).
    #[arg(long)]
    ds_rate: Option<f64>,
    /// peer-sockudo: the sockudo binary.
    #[arg(long, default_value = "bench/sockudo/install/bin/sockudo")]
    sockudo_bin: PathBuf,
    /// peer-sockudo: subscribers of the one channel.
    #[arg(long)]
    sockudo_subscribers: Option<usize>,
    /// peer-sockudo: publishes per second.
    #[arg(long)]
    sockudo_rate: Option<f64>,
}

impl Opts {
    fn bin(&self) -> PathBuf {
        if let Some(bin) = &self.bin {
            return bin.clone();
        }
        std::env::current_exe()
            .ok()
            .and_then(|exe| Some(exe.parent()?.join("tether")))
            .filter(|p| p.exists())
            .unwrap_or_else(|| PathBuf::from("tether"))
    }

    fn secs(&self, given: Option<f64>, normal: f64, smoke: f64) -> Duration {
        Duration::from_secs_f64(given.unwrap_or(if self.smoke { smoke } else { normal }))
    }

    fn pick<T: Copy>(&self, given: Option<T>, normal: T, smoke: T) -> T {
        given.unwrap_or(if self.smoke { smoke } else { normal })
    }

    fn timing(&self, spec: &mut StreamSpec) {
        if let Some(n) = self.tokens_per_message {
            spec.tokens_per_message = n;
        }
        if let Some(ms) = self.rollup_ms {
            spec.rollup_ms = ms;
        }
        spec.duration = self.secs(self.duration, spec.duration.as_secs_f64(), 1.0);
        spec.warmup = self.secs(self.warmup, spec.warmup.as_secs_f64(), 0.3);
    }

    fn w1(&self) -> StreamSpec {
        let mut s = StreamSpec::w1();
        s.channels = self.pick(self.channels, s.channels, 10);
        s.rate = self.pick(self.rate, s.rate, 50.0);
        self.timing(&mut s);
        s
    }

    fn w1_peak(&self) -> StreamSpec {
        let mut s = StreamSpec::w1();
        s.label = "w1-peak".into();
        s.channels = self.pick(self.peak_channels, 100, 4);
        s.rate = 0.0;
        s.window = self.pick(self.window, 64, 16);
        self.timing(&mut s);
        s
    }

    fn w2(&self) -> StreamSpec {
        let mut s = StreamSpec::w2();
        s.subscribers_per_channel = self.pick(self.subscribers, s.subscribers_per_channel, 20);
        s.rate = self.pick(self.fanout_rate, s.rate, 50.0);
        self.timing(&mut s);
        s
    }

    fn w3(&self) -> IdleSpec {
        let mut s = IdleSpec::default();
        s.connections = self.pick(self.idle, s.connections, 50);
        if self.smoke {
            s.settle = Duration::from_millis(300);
        }
        s
    }

    fn write_amp(&self) -> WriteAmpSpec {
        let mut s = WriteAmpSpec::default();
        if self.smoke {
            s.appends = 2_000;
            s.window = 100;
            s.messages = 20;
            s.appends_each = 50;
        }
        s
    }

    fn w4(&self) -> ResumeSpec {
        let mut s = ResumeSpec::default();
        s.missed = self.pick(self.missed, s.missed, 100);
        s.sequential = self.pick(self.resumes, s.sequential, 5);
        s.storm = self.pick(self.storm, s.storm, 20);
        if self.smoke {
            s.channels = 2;
            s.storm_channels = 2;
        }
        s.storm_channels = s.storm_channels.min(s.storm.max(1));
        s
    }

    fn soak(&self) -> SoakSpec {
        let mut s = SoakSpec::default();
        s.load.channels = self.pick(self.channels, s.load.channels, 10);
        s.load.rate = self.pick(self.rate, s.load.rate, 50.0);
        if let Some(n) = self.tokens_per_message {
            s.load.tokens_per_message = n;
        }
        s.load.duration = self.secs(self.duration, s.load.duration.as_secs_f64(), 2.0);
        s.load.warmup = self.secs(self.warmup, s.load.warmup.as_secs_f64(), 0.3);
        s.sample_every = self.secs(self.sample_every, s.sample_every.as_secs_f64(), 0.5);
        s.cooldown = self.secs(self.cooldown, s.cooldown.as_secs_f64(), 1.0);
        s
    }

    fn log(&self) -> LogSpec {
        let mut s = LogSpec::default();
        s.streams = self.pick(self.ds_streams, s.streams, 4);
        s.rate = self.pick(self.ds_rate, s.rate, 0.0);
        s.duration = self.secs(self.duration, s.duration.as_secs_f64(), 1.0);
        s.warmup = self.secs(self.warmup, s.warmup.as_secs_f64(), 0.3);
        s
    }

    fn fanout(&self) -> FanoutSpec {
        let mut s = FanoutSpec::default();
        s.subscribers = self.pick(self.sockudo_subscribers, s.subscribers, 10);
        s.rate = self.pick(self.sockudo_rate, s.rate, 20.0);
        s.duration = self.secs(self.duration, s.duration.as_secs_f64(), 1.0);
        s.warmup = self.secs(self.warmup, s.warmup.as_secs_f64(), 0.3);
        s
    }

    async fn tether(&self, fsync: &str) -> Result<Server> {
        match &self.url {
            Some(url) => Ok(Server::external(url, self.pid)),
            None => {
                Server::spawn_tether(&TetherSpec {
                    bin: self.bin(),
                    fsync: fsync.to_owned(),
                })
                .await
            }
        }
    }
}

/// Runs `spec` `repeat` times on fresh Tether servers.
async fn stream_runs(
    o: &Opts,
    ctx: &Ctx,
    spec: &StreamSpec,
    fsync: &str,
) -> Result<(String, Vec<Metrics>)> {
    let mut runs = Vec::new();
    let mut label = String::new();
    for _ in 0..o.repeat.max(1) {
        let server = o.tether(fsync).await?;
        label.clone_from(&server.label);
        let m = stream::run(&server, spec, ctx).await;
        server.stop().await;
        runs.push(m?);
    }
    Ok((label, runs))
}

async fn run_workload(o: &Opts, ctx: &Ctx, name: &str, report: &mut Report) -> Result<()> {
    let repeat = o.repeat.max(1);
    match name {
        "w1" | "w1-peak" | "w2" => {
            let spec = match name {
                "w1" => o.w1(),
                "w1-peak" => o.w1_peak(),
                _ => o.w2(),
            };
            let (label, runs) = stream_runs(o, ctx, &spec, &o.fsync).await?;
            report
                .runs
                .push(RunRecord::new(name, &label, json!(spec), runs));
        }
        "w5" => {
            let spec = o.w1_peak();
            let mut recs = Vec::new();
            for fsync in ["batch", "never"] {
                let (label, runs) = stream_runs(o, ctx, &spec, fsync).await?;
                recs.push(RunRecord::new("w5", &label, json!(spec), runs));
            }
            report.add_ratio("w5 durability cost", &recs[0], &recs[1]);
            report.runs.extend(recs);
        }
        "sweep" => {
            let rates = o.sweep_rates.clone().unwrap_or_else(|| {
                if o.smoke {
                    vec![20.0, 50.0]
                } else {
                    vec![10.0, 25.0, 50.0, 100.0, 200.0, 400.0]
                }
            });
            for rate in rates {
                let mut spec = o.w1();
                spec.label = "sweep".into();
                spec.rate = rate;
                let (label, runs) = stream_runs(o, ctx, &spec, &o.fsync).await?;
                let rec = RunRecord::new("sweep", &label, json!(spec), runs);
                let g = |k: &str| rec.median.get(k).copied().unwrap_or(f64::NAN);
                report.sweep.push(SweepPoint {
                    offered_per_s: g("offered_per_s"),
                    appends_per_s: g("appends_per_s"),
                    p50_ms: g("latency_p50_ms"),
                    p90_ms: g("latency_p90_ms"),
                    p99_ms: g("latency_p99_ms"),
                    max_ms: g("latency_max_ms"),
                });
                report.runs.push(rec);
            }
            let svg = sweep_svg(
                &report.sweep,
                &format!(
                    "W1: append → subscriber latency vs load ({} channels, {} CPUs)",
                    o.w1().channels,
                    report.machine.nproc
                ),
            );
            let path = o
                .svg
                .clone()
                .unwrap_or_else(|| PathBuf::from("tether-bench-sweep.svg"));
            std::fs::write(&path, svg)?;
            eprintln!("wrote {}", path.display());
        }
        "plot" => {
            let from = o
                .from
                .as_ref()
                .ok_or_else(|| err("plot needs --from RESULT.json"))?;
            let result: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(from)?)?;
            let points: Vec<SweepPoint> = serde_json::from_value(result["sweep"].clone())?;
            let title = format!(
                "W1: append → subscriber latency vs load ({} channels, {} CPUs)",
                result["runs"][0]["params"]["channels"], result["machine"]["nproc"]
            );
            let path = o
                .svg
                .clone()
                .unwrap_or_else(|| PathBuf::from("tether-bench-sweep.svg"));
            std::fs::write(&path, sweep_svg(&points, &title))?;
            eprintln!("wrote {}", path.display());
        }
        "soak" => {
            let spec = o.soak();
            let server = o.tether(&o.fsync).await?;
            let label = server.label.clone();
            let result = soak::run(&server, &spec, ctx).await;
            server.stop().await;
            let (m, series) = result?;
            report
                .runs
                .push(RunRecord::new("soak", &label, json!(spec), vec![m]));
            report.soak = series;
        }
        "w3" => {
            let spec = o.w3();
            let mut runs = Vec::new();
            let mut label = String::new();
            for _ in 0..repeat {
                let server = o.tether(&o.fsync).await?;
                label.clone_from(&server.label);
                let m = idle::run(&server, &spec, ctx).await;
                server.stop().await;
                runs.push(m?);
            }
            report
                .runs
                .push(RunRecord::new("w3", &label, json!(spec), runs));
        }
        "fixed" => {
            let spec = FixedSpec {
                streams: o.channels.unwrap_or(100),
                appends: o.appends.unwrap_or(100),
                ..FixedSpec::default()
            };
            let server = o.tether(&o.fsync).await?;
            let label = server.label.clone();
            let result = fixed::run(&server, &spec).await;
            server.stop().await;
            report
                .runs
                .push(RunRecord::new("fixed", &label, json!(spec), vec![result?]));
        }
        "write-amp" => {
            let spec = o.write_amp();
            let mut runs = Vec::new();
            let mut label = String::new();
            for _ in 0..repeat {
                let server = o.tether(&o.fsync).await?;
                label.clone_from(&server.label);
                let m = write_amp::run(&server, &spec).await;
                server.stop().await;
                runs.push(m?);
            }
            report
                .runs
                .push(RunRecord::new("write-amp", &label, json!(spec), runs));
        }
        "w4" => {
            let spec = o.w4();
            let mut runs = Vec::new();
            let mut label = String::new();
            for _ in 0..repeat {
                let server = o.tether(&o.fsync).await?;
                label.clone_from(&server.label);
                let m = resume::run(&server, &spec, ctx).await;
                server.stop().await;
                runs.push(m?);
            }
            report
                .runs
                .push(RunRecord::new("w4", &label, json!(spec), runs));
        }
        "peer-ds" => {
            let start = o.ds_dir.join("start.mjs");
            if !o
                .ds_dir
                .join("node_modules/@durable-streams/server")
                .exists()
            {
                return Err(err(format!(
                    "{} has no node_modules: run bench/setup-durable-streams.sh",
                    o.ds_dir.display()
                )));
            }
            let spec = o.log();
            let (mut tether_runs, mut ds_runs) = (Vec::new(), Vec::new());
            let mut tether_label = String::new();
            for _ in 0..repeat {
                // Alternate the systems within a repeat, so drift on the
                // machine hits both alike.
                let server = o.tether(&o.fsync).await?;
                tether_label = format!("{} REST+SSE", server.label);
                let m = peers::http_log(&server, LogProtocol::Tether, &spec, ctx).await;
                server.stop().await;
                tether_runs.push(m?);
                let data = tempfile::tempdir()?;
                let mut cmd = tokio::process::Command::new("node");
                cmd.arg(&start)
                    .arg("--data-dir")
                    .arg(data.path().join("streams"));
                let server = Server::spawn_peer(cmd, "durable-streams (file-backed)").await?;
                let m = peers::http_log(&server, LogProtocol::DurableStreams, &spec, ctx).await;
                server.stop().await;
                ds_runs.push(m?);
            }
            let t = RunRecord::new("peer-ds", &tether_label, json!(spec), tether_runs);
            let d = RunRecord::new(
                "peer-ds",
                "durable-streams 0.3 (file-backed, node)",
                json!(spec),
                ds_runs,
            );
            report.add_ratio("durable append + SSE", &t, &d);
            report.runs.push(t);
            report.runs.push(d);
        }
        "peer-sockudo" => {
            if !o.sockudo_bin.exists() {
                return Err(err(format!(
                    "{} not found: run bench/sockudo/setup.sh (or pass --sockudo-bin)",
                    o.sockudo_bin.display()
                )));
            }
            let spec = o.fanout();
            let app = PusherApp {
                id: "bench".into(),
                key: "bench-key".into(),
                secret: "bench-secret".into(),
            };
            let (mut tether_runs, mut sock_runs) = (Vec::new(), Vec::new());
            let mut tether_label = String::new();
            for _ in 0..repeat {
                let server = o.tether(&o.fsync).await?;
                tether_label = format!("{} REST publish, WS subscribe", server.label);
                let m = peers::fanout(&server, &FanoutProtocol::Tether, &spec, ctx).await;
                server.stop().await;
                tether_runs.push(m?);
                let server = spawn_sockudo(o, &app).await?;
                let m =
                    peers::fanout(&server, &FanoutProtocol::Pusher(app.clone()), &spec, ctx).await;
                server.stop().await;
                sock_runs.push(m?);
            }
            let t = RunRecord::new("peer-sockudo", &tether_label, json!(spec), tether_runs);
            let s = RunRecord::new(
                "peer-sockudo",
                "sockudo 5.2 (local adapter, Pusher protocol)",
                json!(spec),
                sock_runs,
            );
            report.add_ratio("fan-out", &t, &s);
            report.runs.push(t);
            report.runs.push(s);
        }
        other => return Err(err(format!("unknown workload {other:?}"))),
    }
    Ok(())
}

/// Starts Sockudo on a free loopback port with one app and limits raised
/// like Tether's (see `TETHER_BENCH_ENV`).
async fn spawn_sockudo(o: &Opts, app: &PusherApp) -> Result<Server> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let mut cmd = tokio::process::Command::new(&o.sockudo_bin);
    cmd.env("HOST", "127.0.0.1")
        .env("PORT", port.to_string())
        .env("METRICS_ENABLED", "false")
        .env("RATE_LIMITER_ENABLED", "false")
        .env("SOCKUDO_DEFAULT_APP_ID", &app.id)
        .env("SOCKUDO_DEFAULT_APP_KEY", &app.key)
        .env("SOCKUDO_DEFAULT_APP_SECRET", &app.secret)
        .env("SOCKUDO_DEFAULT_APP_MAX_CONNECTIONS", "1000000")
        .env(
            "SOCKUDO_DEFAULT_APP_MAX_BACKEND_EVENTS_PER_SECOND",
            "100000000",
        )
        .env(
            "SOCKUDO_DEFAULT_APP_MAX_CLIENT_EVENTS_PER_SECOND",
            "100000000",
        )
        .env(
            "SOCKUDO_DEFAULT_APP_MAX_READ_REQUESTS_PER_SECOND",
            "100000000",
        )
        .env("SOCKUDO_MAX_CONNECTIONS", "1000000")
        .env("RUST_LOG", "warn");
    Server::spawn_peer_at(cmd, &format!("http://127.0.0.1:{port}"), "sockudo").await
}

fn main() -> ExitCode {
    let opts = Opts::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tether-bench: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let ctx = Ctx { quiet: opts.quiet };
        let mut names: Vec<String> = Vec::new();
        for w in &opts.workloads {
            if w == "all" {
                names.extend(["w1", "w1-peak", "w2", "w3", "w4", "w5"].map(String::from));
            } else {
                names.push(w.clone());
            }
        }
        let mut report = Report::new();
        let mut failed = false;
        for name in &names {
            eprintln!("== {name}");
            if let Err(e) = run_workload(&opts, &ctx, name, &mut report).await {
                eprintln!("tether-bench: {name}: {e}");
                report.skipped.push((name.clone(), e.to_string()));
                failed = true;
            }
        }
        print!("{}", report.summary());
        if let Some(out) = &opts.out {
            match serde_json::to_string_pretty(&report) {
                Ok(json) => {
                    if let Err(e) = std::fs::write(out, json) {
                        eprintln!("tether-bench: cannot write {}: {e}", out.display());
                        failed = true;
                    }
                }
                Err(e) => {
                    eprintln!("tether-bench: {e}");
                    failed = true;
                }
            }
        }
        if failed {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        }
    })
}
