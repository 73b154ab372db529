//! Small runtime helpers shared by every long-running task: starting
//! tokio for a subcommand, waiting for the shutdown flag, deadlines that
//! cannot overflow.

use tokio::sync::watch;

/// Runs a command's future on a new multi-threaded runtime and returns its
/// exit code; one place for every `tether` subcommand to start tokio.
pub fn block_on(
    command: impl std::future::Future<Output = std::process::ExitCode>,
) -> std::process::ExitCode {
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime.block_on(command),
        Err(err) => {
            eprintln!("tether: cannot start the runtime: {err}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Resolves once `flag` turns true (or its sender is gone). Returns nothing
/// so no watch guard is held across an await in `select!` arms.
pub async fn flipped(flag: &mut watch::Receiver<bool>) {
    let _ = flag.wait_for(|set| *set).await;
}

/// Sleeps for `duration`, or forever when there is none (a credential
/// without expiry) or it is too far away to be a deadline (an `exp` of
/// 2^64-1 must not overflow `Instant`).
pub async fn sleep_or_forever(duration: Option<std::time::Duration>) {
    match duration.and_then(deadline_in) {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// The instant `duration` from now, or `None` when that is not
/// representable (treat it as never). Use this wherever an expiry becomes
/// a deadline: `Instant + Duration` panics on overflow.
pub fn deadline_in(duration: std::time::Duration) -> Option<tokio::time::Instant> {
    tokio::time::Instant::now().checked_add(duration)
}

/// Wall-clock milliseconds since the Unix epoch: the timestamps stamped
/// on messages and session records (0 if the clock is before 1970).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
