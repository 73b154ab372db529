//! Connection resume: what a connection keeps when its socket goes away,
//! so that a reconnect within the TTL carries on as the same connection.
//!
//! A connection that closes cleanly leaves presence at once and is gone. A
//! connection that vanishes (network drop, idle timeout, too slow) is
//! *parked*: its presence stays for the grace period, and its identity,
//! attachment positions and exactly-once state stay for the resume TTL. A
//! `resume` frame with the connection's id and resume key adopts it.
//! A resume may also arrive while the old socket is not yet known to be
//! dead: the old connection is then told to hand over and park at once.
//!
//! With a [`SessionStore`], sessions are also written to disk (see
//! [`persist`]), so a resume after a restart finds them there.
//! The registry also counts running connections, so a shutdown can wait for
//! them to answer what they read before the store closes.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tether_core::{ChannelName, ErrorCode, ErrorInfo};
use tether_store::{Ack, SEQ_WINDOW, SeqOutcome, SessionStore};
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

mod persist;
use crate::engine::Start;
use crate::presence::PresenceStore;
use crate::runtime::now_ms;
pub(crate) use persist::SessionRecord;

/// A connection's attachments as they stand, shared with its attachment
/// tasks (which move `from` forward as they deliver).
pub(crate) type Attachments = Arc<Mutex<HashMap<ChannelName, Start>>>;

/// Results of sequenced operations remembered per connection, for
/// re-sent frames after a resume; the same window the store keeps on disk.
#[allow(clippy::cast_possible_truncation)]
const DEDUPE_WINDOW: usize = SEQ_WINDOW as usize;

/// The outcome of a sequenced operation, shared with re-sends of it.
pub(crate) type Outcome = Option<Result<Ack, ErrorInfo>>;

/// Exactly-once bookkeeping of a connection's sequenced operations.
#[derive(Default)]
pub(crate) struct Dedupe {
    last_seq: u64,
    results: BTreeMap<u64, watch::Receiver<Outcome>>,
}

/// What to do with an operation carrying a sequence number.
pub(crate) enum SeqCheck {
    /// New: apply it and report the outcome through the sender.
    New(watch::Sender<Outcome>),
    /// Already applied (or in flight): answer with its outcome.
    Repeat(watch::Receiver<Outcome>),
    /// Too old to remember.
    Forgotten,
}

impl Dedupe {
    /// The state of a session read back from disk: every recorded outcome,
    /// and the highest recorded `seq` as the last one seen. Operations that
    /// never reached the log are not recorded, so their re-sends apply.
    pub(crate) fn restore(outcomes: Vec<(u64, SeqOutcome)>) -> Dedupe {
        let mut dedupe = Dedupe::default();
        for (seq, outcome) in outcomes {
            let (_, rx) = watch::channel(Some(outcome));
            dedupe.last_seq = dedupe.last_seq.max(seq);
            dedupe.results.insert(seq, rx);
        }
        while dedupe.results.len() > DEDUPE_WINDOW {
            dedupe.results.pop_first();
        }
        dedupe
    }

    /// Classifies sequence number `seq`.
    pub(crate) fn check(&mut self, seq: u64) -> SeqCheck {
        if seq <= self.last_seq {
            return match self.results.get(&seq) {
                Some(rx) => SeqCheck::Repeat(rx.clone()),
                None => SeqCheck::Forgotten,
            };
        }
        self.last_seq = seq;
        let (tx, rx) = watch::channel(None);
        self.results.insert(seq, rx);
        while self.results.len() > DEDUPE_WINDOW {
            self.results.pop_first();
        }
        SeqCheck::New(tx)
    }
}

/// Everything a connection carries across a resume.
pub(crate) struct SessionState {
    /// The connection's id, kept across resumes.
    pub connection_id: String,
    /// The secret that proves a resume comes from the same client.
    pub resume_key: String,
    /// The credential's key (resume requires the same).
    pub key: String,
    /// The identity (resume requires the same).
    pub client_id: Option<String>,
    /// Channels it is present on, with its member data.
    pub presence: HashMap<ChannelName, Value>,
    /// Attached channels and how each would start again: its options, with
    /// `from` at the last exact position sent.
    pub attachments: HashMap<ChannelName, Start>,
    /// Exactly-once state, shared with acks still in flight.
    pub dedupe: Arc<Mutex<Dedupe>>,
}

struct Parked {
    state: SessionState,
    /// Set once the grace period has passed and presence was left.
    left: Arc<AtomicBool>,
    timers: Vec<JoinHandle<()>>,
}

/// Registry of live and parked connections.
pub(crate) struct Sessions {
    ttl: Duration,
    grace: Duration,
    /// A std mutex: never held across an await.
    inner: Mutex<Inner>,
    /// Wakes resumes waiting for a taken-over connection to park.
    parked_signal: Notify,
    /// Where sessions are written so they survive a restart.
    store: Option<Arc<dyn SessionStore>>,
    /// The last time the previous server process was known alive: where the
    /// TTL of the sessions it had live starts.
    previous_alive: Option<u64>,
    /// Connections running (see [`Sessions::track`]).
    running: watch::Sender<usize>,
}

/// Counts a connection as running until dropped.
pub(crate) struct Running(watch::Sender<usize>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n = n.saturating_sub(1));
    }
}

#[derive(Default)]
struct Inner {
    parked: HashMap<String, Parked>,
    /// Live connections by id.
    live: HashMap<String, Live>,
}

/// What a resume of a still-live connection is checked against.
struct Live {
    takeover: watch::Sender<bool>,
    resume_key: String,
    key: String,
    client_id: Option<String>,
}

/// Checks a resume request against a connection's credentials.
fn verify(
    resume_key: &str,
    key: &str,
    client_id: Option<&str>,
    expected: (&str, &str, Option<&str>),
) -> Result<(), ErrorInfo> {
    use subtle::ConstantTimeEq;
    let failed =
        |why: &str| ErrorInfo::new(ErrorCode::ResumeFailed, format!("cannot resume: {why}"));
    let key_ok: bool = expected.0.as_bytes().ct_eq(resume_key.as_bytes()).into();
    if !key_ok {
        return Err(failed("wrong resume key"));
    }
    if expected.1 != key || expected.2 != client_id {
        return Err(failed("the connection belongs to another identity"));
    }
    Ok(())
}

impl Sessions {
    /// Sessions kept `ttl` after a connection vanishes; its presence is left
    /// after `grace`.
    pub(crate) fn new(ttl: Duration, grace: Duration) -> Sessions {
        Sessions {
            ttl,
            grace,
            inner: Mutex::new(Inner::default()),
            parked_signal: Notify::new(),
            store: None,
            previous_alive: None,
            running: watch::channel(0).0,
        }
    }

    /// Also keeps sessions in `store`, so they can be resumed after a
    /// restart. Reads when the previous server was last alive; call before
    /// [`Sessions::housekeeping`] overwrites it.
    pub(crate) fn with_store(mut self, store: Arc<dyn SessionStore>) -> Sessions {
        self.previous_alive = store.alive().unwrap_or_else(|err| {
            tracing::warn!(error = %err, "cannot read the last alive time");
            None
        });
        self.store = Some(store);
        self
    }

    /// Counts a connection as running until the guard drops.
    pub(crate) fn track(&self) -> Running {
        self.running.send_modify(|n| *n += 1);
        Running(self.running.clone())
    }

    /// Waits until no connection is running, for at most `timeout`; says
    /// whether they all finished.
    pub(crate) async fn drained(&self, timeout: Duration) -> bool {
        let mut rx = self.running.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(|n| *n == 0))
            .await
            .is_ok()
    }

    /// Writes a session's record (a failure only costs resumability after a
    /// restart, so it is logged, not fatal).
    pub(crate) fn save(&self, connection_id: &str, record: &SessionRecord) {
        if let Some(store) = &self.store
            && let Err(err) = store.put_session(connection_id, &record.encode())
        {
            tracing::warn!(error = %err, "cannot write a connection session");
        }
    }

    /// Deletes a session from disk: its record and recorded outcomes.
    pub(crate) fn discard(&self, connection_id: &str) {
        if let Some(store) = &self.store
            && let Err(err) = store.delete_session(connection_id)
        {
            tracing::warn!(error = %err, "cannot delete a connection session");
        }
    }

    /// Keeps the on-disk sessions honest until `shutdown` flips: records
    /// that this server is alive (every `alive_every`), and deletes sessions
    /// whose TTL has passed (at start, then every half TTL).
    pub(crate) fn housekeeping(self: &Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        if self.store.is_none() {
            return;
        }
        let sessions = Arc::downgrade(self);
        let ttl = self.ttl;
        let alive_every = (ttl / 4).clamp(Duration::from_millis(100), Duration::from_secs(5));
        let sweep_every = (ttl / 2).max(Duration::from_secs(1));
        tokio::spawn(async move {
            let mut alive = tokio::time::interval(alive_every);
            let mut sweep = tokio::time::interval(sweep_every);
            loop {
                tokio::select! {
                    _ = alive.tick() => {
                        let Some(sessions) = sessions.upgrade() else { return };
                        if let Some(store) = &sessions.store
                            && let Err(err) = store.set_alive(now_ms())
                        {
                            tracing::warn!(error = %err, "cannot record the alive time");
                        }
                    }
                    _ = sweep.tick() => {
                        let Some(sessions) = sessions.upgrade() else { return };
                        // A scan of every record: off the async workers.
                        let _ = tokio::task::spawn_blocking(move || sessions.sweep()).await;
                    }
                    _ = crate::runtime::flipped(&mut shutdown) => return,
                }
            }
        });
    }

    /// Deletes on-disk sessions past their TTL that this process does not
    /// hold (those it holds expire with their timers).
    pub(super) fn sweep(&self) {
        let Some(store) = &self.store else { return };
        let records = match store.sessions() {
            Ok(records) => records,
            Err(err) => {
                tracing::warn!(error = %err, "cannot list connection sessions");
                return;
            }
        };
        let ttl = u64::try_from(self.ttl.as_millis()).unwrap_or(u64::MAX);
        let now = now_ms();
        for (id, bytes) in records {
            {
                let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
                if inner.live.contains_key(&id) || inner.parked.contains_key(&id) {
                    continue;
                }
            }
            let expired = SessionRecord::decode(&bytes).is_none_or(|record| {
                record.dropped_at(self.previous_alive).saturating_add(ttl) < now
            });
            if expired {
                self.discard(&id);
            }
        }
    }

    /// A session that only the disk knows (written by an earlier process),
    /// checked like a parked one. `None` if there is none or its TTL passed.
    fn read_parked(
        &self,
        connection_id: &str,
        resume_key: &str,
        key: &str,
        client_id: Option<&str>,
    ) -> Result<Option<SessionState>, ErrorInfo> {
        let Some(store) = &self.store else {
            return Ok(None);
        };
        let unavailable = |err: tether_store::StoreError| {
            tracing::warn!(error = %err, "cannot read a connection session");
            ErrorInfo::new(
                ErrorCode::ResumeFailed,
                "cannot resume: the session could not be read",
            )
        };
        let Some(bytes) = store.session(connection_id).map_err(unavailable)? else {
            return Ok(None);
        };
        let Some(record) = SessionRecord::decode(&bytes) else {
            return Ok(None);
        };
        verify(
            resume_key,
            key,
            client_id,
            (&record.resume_key, &record.key, record.client_id.as_deref()),
        )?;
        let ttl = u64::try_from(self.ttl.as_millis()).unwrap_or(u64::MAX);
        if record.dropped_at(self.previous_alive).saturating_add(ttl) < now_ms() {
            self.discard(connection_id);
            return Ok(None);
        }
        let outcomes = store.outcomes(connection_id).map_err(unavailable)?;
        metrics::counter!("tether_sessions_restored_total").increment(1);
        Ok(Some(record.into_state(connection_id, outcomes)))
    }

    /// The resume TTL announced to clients.
    pub(crate) fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Registers a live connection; the receiver flips when a resume takes
    /// it over.
    pub(crate) fn register(
        &self,
        connection_id: &str,
        resume_key: &str,
        key: &str,
        client_id: Option<&str>,
    ) -> watch::Receiver<bool> {
        let (tx, rx) = watch::channel(false);
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.live.insert(
            connection_id.to_owned(),
            Live {
                takeover: tx,
                resume_key: resume_key.to_owned(),
                key: key.to_owned(),
                client_id: client_id.map(str::to_owned),
            },
        );
        rx
    }

    /// A connection ended cleanly: forget it.
    pub(crate) fn forget(&self, connection_id: &str) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.live.remove(connection_id);
        drop(inner);
        self.discard(connection_id);
    }

    /// A connection vanished: keep its state for the TTL and its presence
    /// for the grace period.
    pub(crate) fn park(self: &Arc<Self>, state: SessionState, presence: Arc<dyn PresenceStore>) {
        let id = state.connection_id.clone();
        let now = now_ms();
        self.save(&id, &SessionRecord::of_state(&state, Some(now), now));
        let left = Arc::new(AtomicBool::new(false));
        let channels: Vec<ChannelName> = state.presence.keys().cloned().collect();
        let leave = {
            let left = left.clone();
            let presence = presence.clone();
            let id = id.clone();
            let grace = self.grace.min(self.ttl);
            tokio::spawn(async move {
                tokio::time::sleep(grace).await;
                left.store(true, Ordering::SeqCst);
                for channel in &channels {
                    presence.leave(channel, &id, now_ms());
                }
            })
        };
        let expire = {
            let sessions = Arc::downgrade(self);
            let id = id.clone();
            let ttl = self.ttl;
            tokio::spawn(async move {
                tokio::time::sleep(ttl).await;
                if let Some(sessions) = sessions.upgrade() {
                    let expired = {
                        let mut inner = sessions.inner.lock().unwrap_or_else(|p| p.into_inner());
                        inner.parked.remove(&id).is_some()
                    };
                    if expired {
                        sessions.discard(&id);
                    }
                }
            })
        };
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.live.remove(&id);
        inner.parked.insert(
            id,
            Parked {
                state,
                left,
                timers: vec![leave, expire],
            },
        );
        drop(inner);
        self.parked_signal.notify_waiters();
    }

    /// Adopts a vanished (or still live) connection. Returns its state and
    /// whether its presence was already left (so the caller re-enters).
    pub(crate) async fn resume(
        &self,
        connection_id: &str,
        resume_key: &str,
        key: &str,
        client_id: Option<&str>,
    ) -> Result<(SessionState, bool), ErrorInfo> {
        let failed =
            |why: &str| ErrorInfo::new(ErrorCode::ResumeFailed, format!("cannot resume: {why}"));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
        loop {
            let waiter = self.parked_signal.notified();
            {
                let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
                if let Some(parked) = inner.parked.get(connection_id) {
                    let s = &parked.state;
                    verify(
                        resume_key,
                        key,
                        client_id,
                        (&s.resume_key, &s.key, s.client_id.as_deref()),
                    )?;
                    if let Some(parked) = inner.parked.remove(connection_id) {
                        for timer in &parked.timers {
                            timer.abort();
                        }
                        return Ok((parked.state, parked.left.load(Ordering::SeqCst)));
                    }
                }
                match inner.live.get(connection_id) {
                    // Still live: ask it to hand over, then wait for it to park.
                    Some(live) => {
                        verify(
                            resume_key,
                            key,
                            client_id,
                            (&live.resume_key, &live.key, live.client_id.as_deref()),
                        )?;
                        live.takeover.send_replace(true);
                    }
                    None => {
                        drop(inner);
                        // Parked by an earlier process: presence was lost
                        // with it, so the caller re-enters.
                        let Some(state) =
                            self.read_parked(connection_id, resume_key, key, client_id)?
                        else {
                            return Err(failed("unknown connection or resume TTL passed"));
                        };
                        // Claim it, so a concurrent resume of the same id
                        // cannot adopt it twice (the caller registers next).
                        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
                        if inner.live.contains_key(connection_id)
                            || inner.parked.contains_key(connection_id)
                        {
                            return Err(failed("the connection was resumed elsewhere"));
                        }
                        inner.live.insert(
                            connection_id.to_owned(),
                            Live {
                                takeover: watch::channel(false).0,
                                resume_key: state.resume_key.clone(),
                                key: state.key.clone(),
                                client_id: state.client_id.clone(),
                            },
                        );
                        return Ok((state, true));
                    }
                }
            }
            if tokio::time::timeout_at(deadline, waiter).await.is_err() {
                return Err(failed("the old connection did not hand over in time"));
            }
        }
    }
}

/// A new random resume key.
pub(crate) fn new_resume_key() -> String {
    format!(
        "{:032x}{:032x}",
        rand::random::<u128>(),
        rand::random::<u128>()
    )
}
