//! Connection limits: a server-wide cap, a per-key cap, and a separate cap
//! on WebSockets still waiting for their `auth` frame. Enforced when a
//! WebSocket or SSE connection opens and released when it closes.
//!
//! Unauthenticated sockets are counted apart from every key: they must not
//! lock out a key's browsers (which use the first-frame `auth` flow) nor let
//! a key exceed its cap by connecting without a credential. A socket is
//! charged to its key when it authenticates ([`Slot::charge`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tether_core::{ErrorCode, ErrorInfo};

/// Counts open connections.
pub(crate) struct ConnectionSlots {
    max_total: usize,
    max_per_key: usize,
    max_unauthenticated: usize,
    /// A std mutex: held for a counter update, never across an await.
    counts: Mutex<Counts>,
}

#[derive(Default)]
struct Counts {
    total: usize,
    unauthenticated: usize,
    per_key: HashMap<String, usize>,
}

/// An open connection's slot; freed on drop.
pub(crate) struct Slot {
    slots: Arc<ConnectionSlots>,
    /// The key charged, or `None` while the connection is unauthenticated.
    key: Option<String>,
}

impl ConnectionSlots {
    /// Caps of `max_total` connections, `max_per_key` per key and
    /// `max_unauthenticated` waiting to authenticate.
    pub(crate) fn new(
        max_total: usize,
        max_per_key: usize,
        max_unauthenticated: usize,
    ) -> ConnectionSlots {
        ConnectionSlots {
            max_total,
            max_per_key,
            max_unauthenticated,
            counts: Mutex::new(Counts::default()),
        }
    }

    /// Takes a slot for a connection of `key`, or says which cap is full.
    pub(crate) fn acquire(self: &Arc<Self>, key: &str) -> Result<Slot, ErrorInfo> {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        self.check_total(&counts)?;
        self.take_key(&mut counts, key)?;
        counts.total += 1;
        Ok(Slot {
            slots: self.clone(),
            key: Some(key.to_owned()),
        })
    }

    /// Takes a slot for a WebSocket that will authenticate with its first
    /// frame; it counts against the server cap and the unauthenticated cap,
    /// not against any key.
    pub(crate) fn acquire_unauthenticated(self: &Arc<Self>) -> Result<Slot, ErrorInfo> {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        self.check_total(&counts)?;
        if counts.unauthenticated >= self.max_unauthenticated {
            return Err(ErrorInfo::new(
                ErrorCode::TooManyConnections,
                format!(
                    "the server has its maximum of {} connections waiting to authenticate",
                    self.max_unauthenticated
                ),
            ));
        }
        counts.total += 1;
        counts.unauthenticated += 1;
        Ok(Slot {
            slots: self.clone(),
            key: None,
        })
    }

    fn check_total(&self, counts: &Counts) -> Result<(), ErrorInfo> {
        if counts.total >= self.max_total {
            return Err(ErrorInfo::new(
                ErrorCode::TooManyConnections,
                format!(
                    "the server has its maximum of {} connections",
                    self.max_total
                ),
            ));
        }
        Ok(())
    }

    /// Charges one connection to `key`, if it has room.
    fn take_key(&self, counts: &mut Counts, key: &str) -> Result<(), ErrorInfo> {
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
        counts.per_key.insert(key.to_owned(), for_key + 1);
        Ok(())
    }

    /// Releases what `key` (or the unauthenticated pool) was charged.
    fn release(counts: &mut Counts, key: Option<&str>) {
        match key {
            None => counts.unauthenticated = counts.unauthenticated.saturating_sub(1),
            Some(key) => {
                if let Some(n) = counts.per_key.get_mut(key) {
                    *n = n.saturating_sub(1);
                    if *n == 0 {
                        counts.per_key.remove(key);
                    }
                }
            }
        }
    }
}

impl Slot {
    /// Charges the connection to `key` once it has authenticated (or
    /// renewed with a credential of another key), releasing what it was
    /// counted under before. Refused with `42903`, changing nothing, when
    /// the key has no room.
    pub(crate) fn charge(&mut self, key: &str) -> Result<(), ErrorInfo> {
        if self.key.as_deref() == Some(key) {
            return Ok(());
        }
        let slots = self.slots.clone();
        let mut counts = slots.counts.lock().unwrap_or_else(|p| p.into_inner());
        slots.take_key(&mut counts, key)?;
        ConnectionSlots::release(&mut counts, self.key.as_deref());
        self.key = Some(key.to_owned());
        Ok(())
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut counts = self.slots.counts.lock().unwrap_or_else(|p| p.into_inner());
        counts.total = counts.total.saturating_sub(1);
        ConnectionSlots::release(&mut counts, self.key.as_deref());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(slots: &ConnectionSlots) -> (usize, usize, Option<usize>) {
        let c = slots.counts.lock().unwrap_or_else(|p| p.into_inner());
        (c.total, c.unauthenticated, c.per_key.get("k").copied())
    }

    #[test]
    fn unauthenticated_slots_move_to_their_key_or_stay_put() {
        let slots = Arc::new(ConnectionSlots::new(10, 1, 2));
        let mut waiting = slots.acquire_unauthenticated().expect("room");
        let _other = slots.acquire_unauthenticated().expect("room");
        let full = slots.acquire_unauthenticated().err().map(|e| e.code);
        assert_eq!(full, Some(ErrorCode::TooManyConnections.code()));
        assert_eq!(counts(&slots), (2, 2, None));

        waiting.charge("k").expect("the key has room");
        assert_eq!(counts(&slots), (2, 1, Some(1)));
        // Charging the same key again is free.
        waiting.charge("k").expect("already charged");
        assert_eq!(counts(&slots), (2, 1, Some(1)));

        // A full key refuses, and nothing changes.
        let mut late = slots.acquire_unauthenticated().expect("room again");
        let refused = late.charge("k").err().map(|e| e.code);
        assert_eq!(refused, Some(ErrorCode::TooManyConnections.code()));
        assert_eq!(counts(&slots), (3, 2, Some(1)));

        drop(waiting);
        drop(late);
        assert_eq!(counts(&slots), (1, 1, None));
    }
}
