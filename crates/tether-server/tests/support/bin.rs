//! Where the `tether` binary is, for tests that must run the real process
//! (kill -9, exit codes, the CLI). It lives in its own crate (`crates/tether`),
//! so cargo does not hand this crate's tests its path.

use std::path::PathBuf;

/// `TETHER_BIN` when set (`scripts/test` sets it), else the binary cargo
/// builds beside these tests (`target/debug/tether`): `cargo test
/// --workspace` builds it for the `tether` crate's own tests, and
/// `cargo build --bins` does too.
pub fn tether_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("TETHER_BIN") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("the test's own path");
    // target/debug/deps/<test> → target/debug/tether
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("a target directory");
    let bin = dir.join(format!("tether{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.exists(),
        "{} is missing: build the binary first (`cargo build -p tether`) or set TETHER_BIN",
        bin.display()
    );
    bin
}
