//! Acknowledged appends per second under each fsync mode.
//!
//! 100 concurrent streams each create a message and pipeline 32 appends of
//! 32 bytes, awaiting every receipt; one iteration is all of that
//! (3,300 acknowledged operations). Run with `cargo bench -p tether-store`.
//! After criterion's own report it prints operations per second per mode and
//! what group commit buys over an fsync per operation.
#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use serde_json::Value;
use tether_core::{AppendOp, ChannelName, NewMessage, Operation};
use tether_store::{
    CommitSink, Committed, FjallStore, FsyncMode, LogStore, StoreConfig, Submission,
};

const STREAMS: usize = 100;
const APPENDS: usize = 32;
const OPS: u64 = (STREAMS * (APPENDS + 1)) as u64;

struct NullSink;

impl CommitSink for NullSink {
    fn deliver(&self, _batch: Vec<Arc<Committed>>) {}
}

fn sub(channel: &ChannelName, op: Operation) -> Submission {
    Submission {
        channel: channel.clone(),
        op,
        client_id: None,
        connection_id: None,
        own_only: false,
        authority: tether_core::conventions::Authority::ALL,
        publisher: "bench".into(),
        sequence: None,
    }
}

/// One stream: create, then pipeline the appends and await every receipt.
async fn stream(store: Arc<FjallStore>, channel: ChannelName) {
    let create = Operation::Create(NewMessage {
        data: Value::String(String::new()),
        ..NewMessage::default()
    });
    let target = store
        .submit(sub(&channel, create))
        .await
        .unwrap()
        .await
        .unwrap()
        .serial;
    let fragment = "x".repeat(32);
    let mut receipts = Vec::with_capacity(APPENDS);
    for _ in 0..APPENDS {
        let op = Operation::Append {
            target,
            append: AppendOp {
                data: fragment.clone(),
                name: None,
                extras: None,
            },
        };
        receipts.push(store.submit(sub(&channel, op)).await.unwrap());
    }
    for r in receipts {
        r.await.unwrap();
    }
}

/// All streams once, each on its own channel (one conversation each).
async fn round(store: &Arc<FjallStore>) {
    let tasks: Vec<_> = (0..STREAMS)
        .map(|i| {
            let channel = ChannelName::new(format!("bench:{i}")).unwrap();
            tokio::spawn(stream(store.clone(), channel))
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
}

fn appends(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    // A real disk (not tmpfs), so fsync costs what it costs.
    let root = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let totals: Arc<Mutex<Vec<(FsyncMode, u64, Duration)>>> = Arc::default();
    let mut group = c.benchmark_group("acknowledged_ops");
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2))
        .throughput(Throughput::Elements(OPS));
    for mode in [FsyncMode::Batch, FsyncMode::Never, FsyncMode::Always] {
        let mut config = StoreConfig::new(root.path().join(mode.to_string()));
        config.fsync = mode;
        let store = Arc::new(FjallStore::open(config, Arc::new(NullSink)).unwrap());
        let totals = totals.clone();
        group.bench_function(mode.to_string(), |b| {
            b.to_async(&rt).iter_custom(|iters| {
                let store = store.clone();
                let totals = totals.clone();
                async move {
                    let start = Instant::now();
                    for _ in 0..iters {
                        round(&store).await;
                    }
                    let elapsed = start.elapsed();
                    totals.lock().unwrap().push((mode, iters * OPS, elapsed));
                    elapsed
                }
            })
        });
        drop(store);
    }
    group.finish();

    let rate = |mode: FsyncMode| {
        let totals = totals.lock().unwrap();
        let (ops, time) = totals
            .iter()
            .filter(|(m, _, _)| *m == mode)
            .fold((0, Duration::ZERO), |(o, t), (_, ops, d)| (o + ops, t + *d));
        ops as f64 / time.as_secs_f64().max(f64::EPSILON)
    };
    let (batch, never, always) = (
        rate(FsyncMode::Batch),
        rate(FsyncMode::Never),
        rate(FsyncMode::Always),
    );
    println!("\nacknowledged ops/s with {STREAMS} streams x {APPENDS} appends of 32 B:");
    println!("  batch  {batch:>10.0}");
    println!("  never  {never:>10.0}");
    println!("  always {always:>10.0}");
    println!(
        "  group commit (batch) / fsync per op (always) = {:.1}x",
        batch / always
    );
    println!(
        "  no fsync (never) / group commit (batch)      = {:.2}x",
        never / batch
    );
}

criterion_group!(benches, appends);
criterion_main!(benches);
