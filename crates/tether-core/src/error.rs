//! Stable error codes shared by every front door (WebSocket, SSE, REST) and
//! the SDKs.
//!
//! A code never changes meaning once released; `docs/errors.md` lists them.
//! The first three digits are the HTTP status the REST API answers with, so
//! a client can act on the class without knowing every code.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Every error a client can be told about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorCode {
    /// The frame or body is not valid JSON or misses required fields.
    BadRequest,
    /// A WebSocket frame names an unknown `type`.
    UnknownFrameType,
    /// The channel name is not valid.
    InvalidChannelName,
    /// The serial or position is not a valid serial.
    InvalidSerial,
    /// An append targets a message whose data is not a string.
    AppendTypeMismatch,
    /// A mutation (append/update/delete) on a namespace that forbids it.
    MutationNotAllowed,
    /// An operation on a channel the connection has not attached.
    NotAttached,
    /// The message id is too long or has invalid characters.
    InvalidMessageId,
    /// A request parameter is out of range (limit, rewind, time bounds).
    InvalidParameter,
    /// The credential is missing or invalid.
    Unauthorized,
    /// The token has expired; renew it (an `auth` frame on a live
    /// connection) and resume.
    TokenExpired,
    /// The token's `nbf` (not before) is in the future.
    TokenNotYetValid,
    /// The credential is valid but lacks the capability.
    Forbidden,
    /// No message with that serial exists on the channel.
    MessageNotFound,
    /// No such route.
    NotFound,
    /// The message was deleted; it cannot be appended to or updated.
    MessageDeleted,
    /// The streamed response has ended (complete, cancelled or error): it
    /// takes no more appends and its status cannot change again.
    StreamEnded,
    /// The resume position cannot be served: it is older than retention,
    /// from another epoch of the log, or unknown. The client gets the
    /// current state instead and must treat its local view as stale.
    ContinuityLost,
    /// A connection resume named an unknown or expired connection; the
    /// client continues on a new connection and re-attaches by serial.
    ResumeFailed,
    /// A message (after folding appends) exceeds the namespace's size limit.
    MessageTooLarge,
    /// A WebSocket frame or HTTP body exceeds the size limit.
    FrameTooLarge,
    /// The connection tried to attach more channels than allowed.
    TooManyChannels,
    /// The client sent too many requests.
    RateLimited,
    /// The server, or the key, has as many connections as allowed.
    TooManyConnections,
    /// The channel has as many presence members as allowed.
    TooManyMembers,
    /// The client did not read its socket fast enough; it was disconnected
    /// and should resume from its last position.
    TooSlow,
    /// Nothing was received from the client within the idle timeout.
    IdleTimeout,
    /// A WebSocket opened without a credential did not send its `auth`
    /// frame within the auth deadline.
    AuthTimeout,
    /// An HTTP request's headers or body did not arrive within the read
    /// timeout.
    RequestTimeout,
    /// Presence data (enter/update) exceeds its size limit.
    PresenceDataTooLarge,
    /// The connection changed presence more often than its presence rate
    /// limit allows.
    PresenceRateLimited,
    /// The credential already runs as many LLM bridge jobs as allowed.
    TooManyJobs,
    /// The disk is full: writes are refused (nothing was applied), reads
    /// are served, and writing resumes by itself once space is back.
    InsufficientStorage,
    /// An unexpected server-side failure; the operation was not applied.
    Internal,
    /// The storage layer failed; the operation was not acknowledged.
    StorageUnavailable,
    /// The server is shutting down; reconnect (possibly elsewhere) and resume.
    ShuttingDown,
}

impl ErrorCode {
    /// Every code, for documentation and exhaustive tests.
    pub const ALL: [ErrorCode; 36] = [
        ErrorCode::BadRequest,
        ErrorCode::UnknownFrameType,
        ErrorCode::InvalidChannelName,
        ErrorCode::InvalidSerial,
        ErrorCode::AppendTypeMismatch,
        ErrorCode::MutationNotAllowed,
        ErrorCode::NotAttached,
        ErrorCode::InvalidMessageId,
        ErrorCode::InvalidParameter,
        ErrorCode::Unauthorized,
        ErrorCode::TokenExpired,
        ErrorCode::Forbidden,
        ErrorCode::MessageNotFound,
        ErrorCode::NotFound,
        ErrorCode::MessageDeleted,
        ErrorCode::StreamEnded,
        ErrorCode::ContinuityLost,
        ErrorCode::ResumeFailed,
        ErrorCode::MessageTooLarge,
        ErrorCode::FrameTooLarge,
        ErrorCode::TooManyChannels,
        ErrorCode::RateLimited,
        ErrorCode::TooManyConnections,
        ErrorCode::TooManyMembers,
        ErrorCode::TooSlow,
        ErrorCode::IdleTimeout,
        ErrorCode::Internal,
        ErrorCode::StorageUnavailable,
        ErrorCode::ShuttingDown,
        ErrorCode::TokenNotYetValid,
        ErrorCode::AuthTimeout,
        ErrorCode::RequestTimeout,
        ErrorCode::PresenceDataTooLarge,
        ErrorCode::PresenceRateLimited,
        ErrorCode::TooManyJobs,
        ErrorCode::InsufficientStorage,
    ];

    /// The stable numeric code.
    pub fn code(self) -> u32 {
        match self {
            ErrorCode::BadRequest => 40000,
            ErrorCode::UnknownFrameType => 40001,
            ErrorCode::InvalidChannelName => 40002,
            ErrorCode::InvalidSerial => 40003,
            ErrorCode::AppendTypeMismatch => 40004,
            ErrorCode::MutationNotAllowed => 40005,
            ErrorCode::NotAttached => 40006,
            ErrorCode::InvalidMessageId => 40007,
            ErrorCode::InvalidParameter => 40008,
            ErrorCode::Unauthorized => 40100,
            ErrorCode::TokenExpired => 40101,
            ErrorCode::Forbidden => 40300,
            ErrorCode::MessageNotFound => 40400,
            ErrorCode::NotFound => 40401,
            ErrorCode::MessageDeleted => 40900,
            ErrorCode::StreamEnded => 40901,
            ErrorCode::ContinuityLost => 41000,
            ErrorCode::ResumeFailed => 41001,
            ErrorCode::MessageTooLarge => 41300,
            ErrorCode::FrameTooLarge => 41301,
            ErrorCode::TooManyChannels => 42900,
            ErrorCode::RateLimited => 42901,
            ErrorCode::TooSlow => 42902,
            ErrorCode::TooManyConnections => 42903,
            ErrorCode::TooManyMembers => 42904,
            ErrorCode::IdleTimeout => 40800,
            ErrorCode::Internal => 50000,
            ErrorCode::StorageUnavailable => 50300,
            ErrorCode::ShuttingDown => 50301,
            ErrorCode::TokenNotYetValid => 40102,
            ErrorCode::AuthTimeout => 40801,
            ErrorCode::RequestTimeout => 40802,
            ErrorCode::PresenceDataTooLarge => 41302,
            ErrorCode::PresenceRateLimited => 42905,
            ErrorCode::TooManyJobs => 42906,
            ErrorCode::InsufficientStorage => 50700,
        }
    }

    /// The HTTP status REST answers with: the code's first three digits.
    pub fn http_status(self) -> u16 {
        (self.code() / 100) as u16
    }

    /// The code for a number, if it is one of ours.
    pub fn from_code(code: u32) -> Option<ErrorCode> {
        ErrorCode::ALL.into_iter().find(|c| c.code() == code)
    }

    /// The WebSocket close code used when this error ends a connection.
    /// Each code that can end a connection has its own close code in the
    /// 4000-4999 range reserved for applications, so an SDK can decide
    /// (resume, renew credentials, give up) from the close code alone.
    pub fn close_code(self) -> u16 {
        match self {
            ErrorCode::ShuttingDown => 4001,
            ErrorCode::IdleTimeout => 4002,
            ErrorCode::Unauthorized => 4003,
            ErrorCode::Forbidden => 4004,
            ErrorCode::TokenExpired => 4005,
            ErrorCode::AuthTimeout => 4006,
            ErrorCode::TokenNotYetValid => 4007,
            ErrorCode::ResumeFailed => 4010,
            ErrorCode::TooSlow => 4008,
            ErrorCode::FrameTooLarge => 4009,
            ErrorCode::RateLimited => 4029,
            ErrorCode::TooManyChannels => 4030,
            ErrorCode::StorageUnavailable => 4503,
            ErrorCode::Internal => 4500,
            _ => 4000,
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.code())
    }
}

/// An error as a client sees it: a stable code plus a human message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[error("{message} (code {code})")]
pub struct ErrorInfo {
    /// The numeric code from [`ErrorCode::code`].
    pub code: u32,
    /// What went wrong, for people; never parsed by programs.
    pub message: String,
}

impl ErrorInfo {
    /// An error with `code` and a human explanation.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ErrorInfo {
        ErrorInfo {
            code: code.code(),
            message: message.into(),
        }
    }

    /// The typed code, if this server knows it.
    pub fn kind(&self) -> Option<ErrorCode> {
        ErrorCode::from_code(self.code)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn codes_are_unique_and_map_back() {
        let mut seen = HashSet::new();
        for c in ErrorCode::ALL {
            assert!(seen.insert(c.code()), "duplicate code {c}");
            assert_eq!(ErrorCode::from_code(c.code()), Some(c));
            assert!((400..600).contains(&c.http_status()));
            assert!((4000..5000).contains(&c.close_code()));
        }
    }
}
