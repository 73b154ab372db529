//! Property: whatever sequence of operations goes in, folding the log
//! gives exactly the messages history returns.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use proptest::prelude::*;
use tether_core::{ORIGIN, Operation, Serial, View};
use tether_store::{Direction, HistoryQuery, LogStore, StoreConfig};

#[derive(Debug, Clone)]
enum Step {
    Create(String),
    Append(usize, String),
    Update(usize, String),
    Delete(usize),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        2 => "[a-z]{0,4}".prop_map(Step::Create),
        6 => (any::<usize>(), "[a-z ]{1,6}").prop_map(|(i, s)| Step::Append(i, s)),
        1 => (any::<usize>(), "[a-z]{0,4}").prop_map(|(i, s)| Step::Update(i, s)),
        1 => any::<usize>().prop_map(Step::Delete),
    ]
}

/// Runs `steps` on two channels, awaiting receipts every `sync_every` steps
/// (so operations on a message created in the same group happen too).
async fn check(steps: Vec<(bool, Step)>, sync_every: usize, max_batch: usize) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = StoreConfig::new(dir.path());
    config.max_batch = max_batch;
    let (store, _sink) = open_with(config);
    let channels = [ch("p:a"), ch("p:b")];
    let mut created: [Vec<Serial>; 2] = [Vec::new(), Vec::new()];
    let mut pending = Vec::new();
    for (i, (second, step)) in steps.into_iter().enumerate() {
        let c = usize::from(second);
        let pick = |i: usize| {
            created[c]
                .get(i % created[c].len().max(1))
                .copied()
                .unwrap_or(ORIGIN)
        };
        let is_create = matches!(step, Step::Create(_));
        let op: Operation = match step {
            Step::Create(data) => create_op(&data),
            Step::Append(t, data) => append_op(pick(t), &data),
            Step::Update(t, data) => update_op(pick(t), &data),
            Step::Delete(t) => delete_op(pick(t)),
        };
        let receipt = store.submit(sub(&channels[c], op)).await.unwrap();
        if is_create {
            // Creates are awaited so later steps can target them.
            created[c].push(receipt.await.unwrap().serial);
        } else {
            pending.push(receipt);
        }
        if i % sync_every == 0 {
            for r in pending.drain(..) {
                let _ = r.await;
            }
        }
    }
    for r in pending {
        let _ = r.await;
    }
    for c in &channels {
        let mut view = View::new();
        for e in store.read_log(c, ORIGIN, usize::MAX).await.unwrap() {
            view.apply(&e);
        }
        let query = HistoryQuery {
            direction: Direction::Forwards,
            limit: 10_000,
            ..HistoryQuery::default()
        };
        let history = store.history(c, query).await.unwrap().messages;
        let folded: Vec<_> = view.messages().cloned().collect();
        assert_eq!(folded, history);
        for m in &history {
            assert_eq!(store.message(c, m.serial).await.unwrap().as_ref(), Some(m));
            assert_eq!(store.versions(c, m.serial).await.unwrap().last(), Some(m));
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn log_folds_to_history(
        steps in proptest::collection::vec((any::<bool>(), step()), 1..80),
        sync_every in 1_usize..20,
        max_batch in 1_usize..8,
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(check(steps, sync_every, max_batch));
    }
}
