//! Property tests of folding: whatever sequence of create / append / update
//! / delete the server applies, every way a client can receive it (live,
//! resumed from any position, late-joined from a snapshot, with repeats)
//! folds to exactly the server's stored state.

use std::collections::BTreeMap;

use proptest::prelude::*;
use serde_json::{Map, Value, json};
use tether_core::fold::fold_fragment;
use tether_core::{
    Action, AppendOp, Applied, DeleteOp, FoldLimits, Message, NewMessage, Operation, Serial, Stamp,
    UpdateOp, View, apply, apply_in_place,
};

/// An operation on the n-th message created so far (modulo how many exist).
#[derive(Debug, Clone)]
enum Step {
    Create(Option<String>),
    Append(usize, String, Option<String>),
    Update(usize, Option<String>, Option<(String, Option<i64>)>),
    Delete(usize),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        2 => proptest::option::of("[a-z]{0,4}").prop_map(Step::Create),
        6 => (any::<usize>(), "[a-z ]{0,6}", proptest::option::of("done|streaming"))
            .prop_map(|(i, d, s)| Step::Append(i, d, s)),
        2 => (any::<usize>(), proptest::option::of("[A-Z]{0,4}"),
              proptest::option::of(("[a-c]", proptest::option::of(0i64..3))))
            .prop_map(|(i, d, e)| Step::Update(i, d, e)),
        1 => any::<usize>().prop_map(Step::Delete),
    ]
}

const LIMITS: FoldLimits = FoldLimits {
    max_message_bytes: 1 << 20,
    mutable: true,
};

/// Runs steps through the server-side fold. Returns the final stored states
/// and the events (in log order) the server would fan out.
fn run(steps: &[Step]) -> (BTreeMap<Serial, Message>, Vec<Message>) {
    run_with(steps, &LIMITS, false)
}

/// [`run`] with `limits`, through [`apply_in_place`] when `in_place`.
fn run_with(
    steps: &[Step],
    limits: &FoldLimits,
    in_place: bool,
) -> (BTreeMap<Serial, Message>, Vec<Message>) {
    let mut states: BTreeMap<Serial, Message> = BTreeMap::new();
    let mut created: Vec<Serial> = Vec::new();
    let mut events = Vec::new();
    let mut seq = 0;
    for step in steps {
        let pick = |i: usize| (!created.is_empty()).then(|| created[i % created.len()]);
        let op = match step.clone() {
            Step::Create(data) => Operation::Create(NewMessage {
                data: data.map_or(Value::Null, Value::String),
                ..NewMessage::default()
            }),
            Step::Append(i, data, status) => match pick(i) {
                Some(target) => Operation::Append {
                    target,
                    append: AppendOp {
                        data,
                        name: None,
                        extras: status.map(|s| obj(json!({ "stream": s }))),
                    },
                },
                None => continue,
            },
            Step::Update(i, data, extras) => match pick(i) {
                Some(target) => Operation::Update {
                    target,
                    update: UpdateOp {
                        data: data.map(Value::String),
                        extras: extras
                            .map(|(k, v)| obj(json!({ k: v.map_or(Value::Null, Value::from) }))),
                        ..UpdateOp::default()
                    },
                },
                None => continue,
            },
            Step::Delete(i) => match pick(i) {
                Some(target) => Operation::Delete {
                    target,
                    delete: DeleteOp::default(),
                },
                None => continue,
            },
        };
        let serial = Serial::new(42, seq + 1).expect("serial");
        let stamp = Stamp {
            serial,
            timestamp: seq,
            client_id: Some("c"),
            connection_id: None,
            own_only: false,
            authority: tether_core::conventions::Authority::ALL,
        };
        let target = op.target();
        let applied = if in_place {
            let mut slot = target.and_then(|t| states.remove(&t));
            let result = apply_in_place(&mut slot, op, &stamp, limits);
            // A refusal leaves the state as it was.
            if let Some(state) = slot {
                states.insert(state.serial, state.clone());
            }
            result.map(|event| Applied {
                state: states
                    .get(&event.serial)
                    .cloned()
                    .unwrap_or_else(|| event.clone()),
                event,
            })
        } else {
            apply(target.and_then(|t| states.get(&t)), op, &stamp, limits)
        };
        // Refused operations (appends to deleted messages...) get no serial.
        if let Ok(applied) = applied {
            seq += 1;
            if target.is_none() {
                created.push(serial);
            }
            states.insert(applied.state.serial, applied.state);
            events.push(applied.event);
        }
    }
    (states, events)
}

fn obj(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

fn fold(events: impl IntoIterator<Item = Message>) -> View {
    let mut view = View::new();
    for event in events {
        view.apply(&event);
    }
    view
}

fn as_map(view: &View) -> BTreeMap<Serial, Message> {
    view.messages().map(|m| (m.serial, m.clone())).collect()
}

/// The states after the first `k` events, as a server would have stored.
fn states_after(events: &[Message], k: usize) -> Vec<Message> {
    as_map(&fold(events[..k].iter().cloned()))
        .into_values()
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn live_stream_folds_to_stored_state(steps in proptest::collection::vec(step(), 0..60)) {
        let (states, events) = run(&steps);
        prop_assert_eq!(as_map(&fold(events)), states);
    }

    #[test]
    fn resume_from_any_position_with_any_overlap(
        steps in proptest::collection::vec(step(), 1..60),
        cut in any::<usize>(),
        overlap in any::<usize>(),
    ) {
        let (states, events) = run(&steps);
        let k = cut % (events.len() + 1);
        // The client held the state at k, then receives everything from j <= k
        // again (a resume from an older position repeats events).
        let j = k - overlap % (k + 1);
        let mut view = fold(events[..k].iter().cloned());
        for event in &events[j..] {
            view.apply(event);
        }
        prop_assert_eq!(as_map(&view), states);
    }

    #[test]
    fn late_joiner_snapshot_then_overlapping_fragments(
        steps in proptest::collection::vec(step(), 1..60),
        cut in any::<usize>(),
        behind in any::<usize>(),
    ) {
        let (states, events) = run(&steps);
        let k = cut % (events.len() + 1);
        // Snapshots of the current state at k (what rewind/catch-up sends)...
        let mut view = View::new();
        for snapshot in states_after(&events, k) {
            view.apply(&snapshot);
        }
        // ...followed by live events from a position at or before k.
        let j = k - behind % (k + 1);
        for event in &events[j..] {
            view.apply(event);
        }
        prop_assert_eq!(as_map(&view), states);
    }

    /// How the store keeps states (`fjall_store/fragments.rs`): a checkpoint
    /// written with every create, update and delete and at arbitrary points
    /// between appends, the appends after it kept as fragments and folded
    /// on read. Whatever the checkpoint points, the state read back is the
    /// one the server folded.
    #[test]
    fn checkpoint_plus_fragments_is_the_stored_state(
        steps in proptest::collection::vec(step(), 0..60),
        checkpoint_at in proptest::collection::vec(any::<bool>(), 0..60),
    ) {
        let (states, events) = run(&steps);
        let mut kept: BTreeMap<Serial, (Message, Vec<Message>)> = BTreeMap::new();
        for (i, event) in events.iter().enumerate() {
            if event.action != Action::Append {
                kept.insert(event.serial, (event.clone(), Vec::new()));
                continue;
            }
            let (checkpoint, fragments) = kept.get_mut(&event.serial).expect("appends follow a create");
            fragments.push(event.clone());
            if checkpoint_at.get(i).copied().unwrap_or(false) {
                for fragment in fragments.drain(..) {
                    fold_fragment(checkpoint, &fragment);
                }
            }
        }
        let read: BTreeMap<Serial, Message> = kept
            .into_iter()
            .map(|(serial, (mut state, fragments))| {
                for fragment in &fragments {
                    fold_fragment(&mut state, fragment);
                }
                (serial, state)
            })
            .collect();
        prop_assert_eq!(read, states);
    }

    /// The store's in-place fold gives the same states, events and
    /// refusals as `apply`, with room to spare and at a limit small enough
    /// that appends get refused as too large.
    #[test]
    fn folding_in_place_is_apply(
        steps in proptest::collection::vec(step(), 0..60),
        max in prop_oneof![Just(1usize << 20), 0usize..24],
    ) {
        let limits = FoldLimits { max_message_bytes: max, mutable: true };
        prop_assert_eq!(run_with(&steps, &limits, true), run_with(&steps, &limits, false));
    }

    #[test]
    fn repeated_events_change_nothing(
        steps in proptest::collection::vec(step(), 0..40),
        repeats in proptest::collection::vec(0usize..3, 0..40),
    ) {
        let (states, events) = run(&steps);
        let mut view = View::new();
        for (i, event) in events.iter().enumerate() {
            for _ in 0..=repeats.get(i).copied().unwrap_or(0) {
                view.apply(event);
            }
        }
        prop_assert_eq!(as_map(&view), states);
    }
}

#[test]
fn rejections() {
    use tether_core::FoldError;
    let (states, _) = run(&[Step::Create(Some("x".into())), Step::Delete(0)]);
    let deleted = states.values().next().expect("one").clone();
    let stamp = Stamp {
        serial: Serial::new(42, 9).expect("serial"),
        timestamp: 0,
        client_id: None,
        connection_id: None,
        own_only: false,
        authority: tether_core::conventions::Authority::ALL,
    };
    let append = Operation::Append {
        target: deleted.serial,
        append: AppendOp {
            data: "y".into(),
            name: None,
            extras: None,
        },
    };
    assert_eq!(
        apply(Some(&deleted), append.clone(), &stamp, &LIMITS),
        Err(FoldError::Deleted(deleted.serial))
    );
    assert_eq!(
        apply(None, append.clone(), &stamp, &LIMITS),
        Err(FoldError::NotFound(deleted.serial))
    );
    let frozen = FoldLimits {
        mutable: false,
        ..LIMITS
    };
    assert_eq!(
        apply(Some(&deleted), append, &stamp, &frozen),
        Err(FoldError::MutationNotAllowed)
    );
    let object = Message {
        data: json!({"a": 1}),
        action: tether_core::Action::Create,
        ..deleted.clone()
    };
    let append = Operation::Append {
        target: object.serial,
        append: AppendOp {
            data: "y".into(),
            name: None,
            extras: None,
        },
    };
    assert_eq!(
        apply(Some(&object), append, &stamp, &LIMITS),
        Err(FoldError::AppendTypeMismatch(object.serial))
    );
    let tiny = FoldLimits {
        max_message_bytes: 3,
        mutable: true,
    };
    let create = Operation::Create(NewMessage {
        data: json!("four"),
        ..NewMessage::default()
    });
    assert_eq!(
        apply(None, create, &stamp, &tiny),
        Err(FoldError::TooLarge { size: 4, limit: 3 })
    );
    let bad_id = Operation::Create(NewMessage {
        id: Some("has space".into()),
        ..NewMessage::default()
    });
    assert_eq!(
        apply(None, bad_id, &stamp, &LIMITS),
        Err(FoldError::InvalidId)
    );

    // A finished response takes no more appends or status changes.
    let done = Message {
        data: json!("all"),
        extras: Some(obj(json!({"stream": "complete", "role": "assistant"}))),
        action: tether_core::Action::Update,
        ..deleted.clone()
    };
    let append = Operation::Append {
        target: done.serial,
        append: AppendOp {
            data: "more".into(),
            name: None,
            extras: None,
        },
    };
    assert_eq!(
        apply(Some(&done), append, &stamp, &LIMITS),
        Err(FoldError::StreamEnded(done.serial, "complete".into()))
    );
    let cancel = Operation::Update {
        target: done.serial,
        update: UpdateOp {
            extras: Some(obj(json!({"stream": "cancelled"}))),
            ..UpdateOp::default()
        },
    };
    assert!(matches!(
        apply(Some(&done), cancel, &stamp, &LIMITS),
        Err(FoldError::StreamEnded(..))
    ));
    let edit = Operation::Update {
        target: done.serial,
        update: UpdateOp {
            data: Some(json!("edited")),
            ..UpdateOp::default()
        },
    };
    assert!(
        apply(Some(&done), edit, &stamp, &LIMITS).is_ok(),
        "edits stay possible"
    );
}
