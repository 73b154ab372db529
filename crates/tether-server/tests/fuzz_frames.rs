//! A stable-toolchain fuzz of the frame decoder (the cargo-fuzz targets in
//! `fuzz/` go further): structured-but-wrong frames never panic, and every
//! refusal carries a client error code.

use proptest::prelude::*;
use serde_json::{Value, json};
use tether_protocol as protocol;

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        ".{0,24}".prop_map(Value::from),
        Just(Value::from("1764151200000-0000000000000042")),
        Just(Value::from("conversation:1")),
    ]
}

fn value() -> impl Strategy<Value = Value> {
    scalar().prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            proptest::collection::btree_map("[a-z_]{1,10}", inner, 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn frame() -> impl Strategy<Value = Value> {
    let kinds = prop_oneof![
        Just("attach"),
        Just("detach"),
        Just("publish"),
        Just("append"),
        Just("update"),
        Just("delete"),
        Just("presence"),
        Just("resume"),
        Just("auth"),
        Just("ping"),
        Just("nope"),
    ];
    let fields = proptest::collection::btree_map(
        prop_oneof![
            Just("req".to_owned()),
            Just("channel".to_owned()),
            Just("serial".to_owned()),
            Just("message".to_owned()),
            Just("data".to_owned()),
            Just("extras".to_owned()),
            Just("from".to_owned()),
            Just("rewind".to_owned()),
            Just("seq".to_owned()),
            Just("action".to_owned()),
            Just("ephemeral".to_owned()),
            Just("client_id".to_owned()),
            "[a-z]{1,8}",
        ],
        value(),
        0..6,
    );
    (kinds, fields).prop_map(|(kind, fields)| {
        let mut object: serde_json::Map<String, Value> = fields.into_iter().collect();
        object.insert("type".into(), json!(kind));
        Value::Object(object)
    })
}

fn check(text: &str) {
    let _ = protocol::salvage_req(text);
    match protocol::decode_client_frame(text) {
        Ok(frame) => {
            // What the server accepts, a client can send: it re-encodes
            // and decodes again to the same frame.
            let again = protocol::decode_client_frame(&frame.to_json());
            assert_eq!(again.as_ref().ok(), Some(&frame), "{text}");
            if let Some(Err((_, err))) = protocol::mutation(frame) {
                assert!((40000..50000).contains(&err.code), "{err:?}");
            }
        }
        Err(err) => assert!((40000..50000).contains(&err.code), "{err:?}"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn structured_frames_never_panic(frame in frame()) {
        check(&frame.to_string());
    }

    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,200}") {
        check(&text);
    }

    #[test]
    fn truncated_frames_never_panic(frame in frame(), cut in any::<usize>()) {
        let text = frame.to_string();
        let mut end = cut % (text.len() + 1);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        check(&text[..end]);
    }
}
