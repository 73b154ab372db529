//! Writing a WebSocket connection's session to disk as it changes, so a
//! `resume` finds it after a restart (the record itself is
//! [`crate::sessions`]' business).

use std::hash::{Hash, Hasher};
use std::sync::atomic::Ordering;

use super::Connection;
use crate::sessions::SessionRecord;

impl Connection {
    /// Writes this connection's session as it stands, so it can be resumed
    /// after a restart. Only authenticated connections can be resumed.
    pub(super) fn save_session(&self) {
        self.write_session(true);
    }

    /// Writes the session if it changed since the last write (positions
    /// move with deliveries): run every heartbeat, so after a crash the
    /// positions on disk are at most a heartbeat behind.
    pub(super) fn refresh_session(&self) {
        self.write_session(false);
    }

    fn write_session(&self, always: bool) {
        let Some(principal) = &self.principal else {
            return;
        };
        let starts = self.starts.lock().map(|s| s.clone()).unwrap_or_default();
        let mut record = SessionRecord::new(
            &self.resume_key,
            &principal.key,
            self.identity.client_id.as_deref(),
            &starts,
            &self.presence,
            None,
            0,
        );
        let fingerprint = {
            let mut hasher = std::collections::hash_map::DefaultHasher::new();
            record.encode().hash(&mut hasher);
            self.connection_id.hash(&mut hasher);
            hasher.finish()
        };
        if !always && self.saved.load(Ordering::Relaxed) == fingerprint {
            return;
        }
        record.written_at = super::now_ms();
        self.app.sessions.save(&self.connection_id, &record);
        self.saved.store(fingerprint, Ordering::Relaxed);
    }
}
