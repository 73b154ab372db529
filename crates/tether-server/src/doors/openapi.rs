//! Schema-only twins, for `/openapi.json`, of the few types the doors take
//! from crates that have no schema derive (the store's history
//! [`Direction`](tether_store::Direction)). Like `tether_protocol::openapi`,
//! never built; `tests/openapi.rs` checks they accept what the originals do.

use serde::Deserialize;
use utoipa::ToSchema;

/// Which way a history page goes.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Direction {
    /// Oldest first.
    Forwards,
    /// Newest first (the default, like a chat scrolling up).
    Backwards,
}
