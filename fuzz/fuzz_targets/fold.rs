//! Any operation JSON applied to any message JSON: folding returns a new
//! state or a typed refusal, never panics, and the result respects the
//! size limit.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tether_core::{FoldLimits, Message, Operation, Serial, Stamp, apply};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (left, right) = text.split_once('\n').unwrap_or((text, ""));
    let Ok(op) = serde_json::from_str::<Operation>(left) else {
        return;
    };
    let current = serde_json::from_str::<Message>(right).ok();
    let Some(serial) = Serial::new(1, 99) else {
        return;
    };
    let stamp = Stamp {
        serial,
        timestamp: 1,
        client_id: Some("fuzz"),
        connection_id: None,
        own_only: false,
        authority: tether_core::conventions::Authority::ALL,
    };
    let limits = FoldLimits {
        max_message_bytes: 4096,
        mutable: true,
    };
    if let Ok(applied) = apply(current.as_ref(), op, &stamp, &limits) {
        let size = tether_core::message::message_size(
            applied.state.name.as_deref(),
            &applied.state.data,
            applied.state.extras.as_ref(),
        );
        assert!(size <= 4096 || applied.state.action == tether_core::Action::Delete);
    }
});
