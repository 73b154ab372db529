//! Why the engine refused or could not finish something, as a type.
//!
//! Front doors decide what a refusal looks like on their wire: Tether's
//! own doors send [`EngineError::code`] and the message (through
//! `From<EngineError> for ErrorInfo`); another protocol's door (Durable
//! Streams, Ably) matches on the variants and picks its own status or
//! code, instead of translating Tether's numbers back into meaning.

use tether_core::capability::Operation as Capability;
use tether_core::conventions::Denied;
use tether_core::fold::FoldError;
use tether_core::{ChannelName, ContinuityLost, ErrorCode, ErrorInfo, Serial};
use tether_store::StoreError;

/// A refusal or failure of an engine call. Nothing was applied when one is
/// returned for a mutation, except [`EngineError::Store`] with code
/// `ShuttingDown`, where the outcome is whatever the log says.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// The caller's capabilities do not cover `operation` on `channel`.
    #[error("your credential does not grant {operation} on {channel}")]
    Forbidden {
        /// The channel the caller tried to reach.
        channel: ChannelName,
        /// The capability the operation needs (`publish`, `update`, ...).
        operation: Capability,
    },
    /// A convention (cancel, handoff) does not let this caller do it.
    #[error(transparent)]
    ConventionDenied(#[from] Denied),
    /// The credential's rate budget does not hold the operations; retry
    /// later. The message says which limit.
    #[error("{0}")]
    RateLimited(String),
    /// A message (ephemeral or stored) is over the namespace's size limit.
    #[error("message of {size} bytes is over the limit of {limit}")]
    MessageTooLarge {
        /// The message's size in bytes.
        size: usize,
        /// The namespace's limit.
        limit: usize,
    },
    /// A client-chosen message id is not 1-128 printable ASCII characters.
    #[error("message id must be 1-128 printable ASCII characters")]
    InvalidMessageId,
    /// No message with this serial on the channel.
    #[error("no message with serial {0} on this channel")]
    MessageNotFound(Serial),
    /// The channel already has its maximum of presence members.
    #[error("{channel} has its maximum of {limit} presence members")]
    TooManyMembers {
        /// The channel.
        channel: ChannelName,
        /// `max_presence_members`.
        limit: usize,
    },
    /// The folding rules refused the operation (not mutable, already
    /// ended, not the owner, ...); nothing was written.
    #[error(transparent)]
    Refused(FoldError),
    /// A resume position cannot be served exactly.
    #[error(transparent)]
    ContinuityLost(#[from] ContinuityLost),
    /// The server is shutting down, or a subscription ended with it.
    #[error("{0}")]
    ShuttingDown(&'static str),
    /// The store failed or refused for its own reasons (disk full,
    /// storage failure). The message is safe to show a client; internal
    /// details were logged.
    #[error("{message}")]
    Store {
        /// The stable code of the failure.
        code: ErrorCode,
        /// What a client is told.
        message: String,
    },
}

impl EngineError {
    /// The stable Tether error code (`docs/errors.md`) of this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            EngineError::Forbidden { .. } | EngineError::ConventionDenied(_) => {
                ErrorCode::Forbidden
            }
            EngineError::RateLimited(_) => ErrorCode::RateLimited,
            EngineError::MessageTooLarge { .. } => ErrorCode::MessageTooLarge,
            EngineError::InvalidMessageId => ErrorCode::InvalidMessageId,
            EngineError::MessageNotFound(_) => ErrorCode::MessageNotFound,
            EngineError::TooManyMembers { .. } => ErrorCode::TooManyMembers,
            EngineError::Refused(fold) => fold.code(),
            EngineError::ContinuityLost(_) => ErrorCode::ContinuityLost,
            EngineError::ShuttingDown(_) => ErrorCode::ShuttingDown,
            EngineError::Store { code, .. } => *code,
        }
    }
}

/// Tether's own doors send the code and the message.
impl From<EngineError> for ErrorInfo {
    fn from(err: EngineError) -> ErrorInfo {
        ErrorInfo::new(err.code(), err.to_string())
    }
}

/// A store failure as a client sees it. Internal details of storage
/// failures are logged here, once, and not sent.
impl From<StoreError> for EngineError {
    fn from(err: StoreError) -> EngineError {
        match err {
            StoreError::Rejected(fold) => EngineError::Refused(fold),
            StoreError::ContinuityLost(lost) => EngineError::ContinuityLost(lost),
            other => {
                let code = other.code();
                let message = match code {
                    ErrorCode::StorageUnavailable | ErrorCode::Internal => {
                        tracing::error!(error = %other, "store failure");
                        "the storage layer failed; the operation was not applied".to_owned()
                    }
                    // The details (paths, byte counts) are logged by the
                    // store, once.
                    ErrorCode::InsufficientStorage => {
                        "the server's disk is full: the write was refused; retry later".to_owned()
                    }
                    _ => other.to_string(),
                };
                EngineError::Store { code, message }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_messages_reach_the_wire_unchanged() {
        let forbidden = EngineError::Forbidden {
            channel: ChannelName::new("chat:a").expect("name"),
            operation: Capability::Publish,
        };
        let info = ErrorInfo::from(forbidden);
        assert_eq!(info.kind(), Some(ErrorCode::Forbidden));
        assert_eq!(
            info.message,
            "your credential does not grant publish on chat:a"
        );
        let closed = EngineError::from(StoreError::Closed);
        assert_eq!(closed.code(), ErrorCode::ShuttingDown);
        let full = EngineError::from(StoreError::InsufficientStorage("/data: 3 bytes".into()));
        assert_eq!(full.code(), ErrorCode::InsufficientStorage);
        assert!(
            !full.to_string().contains("/data"),
            "no paths reach clients"
        );
        let failed = EngineError::from(StoreError::Storage("io: secret detail".into()));
        assert_eq!(failed.code(), ErrorCode::StorageUnavailable);
        assert!(!failed.to_string().contains("secret"));
    }

    #[test]
    fn fold_refusals_keep_their_own_codes() {
        let lost = EngineError::from(StoreError::ContinuityLost(ContinuityLost::Unknown));
        assert_eq!(lost.code(), ErrorCode::ContinuityLost);
        assert!(matches!(
            lost,
            EngineError::ContinuityLost(ContinuityLost::Unknown)
        ));
    }
}
