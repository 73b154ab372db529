//! Connection sessions on disk, so a `resume` works across a restart.
//!
//! What is kept and when (the design is in ARCHITECTURE.md, "exactly-once
//! across restarts"):
//! - the session record ([`SessionRecord`]): identity, resume key,
//!   attachments with their options and last known positions, presence
//!   data. Written when the connection is established (before it submits
//!   anything), when it attaches, detaches or changes presence, when it
//!   resumes and when it parks; deleted when it closes cleanly or its TTL
//!   passes.
//! - the outcomes of its sequenced operations, which the store's writer
//!   records in the same batch as each operation; they are read back here
//!   to rebuild [`Dedupe`].
//!
//! Positions move with every delivery and are not written each time: a
//! record's positions are exact but may be behind, which on resume replays
//! events the client already holds (absorbed by the folding rule) and never
//! skips any. SDKs send their own positions anyway.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tether_core::{ChannelName, Serial};
use tether_store::SeqOutcome;

use super::{Dedupe, SessionState};
use crate::engine::Start;

/// A session as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct SessionRecord {
    /// The secret a resume must present.
    pub resume_key: String,
    /// The credential's key name.
    pub key: String,
    /// The identity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// Attached channels and how each starts again.
    #[serde(default)]
    pub attachments: Vec<AttachmentRecord>,
    /// Channels the connection is present on, with its member data.
    #[serde(default)]
    pub presence: Vec<(ChannelName, Value)>,
    /// When the connection was parked (its socket went away, or the server
    /// shut down); `None` while it was live.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parked_at: Option<u64>,
    /// When this record was written (ms since the Unix epoch).
    pub written_at: u64,
}

/// One attachment as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct AttachmentRecord {
    /// The channel.
    pub channel: ChannelName,
    /// The last exact position sent (as of the write), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<Serial>,
    /// The attach's `rewind`.
    #[serde(default)]
    pub rewind: usize,
    /// Whether presence is delivered.
    #[serde(default)]
    pub presence: bool,
}

impl SessionRecord {
    /// The record of a connection's current state.
    pub(crate) fn new(
        resume_key: &str,
        key: &str,
        client_id: Option<&str>,
        attachments: &HashMap<ChannelName, Start>,
        presence: &HashMap<ChannelName, Value>,
        parked_at: Option<u64>,
        now_ms: u64,
    ) -> SessionRecord {
        let mut attachments: Vec<AttachmentRecord> = attachments
            .iter()
            .map(|(channel, start)| AttachmentRecord {
                channel: channel.clone(),
                from: start.from,
                rewind: start.rewind,
                presence: start.presence,
            })
            .collect();
        attachments.sort_by(|a, b| a.channel.cmp(&b.channel));
        let mut presence: Vec<(ChannelName, Value)> = presence
            .iter()
            .map(|(c, d)| (c.clone(), d.clone()))
            .collect();
        presence.sort_by(|a, b| a.0.cmp(&b.0));
        SessionRecord {
            resume_key: resume_key.to_owned(),
            key: key.to_owned(),
            client_id: client_id.map(str::to_owned),
            attachments,
            presence,
            parked_at,
            written_at: now_ms,
        }
    }

    /// The record of a parked (or parking) session.
    pub(crate) fn of_state(
        state: &SessionState,
        parked_at: Option<u64>,
        now_ms: u64,
    ) -> SessionRecord {
        SessionRecord::new(
            &state.resume_key,
            &state.key,
            state.client_id.as_deref(),
            &state.attachments,
            &state.presence,
            parked_at,
            now_ms,
        )
    }

    /// When the connection can have dropped at the latest: when it parked,
    /// or, for one that was live when the server died, the last moment that
    /// server was known alive (or this record's write, if later).
    pub(crate) fn dropped_at(&self, previous_alive: Option<u64>) -> u64 {
        self.parked_at
            .unwrap_or_else(|| self.written_at.max(previous_alive.unwrap_or(0)))
    }

    /// The session this record describes, with its exactly-once state
    /// rebuilt from the recorded outcomes.
    pub(crate) fn into_state(
        self,
        connection_id: &str,
        outcomes: Vec<(u64, SeqOutcome)>,
    ) -> SessionState {
        SessionState {
            connection_id: connection_id.to_owned(),
            resume_key: self.resume_key,
            key: self.key,
            client_id: self.client_id,
            presence: self.presence.into_iter().collect(),
            attachments: self
                .attachments
                .into_iter()
                .map(|a| {
                    let start = Start {
                        from: a.from,
                        rewind: a.rewind,
                        presence: a.presence,
                    };
                    (a.channel, start)
                })
                .collect(),
            dedupe: Arc::new(Mutex::new(Dedupe::restore(outcomes))),
        }
    }

    /// JSON bytes.
    pub(crate) fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Parses stored bytes; `None` when they are not a session record.
    pub(crate) fn decode(bytes: &[u8]) -> Option<SessionRecord> {
        serde_json::from_slice(bytes).ok()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use tether_core::ErrorInfo;
    use tether_store::{Ack, SessionStore, StoreError};

    use super::*;
    use crate::sessions::{SeqCheck, Sessions};

    /// A [`SessionStore`] in memory.
    #[derive(Default)]
    struct Mem {
        sessions: Mutex<BTreeMap<String, Vec<u8>>>,
        outcomes: Mutex<BTreeMap<String, Vec<(u64, SeqOutcome)>>>,
        alive: Mutex<Option<u64>>,
    }

    impl SessionStore for Mem {
        fn put_session(&self, id: &str, record: &[u8]) -> Result<(), StoreError> {
            self.sessions
                .lock()
                .unwrap()
                .insert(id.into(), record.to_vec());
            Ok(())
        }
        fn session(&self, id: &str) -> Result<Option<Vec<u8>>, StoreError> {
            Ok(self.sessions.lock().unwrap().get(id).cloned())
        }
        fn sessions(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
            Ok(self.sessions.lock().unwrap().clone().into_iter().collect())
        }
        fn delete_session(&self, id: &str) -> Result<(), StoreError> {
            self.sessions.lock().unwrap().remove(id);
            self.outcomes.lock().unwrap().remove(id);
            Ok(())
        }
        fn outcomes(&self, id: &str) -> Result<Vec<(u64, SeqOutcome)>, StoreError> {
            Ok(self
                .outcomes
                .lock()
                .unwrap()
                .get(id)
                .cloned()
                .unwrap_or_default())
        }
        fn set_alive(&self, now_ms: u64) -> Result<(), StoreError> {
            *self.alive.lock().unwrap() = Some(now_ms);
            Ok(())
        }
        fn alive(&self) -> Result<Option<u64>, StoreError> {
            Ok(*self.alive.lock().unwrap())
        }
    }

    fn record(parked_at: Option<u64>, written_at: u64) -> SessionRecord {
        let mut presence = HashMap::new();
        presence.insert(
            ChannelName::new("room").unwrap(),
            serde_json::json!({"s": 1}),
        );
        let mut attachments = HashMap::new();
        attachments.insert(
            ChannelName::new("room").unwrap(),
            Start {
                from: Serial::new(1_764_151_200_000, 7),
                rewind: 5,
                presence: true,
            },
        );
        SessionRecord::new(
            "secret",
            "dev",
            Some("alice"),
            &attachments,
            &presence,
            parked_at,
            written_at,
        )
    }

    #[test]
    fn a_record_round_trips_and_knows_when_it_dropped() {
        let r = record(None, 1_000);
        let back = SessionRecord::decode(&r.encode()).unwrap();
        assert_eq!(back.attachments[0].from, Serial::new(1_764_151_200_000, 7));
        assert_eq!(back.attachments[0].rewind, 5);
        assert_eq!(back.presence[0].1["s"], 1);
        // Live when the server died: the later of its write and the last
        // alive time.
        assert_eq!(back.dropped_at(Some(5_000)), 5_000);
        assert_eq!(back.dropped_at(Some(500)), 1_000);
        assert_eq!(back.dropped_at(None), 1_000);
        assert_eq!(record(Some(2_000), 1_000).dropped_at(Some(9_000)), 2_000);
        assert!(SessionRecord::decode(b"not json").is_none());
    }

    #[test]
    fn the_sweep_deletes_only_expired_sessions_it_does_not_hold() {
        let now = crate::runtime::now_ms();
        let store = Arc::new(Mem::default());
        store.set_alive(now - 50_000).unwrap();
        let sessions = Sessions::new(Duration::from_secs(10), Duration::from_secs(1))
            .with_store(store.clone());
        let put = |id: &str, r: SessionRecord| store.put_session(id, &r.encode()).unwrap();
        put("c_old_parked", record(Some(now - 20_000), now - 30_000));
        put("c_fresh_parked", record(Some(now - 1_000), now - 30_000));
        put("c_died_long_ago", record(None, now - 60_000));
        put("c_died_recently", record(None, now - 2_000));
        store.put_session("c_garbage", b"{").unwrap();
        let _held = sessions.register("c_old_held", "k", "dev", None);
        put("c_old_held", record(None, now - 60_000));
        sessions.sweep();
        let left: Vec<String> = store.sessions().unwrap().into_iter().map(|s| s.0).collect();
        assert_eq!(left, ["c_died_recently", "c_fresh_parked", "c_old_held"]);
    }

    #[tokio::test]
    async fn a_session_on_disk_resumes_with_its_outcomes_once() {
        let now = crate::runtime::now_ms();
        let store = Arc::new(Mem::default());
        store
            .put_session("c_1", &record(Some(now), now).encode())
            .unwrap();
        let serial = Serial::new(1_764_151_200_000, 9).unwrap();
        let ack = Ack {
            serial,
            version_serial: serial,
            duplicate: false,
        };
        let refused = ErrorInfo::new(tether_core::ErrorCode::MessageNotFound, "no");
        store
            .outcomes
            .lock()
            .unwrap()
            .insert("c_1".into(), vec![(1, Ok(ack)), (2, Err(refused.clone()))]);
        let sessions = Arc::new(
            Sessions::new(Duration::from_secs(60), Duration::from_secs(1))
                .with_store(store.clone()),
        );
        let wrong = sessions.resume("c_1", "nope", "dev", Some("alice")).await;
        assert!(wrong.is_err());
        let (state, presence_left) = sessions
            .resume("c_1", "secret", "dev", Some("alice"))
            .await
            .unwrap();
        assert!(presence_left, "presence is re-entered after a restart");
        assert_eq!(state.connection_id, "c_1");
        assert_eq!(state.attachments.len(), 1);
        {
            let mut dedupe = state.dedupe.lock().unwrap();
            let SeqCheck::Repeat(first) = dedupe.check(1) else {
                panic!("seq 1 is a repeat")
            };
            assert_eq!(*first.borrow(), Some(Ok(ack)));
            let SeqCheck::Repeat(second) = dedupe.check(2) else {
                panic!("seq 2 is a repeat")
            };
            assert_eq!(*second.borrow(), Some(Err(refused)));
            assert!(matches!(dedupe.check(3), SeqCheck::New(_)));
        }
        // Claimed: a second resume of the same id cannot adopt it too.
        let again = tokio::time::timeout(
            Duration::from_secs(5),
            sessions.resume("c_1", "secret", "dev", Some("alice")),
        )
        .await
        .unwrap();
        assert!(again.is_err());
    }
}
