//! The error body of a failed HTTP request. The same [`ErrorInfo`] (code
//! and human message) is the `error` field of WebSocket frames and the data
//! of the SSE `error` event, so every transport reports errors alike.

use serde::{Deserialize, Serialize};
use tether_core::ErrorInfo;

/// `{"error": {"code", "message"}}`: what every failed REST request
/// answers, with the HTTP status the code's first three digits name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    /// The error.
    #[cfg_attr(feature = "openapi", schema(value_type = crate::openapi::ErrorInfo))]
    pub error: ErrorInfo,
}

impl From<ErrorInfo> for ErrorBody {
    fn from(error: ErrorInfo) -> ErrorBody {
        ErrorBody { error }
    }
}
