//! The real `tether` binary as a child process, for tests that must kill it
//! (`kill -9`, SIGTERM) or restart it on the same data directory.
//!
//! ```ignore
//! let process = Tether::new(dir.path())
//!     .args(["--fsync", "always"])
//!     .env("TETHER_MIN_FREE_BYTES", "4096")
//!     .start();
//! let mut ws = process.ws().await;
//! process.kill9();
//! ```
//!
//! Every process runs `tether serve --dev --listen <listen> <args...>
//! --data-dir <dir>` with `TETHER_LOG=warn`, stdout piped (its first line,
//! `listening on http://host:port`, gives [`Process::base`]) and stderr
//! inherited unless [`Tether::capture_stderr`] asks for it to be collected.
//! Dropping a [`Process`] kills it.

use std::ffi::OsString;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{Http, Ws};

/// How to start the binary; [`Tether::start`] runs it.
pub struct Tether {
    data_dir: PathBuf,
    listen: String,
    args: Vec<OsString>,
    env: Vec<(String, String)>,
    config: Option<(PathBuf, String)>,
    capture_stderr: bool,
    ws_query: String,
}

impl Tether {
    /// Serves `data_dir` on a free port (`127.0.0.1:0`).
    pub fn new(data_dir: impl Into<PathBuf>) -> Tether {
        Tether {
            data_dir: data_dir.into(),
            listen: "127.0.0.1:0".to_owned(),
            args: Vec::new(),
            env: Vec::new(),
            config: None,
            capture_stderr: false,
            ws_query: String::new(),
        }
    }

    /// Listens on `listen` instead, e.g. the address of a previous process
    /// so a client can reconnect to the same URL after a restart.
    pub fn listen(mut self, listen: &str) -> Tether {
        self.listen = listen.to_owned();
        self
    }

    /// Extra `serve` arguments, placed before `--data-dir`.
    pub fn args<I, S>(mut self, args: I) -> Tether
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Writes `contents` to `file` at start and passes `--config <file>`.
    pub fn config(mut self, file: impl Into<PathBuf>, contents: &str) -> Tether {
        self.config = Some((file.into(), contents.to_owned()));
        self
    }

    /// One environment variable (set after `TETHER_LOG=warn`, so it can
    /// override it).
    pub fn env(mut self, key: &str, value: &str) -> Tether {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    /// Several environment variables, in order.
    pub fn envs(mut self, vars: &[(&str, &str)]) -> Tether {
        for (key, value) in vars {
            self = self.env(key, value);
        }
        self
    }

    /// Collects stderr (still echoed, each line prefixed `[tether] `) for
    /// [`Process::stderr`].
    pub fn capture_stderr(mut self) -> Tether {
        self.capture_stderr = true;
        self
    }

    /// Query string (without `?`) that [`Process::ws`] adds to `/ws`,
    /// e.g. `rollup_ms=0`.
    pub fn ws_query(mut self, query: &str) -> Tether {
        self.ws_query = query.to_owned();
        self
    }

    /// Spawns the binary and waits for its `listening on` line.
    pub fn start(self) -> Process {
        let mut command = Command::new(super::bin::tether_bin());
        command.args(["serve", "--dev", "--listen", &self.listen]);
        if let Some((file, contents)) = &self.config {
            std::fs::write(file, contents).expect("write config");
            command.arg("--config").arg(file);
        }
        command
            .args(&self.args)
            .arg("--data-dir")
            .arg(&self.data_dir)
            .env("TETHER_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(if self.capture_stderr {
                Stdio::piped()
            } else {
                Stdio::inherit()
            });
        for (key, value) in &self.env {
            command.env(key, value);
        }
        let mut child = command.spawn().expect("spawn tether");
        let stderr = Arc::new(Mutex::new(String::new()));
        if self.capture_stderr {
            let pipe = child.stderr.take().expect("stderr");
            let sink = stderr.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    eprintln!("[tether] {line}");
                    let mut all = sink.lock().unwrap_or_else(|p| p.into_inner());
                    all.push_str(&line);
                    all.push('\n');
                }
            });
        }
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read address");
        let base = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_owned();
        Process {
            child,
            base,
            stderr,
            ws_query: self.ws_query,
        }
    }
}

/// A running `tether` binary; killed (SIGKILL) when dropped.
pub struct Process {
    child: Child,
    /// `http://host:port`.
    pub base: String,
    stderr: Arc<Mutex<String>>,
    ws_query: String,
}

impl Process {
    /// `host:port` it listens on, for [`Tether::listen`] on a restart.
    pub fn listen(&self) -> String {
        self.base.trim_start_matches("http://").to_owned()
    }

    /// `kill -9`: `Child::kill` sends SIGKILL on Unix, so no shutdown code
    /// runs. Waits for the process to be gone.
    pub fn kill9(mut self) {
        self.child.kill().expect("kill -9");
        let _ = self.child.wait();
    }

    /// Sends SIGTERM (without a libc dependency); returns at once.
    pub fn sigterm(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM failed");
    }

    /// Waits (up to `within`, else panics) for the process to exit by
    /// itself.
    pub fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "tether did not exit after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A WebSocket on `/ws`, with the [`Tether::ws_query`] if one was set.
    pub async fn ws(&self) -> Ws {
        Ws::connect(&self.ws_url(&self.ws_query)).await
    }

    /// A WebSocket on `/ws` as connection `client_id` (added to the
    /// [`Tether::ws_query`]), so it can resume its session later.
    pub async fn ws_client(&self, client_id: &str) -> Ws {
        let query = if self.ws_query.is_empty() {
            format!("client_id={client_id}")
        } else {
            format!("{}&client_id={client_id}", self.ws_query)
        };
        Ws::connect(&self.ws_url(&query)).await
    }

    fn ws_url(&self, query: &str) -> String {
        let mut url = format!("{}/ws", self.base.replace("http://", "ws://"));
        if !query.is_empty() {
            url.push('?');
            url.push_str(query);
        }
        url
    }

    pub fn http(&self) -> Http {
        Http {
            base: self.base.clone(),
            client: reqwest::Client::new(),
        }
    }

    /// Everything written to stderr so far (empty unless started with
    /// [`Tether::capture_stderr`]).
    pub fn stderr(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
