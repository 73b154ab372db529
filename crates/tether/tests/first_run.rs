//! What a newcomer sees first: `tether --help` says what the program is
//! for, and a start (fresh or on an existing data directory) logs Tether's
//! own lines, not the storage engine's INFO chatter.

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_tether");

#[test]
fn help_says_what_tether_is_for() {
    let out = Command::new(BIN)
        .arg("--help")
        .output()
        .expect("run --help");
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    let first = help.lines().next().unwrap_or_default();
    assert!(
        first.contains("realtime transport for AI applications"),
        "{first}"
    );
    assert!(
        !help.contains("front doors"),
        "internal wording in --help:\n{help}"
    );
}

/// Starts `tether serve` with the default log filter, waits until it
/// listens, stops it and returns what it wrote to stderr.
fn start_and_stop(data_dir: &std::path::Path) -> String {
    let mut child = Command::new(BIN)
        .args(["serve", "--dev", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .env_remove("TETHER_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn tether");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("read address");
    assert!(line.starts_with("listening on "), "{line:?}");
    child.kill().expect("kill");
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut stderr)
        .expect("read stderr");
    let _ = child.wait();
    stderr
}

#[test]
fn start_up_logs_only_tethers_own_lines() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    for run in ["fresh", "restart"] {
        let stderr = start_and_stop(&data);
        assert!(
            stderr.contains("listening"),
            "{run}: Tether's own line is missing:\n{stderr}"
        );
        let chatter: Vec<&str> = stderr
            .lines()
            .filter(|l| l.contains("fjall") || l.contains("lsm_tree"))
            .collect();
        assert!(
            chatter.is_empty(),
            "{run}: storage engine lines:\n{}",
            chatter.join("\n")
        );
    }
}

/// `--listen 127.0.0.1:0` lets the OS pick the port; a warning naming
/// `:0` would tell the developer nothing about where the open server is.
#[test]
fn dev_warning_names_the_bound_address() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut child = Command::new(BIN)
        .args(["serve", "--dev", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .env_remove("TETHER_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn tether");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("read address");
    let url = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("{line:?}"))
        .to_owned();
    assert!(!url.ends_with(":0"), "{url}");
    child.kill().expect("kill");
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut stderr)
        .expect("read stderr");
    let _ = child.wait();
    let warning = stderr
        .lines()
        .find(|l| l.contains("DEVELOPMENT MODE"))
        .unwrap_or_else(|| panic!("no dev-mode warning:\n{stderr}"));
    assert!(
        warning.contains(&format!("{url} ")),
        "the warning does not name {url}: {warning}"
    );
    assert!(!warning.contains(":0 "), "{warning}");
}
