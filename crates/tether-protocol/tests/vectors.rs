//! The golden vectors in `vectors/`: every frame vector decodes into its
//! type and re-encodes to the same JSON; every frame type has at least one
//! vector; every fold sequence folds through `tether_core::View` into the
//! messages it lists. The TypeScript SDK's tests read the same files.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tether_core::{AppendOp, DeleteOp, Message, UpdateOp, View};
use tether_protocol::llm::{JobCancelling, JobList, JobStarted, StartRequest};
use tether_protocol::rest::{
    AckBody, ChannelInfo, HistoryPage, Members, PublishBody, PublishResults, TokenRequest,
    TokenResponse, Versions,
};
use tether_protocol::sse::{self, SseEvent};
use tether_protocol::{ClientFrame, ErrorBody, ServerFrame};

fn vectors() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("vectors")
}

/// Every `*.json` in `dir`, by file stem, each a JSON array of examples.
fn examples(dir: &str) -> Vec<(String, Vec<Value>)> {
    let mut files: Vec<_> = std::fs::read_dir(vectors().join(dir))
        .expect("vector folder exists")
        .map(|entry| entry.expect("readable entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let stem = path
                .file_stem()
                .and_then(|s| s.to_str())
                .expect("utf-8 name")
                .to_owned();
            let text = std::fs::read_to_string(&path).expect("readable vector");
            let value: Value = serde_json::from_str(&text).expect("vector is JSON");
            let Value::Array(list) = value else {
                panic!("{} must hold an array of examples", path.display());
            };
            assert!(!list.is_empty(), "{} holds no example", path.display());
            (stem, list)
        })
        .collect()
}

/// Decodes `example` as `T`, re-encodes it and checks the JSON is equal.
fn round_trip<T: DeserializeOwned + Serialize>(what: &str, example: &Value) -> T {
    let decoded: T = serde_json::from_value(example.clone())
        .unwrap_or_else(|err| panic!("{what}: {example} does not decode: {err}"));
    let again = serde_json::to_value(&decoded).expect("encodes");
    assert_eq!(&again, example, "{what}: re-encoding differs");
    decoded
}

#[test]
fn every_server_frame_round_trips_and_has_a_vector() {
    let mut seen = BTreeSet::new();
    for (stem, list) in examples("frames/server") {
        for example in &list {
            // Decode from text, as a client does.
            let frame = ServerFrame::decode(&example.to_string()).expect("decodes from text");
            assert_eq!(frame.type_name(), stem, "vector file names its type");
            let again = serde_json::to_value(&frame).expect("encodes");
            assert_eq!(&again, example, "{stem}: re-encoding differs");
            seen.insert(frame.type_name());
        }
    }
    // `type_name` matches every variant exhaustively, so `TYPES` names
    // every server frame there is.
    let all: BTreeSet<&str> = ServerFrame::TYPES.into_iter().collect();
    assert_eq!(seen, all, "a server frame type has no vector");
}

#[test]
fn every_client_frame_round_trips_and_has_a_vector() {
    let mut seen = BTreeSet::new();
    for (stem, list) in examples("frames/client") {
        for example in &list {
            // Decode the way the server does (strict, with error codes).
            let frame = tether_protocol::decode_client_frame(&example.to_string())
                .unwrap_or_else(|err| panic!("{stem}: {example} refused: {err}"));
            assert_eq!(frame.type_name(), stem, "vector file names its type");
            let again: Value = serde_json::from_str(&frame.to_json()).expect("JSON");
            assert_eq!(&again, example, "{stem}: re-encoding differs");
            seen.insert(client_variant(&frame));
        }
    }
    assert_eq!(
        seen.len(),
        CLIENT_VARIANTS,
        "a client frame type has no vector"
    );
}

/// Exhaustive on purpose: a new frame does not compile here until it is
/// counted, and then the test fails until it has a vector.
const CLIENT_VARIANTS: usize = 10;
fn client_variant(frame: &ClientFrame) -> usize {
    match frame {
        ClientFrame::Attach { .. } => 0,
        ClientFrame::Detach { .. } => 1,
        ClientFrame::Publish { .. } => 2,
        ClientFrame::Append { .. } => 3,
        ClientFrame::Update { .. } => 4,
        ClientFrame::Delete { .. } => 5,
        ClientFrame::Auth { .. } => 6,
        ClientFrame::Presence { .. } => 7,
        ClientFrame::Resume { .. } => 8,
        ClientFrame::Ping { .. } => 9,
    }
}

/// Every REST body, by vector file name. A body type added to the
/// protocol gets a line here and a file in `vectors/frames/rest/`.
const REST_BODIES: [&str; 17] = [
    "publish_request",
    "append_request",
    "update_request",
    "delete_request",
    "ack",
    "publish_results",
    "message",
    "versions",
    "history",
    "members",
    "channel_info",
    "token_request",
    "token_response",
    "llm_start_request",
    "llm_job_started",
    "llm_jobs",
    "llm_job_cancelling",
];

fn rest_round_trip(name: &str, example: &Value) {
    match name {
        "publish_request" => drop(round_trip::<PublishBody>(name, example)),
        "append_request" => drop(round_trip::<AppendOp>(name, example)),
        "update_request" => drop(round_trip::<UpdateOp>(name, example)),
        "delete_request" => drop(round_trip::<DeleteOp>(name, example)),
        "ack" => drop(round_trip::<AckBody>(name, example)),
        "publish_results" => drop(round_trip::<PublishResults>(name, example)),
        "message" => drop(round_trip::<Message>(name, example)),
        "versions" => drop(round_trip::<Versions>(name, example)),
        "history" => drop(round_trip::<HistoryPage>(name, example)),
        "members" => drop(round_trip::<Members<'static>>(name, example)),
        "channel_info" => drop(round_trip::<ChannelInfo>(name, example)),
        "token_request" => drop(round_trip::<TokenRequest>(name, example)),
        "token_response" => drop(round_trip::<TokenResponse>(name, example)),
        "llm_start_request" => drop(round_trip::<StartRequest>(name, example)),
        "llm_job_started" => drop(round_trip::<JobStarted>(name, example)),
        "llm_jobs" => drop(round_trip::<JobList>(name, example)),
        "llm_job_cancelling" => drop(round_trip::<JobCancelling>(name, example)),
        other => panic!("vector {other} names no REST body"),
    }
}

#[test]
fn every_rest_body_round_trips_and_has_a_vector() {
    let found: BTreeSet<String> = examples("frames/rest")
        .into_iter()
        .map(|(stem, list)| {
            for example in &list {
                rest_round_trip(&stem, example);
            }
            stem
        })
        .collect();
    let expected: BTreeSet<String> = REST_BODIES.iter().map(|s| (*s).to_owned()).collect();
    assert_eq!(found, expected, "REST bodies and their vectors differ");
}

#[test]
fn a_publish_array_is_many_and_an_object_is_one() {
    let one: PublishBody = serde_json::from_str(r#"{"data":"x"}"#).expect("one");
    assert!(matches!(one, PublishBody::One(_)));
    let many: PublishBody = serde_json::from_str(r#"[{"data":"x"}]"#).expect("many");
    assert!(matches!(many, PublishBody::Many(list) if list.len() == 1));
}

#[test]
fn the_error_body_round_trips() {
    for (stem, list) in examples("frames/error") {
        for example in &list {
            let body = round_trip::<ErrorBody>(&stem, example);
            assert!(body.error.code >= 40000, "{stem}: a real code");
        }
    }
}

#[test]
fn every_sse_event_round_trips_and_has_a_vector() {
    let mut seen = BTreeSet::new();
    for (stem, list) in examples("frames/sse") {
        for example in &list {
            let name = example["event"].as_str().expect("event name");
            assert_eq!(name, stem, "vector file names its event");
            let id = example.get("id").and_then(Value::as_str);
            let data = example["data"].to_string();
            let event = SseEvent::decode(name, id, &data)
                .unwrap_or_else(|err| panic!("{stem}: {example} does not decode: {err}"));
            // Framed, parsed back: the same parts.
            let framed = String::from_utf8(event.encode().expect("encodes")).expect("utf-8");
            assert!(framed.ends_with("\n\n"), "{framed:?} ends the event");
            let raw = sse::parse(&framed).expect("one event");
            assert_eq!(raw.name, name);
            assert_eq!(raw.id, id, "{stem}: id line");
            let again: Value = serde_json::from_str(&raw.data).expect("data is JSON");
            assert_eq!(again, example["data"], "{stem}: data differs");
            seen.insert(sse_variant(&event));
        }
    }
    assert_eq!(seen.len(), SSE_VARIANTS, "an SSE event has no vector");
    assert_eq!(SseEvent::NAMES.len(), SSE_VARIANTS);
}

/// Exhaustive on purpose: a new frame does not compile here until it is
/// counted, and then the test fails until it has a vector.
const SSE_VARIANTS: usize = 7;
fn sse_variant(event: &SseEvent<'_>) -> usize {
    match event {
        SseEvent::Attached { .. } => 0,
        SseEvent::Message { .. } => 1,
        SseEvent::Synced { .. } => 2,
        SseEvent::Ephemeral(_) => 3,
        SseEvent::Presence(_) => 4,
        SseEvent::PresenceSync(_) => 5,
        SseEvent::Error(_) => 6,
    }
}

#[test]
fn a_keep_alive_block_is_no_event() {
    let text = std::str::from_utf8(sse::KEEP_ALIVE).expect("utf-8");
    assert_eq!(sse::parse(text), None);
    assert!(SseEvent::decode("nope", None, "{}").is_err());
}

#[test]
fn every_fold_sequence_folds_to_its_messages() {
    let mut count = 0;
    let mut dir: Vec<_> = std::fs::read_dir(vectors().join("fold"))
        .expect("fold vectors exist")
        .map(|e| e.expect("entry").path())
        .collect();
    dir.sort();
    for path in dir {
        let text = std::fs::read_to_string(&path).expect("readable");
        let vector: Value = serde_json::from_str(&text).expect("JSON");
        let events: Vec<Message> =
            serde_json::from_value(vector["events"].clone()).expect("events are messages");
        let expected: Vec<Message> =
            serde_json::from_value(vector["messages"].clone()).expect("messages");
        assert!(!events.is_empty(), "{}: no events", path.display());
        let mut view = View::new();
        for event in &events {
            view.apply(event);
        }
        let folded: Vec<Message> = view.messages().cloned().collect();
        assert_eq!(folded, expected, "{}", path.display());
        count += 1;
    }
    assert!(count >= 5, "fold vectors are missing");
}

#[test]
fn fold_vectors_cover_every_operation_and_convention() {
    let mut actions = BTreeSet::new();
    let mut names = BTreeSet::new();
    let mut appends_in_one = 0;
    for entry in std::fs::read_dir(vectors().join("fold")).expect("fold vectors") {
        let text = std::fs::read_to_string(entry.expect("entry").path()).expect("readable");
        let vector: Value = serde_json::from_str(&text).expect("JSON");
        let events: Vec<Message> = serde_json::from_value(vector["events"].clone()).expect("ok");
        let appends = events
            .iter()
            .filter(|e| e.action == tether_core::Action::Append)
            .count();
        appends_in_one = appends_in_one.max(appends);
        for event in events {
            actions.insert(format!("{:?}", event.action));
            if let Some(name) = event.name {
                names.insert(name);
            }
        }
    }
    for action in ["Create", "Append", "Update", "Delete"] {
        assert!(actions.contains(action), "no fold vector has {action}");
    }
    assert!(appends_in_one >= 3, "a sequence of several appends");
    for name in [
        tether_core::conventions::CANCEL,
        tether_core::conventions::HANDOFF,
    ] {
        assert!(names.contains(name), "no fold vector has a {name}");
    }
}
