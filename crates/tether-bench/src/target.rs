//! The server under test: a spawned `tether serve` (default), a spawned
//! peer process, or an external URL.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::procstat::{self, ProcSample};
use crate::{Result, err};

/// How a spawned `tether serve` is run.
#[derive(Debug, Clone)]
pub struct TetherSpec {
    /// The `tether` binary.
    pub bin: PathBuf,
    /// `--fsync` mode.
    pub fsync: String,
}

/// Server settings the bench changes from the defaults, and why: the
/// per-credential rate limit (500/s) and the connection caps (10,000) are
/// abuse limits, not capacity limits, and would cap the load otherwise.
pub const TETHER_BENCH_ENV: &[(&str, &str)] = &[
    ("TETHER_PUBLISH_RATE_PER_SEC", "100000000"),
    ("TETHER_PUBLISH_BURST", "100000000"),
    ("TETHER_MAX_CONNECTIONS", "1000000"),
    ("TETHER_MAX_CONNECTIONS_PER_KEY", "1000000"),
    // write-amp streams one message of 640 KB.
    ("TETHER_NAMESPACE_DEFAULTS__MAX_MESSAGE_BYTES", "16777216"),
    ("TETHER_LOG", "warn"),
];

/// A running server.
pub struct Server {
    /// `http://host:port`.
    pub url: String,
    /// The process to measure, when known.
    pub pid: Option<u32>,
    /// What it is, for reports.
    pub label: String,
    child: Option<Child>,
    _dir: Option<tempfile::TempDir>,
}

impl Server {
    /// A server that is already running (CPU/RSS only with `pid`).
    pub fn external(url: &str, pid: Option<u32>) -> Server {
        Server {
            url: url.trim_end_matches('/').to_owned(),
            pid,
            label: "tether".into(),
            child: None,
            _dir: None,
        }
    }

    /// Starts `tether serve --dev` on a free loopback port with a fresh
    /// data directory.
    pub async fn spawn_tether(spec: &TetherSpec) -> Result<Server> {
        let dir = tempfile::Builder::new().prefix("tether-bench-").tempdir()?;
        let data = dir.path().join("data");
        let mut cmd = Command::new(&spec.bin);
        cmd.arg("serve")
            .arg("--dev")
            .args(["--listen", "127.0.0.1:0", "--fsync", &spec.fsync])
            .arg("--data-dir")
            .arg(&data);
        for (k, v) in TETHER_BENCH_ENV {
            cmd.env(k, v);
        }
        let mut server = spawn_reading_url(cmd, dir.path(), "tether").await?;
        server.label = format!("tether (fsync {})", spec.fsync);
        server._dir = Some(dir);
        Ok(server)
    }

    /// Starts a peer process that prints `listening on URL` on stdout.
    pub async fn spawn_peer(mut cmd: Command, label: &str) -> Result<Server> {
        let dir = tempfile::Builder::new()
            .prefix("tether-bench-peer-")
            .tempdir()?;
        let mut server = spawn_reading_url(
            {
                cmd.current_dir(std::env::current_dir()?);
                cmd
            },
            dir.path(),
            label,
        )
        .await?;
        server._dir = Some(dir);
        Ok(server)
    }

    /// Starts a peer process and waits until `url` accepts TCP connections.
    pub async fn spawn_peer_at(mut cmd: Command, url: &str, label: &str) -> Result<Server> {
        let dir = tempfile::Builder::new()
            .prefix("tether-bench-peer-")
            .tempdir()?;
        let log = std::fs::File::create(dir.path().join("server.log"))?;
        cmd.stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true);
        let child = cmd.spawn()?;
        let pid = child.id();
        let addr = url
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_owned();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if tokio::net::TcpStream::connect(&addr).await.is_ok() {
                break;
            }
            if tokio::time::Instant::now() > deadline {
                let log =
                    std::fs::read_to_string(dir.path().join("server.log")).unwrap_or_default();
                return Err(err(format!("{label} did not listen on {addr}: {log}")));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(Server {
            url: url.trim_end_matches('/').to_owned(),
            pid,
            label: label.to_owned(),
            child: Some(child),
            _dir: Some(dir),
        })
    }

    /// `ws://host:port/ws?query`.
    pub fn ws_url(&self, query: &str) -> String {
        let base = self.url.replacen("http://", "ws://", 1);
        if query.is_empty() {
            format!("{base}/ws")
        } else {
            format!("{base}/ws?{query}")
        }
    }

    /// The process's CPU/RSS now.
    pub fn sample(&self) -> Option<ProcSample> {
        self.pid.and_then(procstat::sample)
    }

    /// Stops a spawned server (SIGTERM, then SIGKILL after 5 s).
    pub async fn stop(mut self) {
        if let Some(mut child) = self.child.take() {
            if let Some(pid) = child.id() {
                let _ = Command::new("kill")
                    .args(["-TERM", &pid.to_string()])
                    .status()
                    .await;
            }
            if tokio::time::timeout(Duration::from_secs(5), child.wait())
                .await
                .is_err()
            {
                let _ = child.kill().await;
            }
        }
    }
}

/// Spawns `cmd`, stderr to a log file in `dir`, and reads stdout until a
/// `listening on URL` line.
async fn spawn_reading_url(mut cmd: Command, dir: &Path, label: &str) -> Result<Server> {
    let log_path = dir.join("server.log");
    let log = std::fs::File::create(&log_path)?;
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log)
        .kill_on_drop(true);
    let mut child = cmd
        .spawn()
        .map_err(|e| err(format!("cannot start {label} ({cmd:?}): {e}")))?;
    let stdout = child.stdout.take().ok_or_else(|| err("no stdout pipe"))?;
    let mut lines = BufReader::new(stdout).lines();
    let url = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await? {
            if let Some(url) = line.trim().strip_prefix("listening on ") {
                return Ok::<_, std::io::Error>(Some(url.to_owned()));
            }
        }
        Ok(None)
    })
    .await;
    let url = match url {
        Ok(Ok(Some(url))) => url,
        _ => {
            let _ = child.kill().await;
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            return Err(err(format!(
                "{label} did not print its address; its log:\n{log}"
            )));
        }
    };
    // Keep draining stdout so the process never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok(Server {
        url: url.trim_end_matches('/').to_owned(),
        pid: child.id(),
        label: label.to_owned(),
        child: Some(child),
        _dir: None,
    })
}
