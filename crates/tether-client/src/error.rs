//! The one error type of the SDK.
//!
//! Server refusals keep the server's [`ErrorInfo`] (stable numeric code plus
//! message) so an application can act on the code; transport problems say
//! which address could not be reached and why, in one line.

use tether_core::{ErrorCode, ErrorInfo, InvalidChannelName};

/// Everything that can go wrong when talking to Tether.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The URL given to [`crate::Client::connect`] or [`crate::Rest::new`]
    /// cannot be used.
    #[error("invalid URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The server could not be reached (refused, DNS, timeout, handshake).
    #[error("cannot connect to {url}: {reason}")]
    Connect {
        /// The address tried.
        url: String,
        /// The underlying cause, one line.
        reason: String,
    },
    /// The server refused the request; `code` is stable (see docs/errors.md).
    #[error("error {}: {}", .0.code, .0.message)]
    Server(ErrorInfo),
    /// A channel name the server would refuse; checked before sending.
    #[error(transparent)]
    InvalidChannel(#[from] InvalidChannelName),
    /// An argument the SDK can reject without asking the server.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// Too many operations are waiting for their acknowledgement (usually
    /// because the connection has been down for a while).
    #[error("{limit} operations are already waiting to be acknowledged")]
    Backlog {
        /// [`crate::ClientOptions::max_pending`].
        limit: usize,
    },
    /// An HTTP request failed without a Tether error body (a proxy error
    /// page, a dropped connection mid-response...).
    #[error("HTTP request to {url} failed: {reason}")]
    Http {
        /// The request URL.
        url: String,
        /// Status or transport failure, one line.
        reason: String,
    },
    /// The connection dropped after the operation was sent and before its
    /// reply, and could not be resumed (the server forgot the connection:
    /// too long away, or it was closed cleanly), so whether the server
    /// applied it is unknown. Publishes are never reported so (their id
    /// makes a re-send safe); appends, updates, deletes and ephemeral
    /// publishes can be. Check the message (or history) before retrying.
    #[error(
        "the connection dropped before the reply to this {operation} and could not be resumed ({reason}); it may or may not have been applied"
    )]
    OutcomeUnknown {
        /// `append`, `update`, `delete` or `ephemeral publish`.
        operation: &'static str,
        /// Why there is no answer, one line.
        reason: String,
    },
    /// [`crate::ClientOptions::auth_callback`] gave no token.
    #[error("the auth callback failed: {0}")]
    Auth(String),
    /// The server sent something this SDK does not understand.
    #[error("unexpected reply from the server: {0}")]
    Protocol(String),
    /// The client was closed (or all its handles dropped) before the
    /// operation finished.
    #[error("the client is closed")]
    Closed,
}

impl Error {
    /// The server's error, when the server refused the request.
    pub fn info(&self) -> Option<&ErrorInfo> {
        match self {
            Error::Server(info) => Some(info),
            _ => None,
        }
    }

    /// The server's typed error code, when the server refused the request
    /// with a code this SDK knows.
    pub fn code(&self) -> Option<ErrorCode> {
        self.info().and_then(ErrorInfo::kind)
    }
}

/// The innermost cause of an error chain, which is what a person needs to
/// read ("Connection refused (os error 111)"), not the wrappers around it.
pub(crate) fn root_cause(err: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = err;
    while let Some(source) = cause.source() {
        cause = source;
    }
    cause.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_errors_show_code_and_message() {
        let err = Error::Server(ErrorInfo::new(ErrorCode::MessageNotFound, "no message"));
        assert_eq!(err.to_string(), "error 40400: no message");
        assert_eq!(err.code(), Some(ErrorCode::MessageNotFound));
        assert_eq!(Error::Closed.code(), None);
    }

    #[test]
    fn root_cause_is_the_innermost() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let outer = std::io::Error::other(io);
        assert_eq!(root_cause(&outer), "refused");
    }
}
