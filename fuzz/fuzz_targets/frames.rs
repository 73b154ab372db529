//! Any bytes a WebSocket client can send: decoding must return a frame or a
//! typed error, never panic; a decoded mutation must convert cleanly.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tether_server::protocol;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = protocol::salvage_req(text);
    match protocol::decode_client_frame(text) {
        Ok(frame) => {
            if let Some(Ok(mutation)) = protocol::mutation(frame) {
                let _ = protocol::channel(&mutation.channel);
            }
        }
        Err(err) => assert!((40000..50000).contains(&err.code)),
    }
    let _ = protocol::serial(text);
    let _ = protocol::channel(text);
});
