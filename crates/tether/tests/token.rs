//! `tether token` applies the server's rule for key secrets: a token
//! signed with a key the server would refuse at start-up could never be
//! verified, so the CLI refuses to mint it (exit code 1, a message saying
//! why) instead of printing a useless JWT.

use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_tether");

fn tether(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env_remove("TETHER_KEY")
        .env_remove("TETHER_LOG")
        .output()
        .expect("run tether")
}

#[test]
fn a_short_secret_is_refused_with_a_reason() {
    let out = tether(&["token", "--key", "app:short", "--client-id", "u1"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(out.stdout.is_empty(), "printed a token anyway: {out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("secret") && stderr.contains("at least 16"),
        "unclear message: {stderr}"
    );
}

#[test]
fn the_boundary_is_the_servers() {
    // 15 bytes: refused by both; 16: accepted by both.
    let short = "app:0123456789abcde";
    let out = tether(&["token", "--key", short]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let dir = tempfile::tempdir().expect("temp dir");
    let serve = Command::new(BIN)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--key",
            short,
            "--data-dir",
        ])
        .arg(dir.path())
        .output()
        .expect("run serve");
    assert!(!serve.status.success(), "the server took a 15-byte secret");
    let cli_reason = String::from_utf8_lossy(&out.stderr).into_owned();
    let server_reason = String::from_utf8_lossy(&serve.stderr).into_owned();
    let reason = server_reason
        .split("invalid configuration: ")
        .nth(1)
        .unwrap_or_else(|| panic!("{server_reason}"))
        .trim();
    assert!(
        cli_reason.contains(reason),
        "CLI and server disagree:\n{cli_reason}\n{server_reason}"
    );

    let out = tether(&["token", "--key", "app:0123456789abcdef"]);
    assert!(out.status.success(), "{out:?}");
    let jwt = String::from_utf8_lossy(&out.stdout);
    assert_eq!(jwt.trim().split('.').count(), 3, "not a JWT: {jwt}");
}

#[test]
fn a_bad_key_name_is_refused() {
    let out = tether(&["token", "--key", ":0123456789abcdef"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(out.stdout.is_empty());
    assert!(String::from_utf8_lossy(&out.stderr).contains("name"));
}
