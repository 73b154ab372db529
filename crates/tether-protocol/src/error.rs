//! The error body of a failed HTTP request. The same [`ErrorInfo`] (code
//! and human message) is the `error` field of WebSocket frames and the data
//! of the SSE `error` event, so every transport reports errors alike.

use serde::{Deserialize, Serialize};
use tether_core::ErrorInfo;

/// `{"error": {"code", "message"}}`: what every failed REST request
/// answers, with the HTTP status the code's first three digits name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorInfo,
}

impl From<ErrorInfo> for ErrorBody {
    fn from(error: ErrorInfo) -> ErrorBody {
        ErrorBody { error }
    }
}
