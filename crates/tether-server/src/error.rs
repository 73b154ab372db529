//! Errors as HTTP responses, for every door that answers over HTTP (REST,
//! SSE, the WebSocket upgrade, the LLM bridge): one body shape and one
//! status per error code.

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use tether_core::{ErrorCode, ErrorInfo};
use tether_protocol::wording;

use crate::engine::EngineError;
use crate::protocol::ErrorBody;

/// An error as an HTTP response: `{"error": {"code", "message"}}` with the
/// status the code implies.
#[derive(Debug)]
pub(crate) struct ApiError(pub ErrorInfo);

impl From<ErrorInfo> for ApiError {
    fn from(err: ErrorInfo) -> ApiError {
        ApiError(err)
    }
}

/// Tether's HTTP doors answer an engine refusal with its Tether code.
impl From<EngineError> for ApiError {
    fn from(err: EngineError) -> ApiError {
        ApiError(err.into())
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> ApiError {
        let code = if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ErrorCode::FrameTooLarge
        } else {
            ErrorCode::BadRequest
        };
        ApiError(ErrorInfo::new(
            code,
            wording::rejection(&rejection.body_text()),
        ))
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> ApiError {
        ApiError(ErrorInfo::new(
            ErrorCode::InvalidParameter,
            wording::rejection(&rejection.body_text()),
        ))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = ErrorCode::from_code(self.0.code)
            .and_then(|c| StatusCode::from_u16(c.http_status()).ok())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, Json(ErrorBody { error: self.0 })).into_response()
    }
}
