//! Tether's pure core: everything that can be decided without I/O.
//!
//! # Layout
//! - [`serial`]: fixed-width, string-sortable log positions with an epoch.
//! - [`capability`]: what a credential may do on which channels.
//! - [`channel`]: validated channel names and their namespaces.
//! - [`message`]: the mutable message model and the operations on it.
//! - [`fold`]: applying operations (server side) and folding events into the
//!   current messages (client side), shared so they cannot drift apart.
//! - [`position`]: whether a resume position can be served exactly.
//! - [`rate`]: the token bucket behind per-connection rate limits.
//! - [`settings`]: per-namespace retention, limits and mutability.
//! - [`conventions`]: the cancel and handoff message conventions.
//! - [`error`]: the stable error codes every front door and SDK uses.
//!
//! Nothing here touches a socket, a file or a clock: callers pass time in.

#![warn(missing_docs, unreachable_pub)]

pub mod capability;
pub mod channel;
pub mod conventions;
pub mod error;
pub mod fold;
pub mod message;
pub mod position;
pub mod rate;
pub mod serial;
pub mod settings;

pub use capability::{Capabilities, Grant};
pub use channel::{ChannelName, InvalidChannelName};
pub use error::{ErrorCode, ErrorInfo};
pub use fold::{Applied, FoldError, FoldLimits, Stamp, View, apply, apply_in_place};
pub use message::{Action, AppendOp, DeleteOp, Message, NewMessage, Operation, UpdateOp, Version};
pub use position::{ContinuityLost, LogBounds, ORIGIN, check_resume};
pub use serial::{InvalidSerial, Serial};
pub use settings::{NamespaceSettings, Namespaces};
