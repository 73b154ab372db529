//! Telling a client that broke the WebSocket protocol from one that
//! vanished, when reading the socket fails.
//!
//! A frame far over `max_frame_bytes` (beyond the library's backstop) or a
//! malformed frame is the client's fault: the server answers with an error
//! frame and closes with the code of that error (4009, or 4000 for a
//! protocol violation), as a server-initiated close. A reset or an I/O error
//! means the peer is gone, which parks the session for resume.

use tether_core::{ErrorCode, ErrorInfo};
use tungstenite::error::ProtocolError;

/// Why the connection must be closed, or `None` if the peer vanished.
pub(super) fn classify(err: axum::Error) -> Option<ErrorInfo> {
    let inner = err.into_inner();
    let err = inner.downcast_ref::<tungstenite::Error>()?;
    match err {
        tungstenite::Error::Capacity(capacity) => Some(ErrorInfo::new(
            ErrorCode::FrameTooLarge,
            format!("frame far over the size limit ({capacity}); send smaller frames"),
        )),
        tungstenite::Error::Utf8(_) => Some(ErrorInfo::new(
            ErrorCode::BadRequest,
            "a text frame that is not valid UTF-8",
        )),
        tungstenite::Error::Protocol(ProtocolError::ResetWithoutClosingHandshake) => None,
        tungstenite::Error::Protocol(violation) => Some(ErrorInfo::new(
            ErrorCode::BadRequest,
            format!("WebSocket protocol violation: {violation}"),
        )),
        tungstenite::Error::AttackAttempt => Some(ErrorInfo::new(
            ErrorCode::BadRequest,
            "WebSocket protocol violation",
        )),
        _ => None,
    }
}
