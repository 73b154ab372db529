//! Connection limits: a server-wide cap and a per-key cap, enforced when a
//! WebSocket or SSE connection opens and released when it closes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tether_core::{ErrorCode, ErrorInfo};

/// Counts open connections.
pub struct ConnectionSlots {
    max_total: usize,
    max_per_key: usize,
    /// A std mutex: held for a counter update, never across an await.
    counts: Mutex<Counts>,
}

#[derive(Default)]
struct Counts {
    total: usize,
    per_key: HashMap<String, usize>,
}

/// An open connection's slot; freed on drop.
pub struct Slot {
    slots: Arc<ConnectionSlots>,
    key: String,
}

impl ConnectionSlots {
    /// Caps of `max_total` connections, `max_per_key` per key.
    pub fn new(max_total: usize, max_per_key: usize) -> ConnectionSlots {
        ConnectionSlots {
            max_total,
            max_per_key,
            counts: Mutex::new(Counts::default()),
        }
    }

    /// Takes a slot for a connection of `key`, or says which cap is full.
    pub fn acquire(self: &Arc<Self>, key: &str) -> Result<Slot, ErrorInfo> {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        if counts.total >= self.max_total {
            return Err(ErrorInfo::new(
                ErrorCode::TooManyConnections,
                format!(
                    "the server has its maximum of {} connections",
                    self.max_total
                ),
            ));
        }
        let for_key = counts.per_key.get(key).copied().unwrap_or(0);
        if for_key >= self.max_per_key {
            return Err(ErrorInfo::new(
                ErrorCode::TooManyConnections,
                format!(
                    "key {key} has its maximum of {} connections",
                    self.max_per_key
                ),
            ));
        }
        counts.total += 1;
        counts.per_key.insert(key.to_owned(), for_key + 1);
        Ok(Slot {
            slots: self.clone(),
            key: key.to_owned(),
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut counts = self.slots.counts.lock().unwrap_or_else(|p| p.into_inner());
        counts.total = counts.total.saturating_sub(1);
        if let Some(n) = counts.per_key.get_mut(&self.key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                counts.per_key.remove(&self.key);
            }
        }
    }
}
