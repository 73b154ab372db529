//! Any bytes a WebSocket client can send: decoding must return a frame or a
//! typed error, never panic; a decoded mutation must convert cleanly.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tether_protocol as protocol;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = protocol::salvage_req(text);
    match protocol::decode_client_frame(text) {
        Ok(frame) => {
            // What decodes re-encodes, and decodes again to the same frame.
            let again = protocol::decode_client_frame(&frame.to_json());
            assert_eq!(again.as_ref().ok(), Some(&frame));
            if let Some(Ok(mutation)) = protocol::mutation(frame) {
                let _ = protocol::channel(&mutation.channel);
            }
        }
        Err(err) => assert!((40000..50000).contains(&err.code)),
    }
    let _ = protocol::ServerFrame::decode(text);
    let _ = protocol::serial(text);
    let _ = protocol::channel(text);
});
