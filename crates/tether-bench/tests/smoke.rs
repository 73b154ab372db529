//! CI smoke: the W1 and W4 workloads at tiny sizes against an in-process
//! server, checking that the tool works end to end (connections, pacing,
//! token timestamps, acks, deliveries, resume) rather than any number.

use std::time::Duration;

use tether_bench::Ctx;
use tether_bench::target::Server;
use tether_bench::workloads::resume::{self, ResumeSpec};
use tether_bench::workloads::stream::{self, StreamSpec};

async fn start() -> (tether_server::Server, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = tether_server::Server::start(tether_server::Config {
        listen: "127.0.0.1:0".parse().expect("addr"),
        data_dir: dir.path().join("data"),
        dev: true,
        ..Default::default()
    })
    .await
    .expect("server starts");
    (server, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn w1_and_w4_smoke() {
    let (server, _dir) = start().await;
    // The process is the server too: CPU/RSS figures are the test's own.
    let target = Server::external(&server.url(), Some(std::process::id()));
    let ctx = Ctx { quiet: true };

    let w1 = StreamSpec {
        channels: 4,
        rate: 50.0,
        duration: Duration::from_millis(800),
        warmup: Duration::from_millis(200),
        tokens_per_message: 30,
        ..StreamSpec::w1()
    };
    let m = stream::run(&target, &w1, &ctx).await.expect("w1 runs");
    assert_eq!(m["errors"], 0.0, "{m:?}");
    assert_eq!(m["missing"], 0.0, "{m:?}");
    assert!(m["appends_per_s"] > 50.0, "{m:?}");
    assert!(m["deliveries_per_s"] > 50.0, "{m:?}");
    assert!(m["latency_count"] > 50.0, "{m:?}");
    assert!(
        m["latency_p99_ms"] > 0.0 && m["latency_p99_ms"] < 5_000.0,
        "{m:?}"
    );
    assert!(m.contains_key("server_cpu_pct"), "{m:?}");

    let w4 = ResumeSpec {
        missed: 100,
        channels: 2,
        sequential: 4,
        storm: 10,
        storm_channels: 2,
        ..ResumeSpec::default()
    };
    let m = resume::run(&target, &w4, &ctx).await.expect("w4 runs");
    assert_eq!(m["incomplete"], 0.0, "{m:?}");
    assert_eq!(m["resume_count"], 4.0, "{m:?}");
    assert_eq!(m["storm_count"], 10.0, "{m:?}");
    assert!(m["storm_total_ms"] > 0.0, "{m:?}");

    server.shutdown().await;
}
