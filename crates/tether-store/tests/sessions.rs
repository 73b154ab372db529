//! Session records and the outcomes of sequenced operations: outcomes are
//! committed with their operation, survive a reopen, and are bounded.
#![allow(clippy::unwrap_used)]

mod common;

use common::{append_op, ch, create_op, delete_op, open, sub};
use tether_store::{LogStore, SEQ_WINDOW, Sequenced, SessionStore};

fn sequenced(seq: u64) -> Option<Sequenced> {
    Some(Sequenced {
        connection_id: "c_1".into(),
        seq,
    })
}

#[tokio::test]
async fn outcomes_are_recorded_with_their_operations_and_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let channel = ch("chat:1");
    {
        let (store, _) = open(dir.path());
        store.put_session("c_1", b"{\"k\":1}").unwrap();
        let mut create = sub(&channel, create_op("a"));
        create.sequence = sequenced(1);
        let created = store.submit(create).await.unwrap().await.unwrap();
        let mut append = sub(&channel, append_op(created.serial, "b"));
        append.sequence = sequenced(2);
        let appended = store.submit(append).await.unwrap().await.unwrap();
        let mut delete = sub(&channel, delete_op(created.serial));
        delete.sequence = sequenced(3);
        store.submit(delete).await.unwrap().await.unwrap();
        // Refused by the folding rules: the refusal is the outcome.
        let mut late = sub(&channel, append_op(created.serial, "c"));
        late.sequence = sequenced(4);
        let refused = store.submit(late).await.unwrap().await.unwrap_err();
        // Not sequenced: nothing recorded.
        store
            .submit(sub(&channel, create_op("x")))
            .await
            .unwrap()
            .await
            .unwrap();
        store.shutdown().await.unwrap();

        let outcomes = store.outcomes("c_1").unwrap();
        assert_eq!(
            outcomes.iter().map(|o| o.0).collect::<Vec<_>>(),
            [1, 2, 3, 4]
        );
        assert_eq!(outcomes[0].1, Ok(created));
        assert_eq!(outcomes[1].1, Ok(appended));
        let err = outcomes[3].1.clone().unwrap_err();
        assert_eq!(err.code, refused.code().code());
        assert_eq!(err.message, refused.to_string());
    }
    let (store, _) = open(dir.path());
    assert_eq!(
        store.session("c_1").unwrap().as_deref(),
        Some(&b"{\"k\":1}"[..])
    );
    assert_eq!(store.outcomes("c_1").unwrap().len(), 4);
    assert!(
        store.outcomes("c_10").unwrap().is_empty(),
        "prefixes do not overlap"
    );
    assert_eq!(store.sessions().unwrap().len(), 1);
    store.delete_session("c_1").unwrap();
    assert!(store.session("c_1").unwrap().is_none());
    assert!(store.outcomes("c_1").unwrap().is_empty());
}

#[tokio::test]
async fn outcomes_beyond_the_window_are_forgotten() {
    let dir = tempfile::tempdir().unwrap();
    let channel = ch("chat:w");
    let (store, _) = open(dir.path());
    let mut receipts = Vec::new();
    for seq in 1..=SEQ_WINDOW + 5 {
        let mut s = sub(&channel, create_op("m"));
        s.sequence = sequenced(seq);
        receipts.push(store.submit(s).await.unwrap());
    }
    for receipt in receipts {
        receipt.await.unwrap();
    }
    let outcomes = store.outcomes("c_1").unwrap();
    assert_eq!(outcomes.len() as u64, SEQ_WINDOW);
    assert_eq!(outcomes.first().map(|o| o.0), Some(6));
    assert_eq!(outcomes.last().map(|o| o.0), Some(SEQ_WINDOW + 5));
}

#[test]
fn alive_time_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(dir.path());
    assert_eq!(store.alive().unwrap(), None);
    store.set_alive(1_764_151_200_000).unwrap();
    assert_eq!(store.alive().unwrap(), Some(1_764_151_200_000));
}
