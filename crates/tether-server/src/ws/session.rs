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

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tether_core::{ChannelName, ErrorCode, ErrorInfo};
use tether_store::Ack;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

use crate::engine::Start;
use crate::presence::Presence;

/// A connection's attachments as they stand, shared with its attachment
/// tasks (which move `from` forward as they deliver).
pub type Attachments = Arc<Mutex<HashMap<ChannelName, Start>>>;

/// Results of sequenced operations remembered per connection, for
/// re-sent frames after a resume.
const DEDUPE_WINDOW: usize = 8192;

/// The outcome of a sequenced operation, shared with re-sends of it.
pub type Outcome = Option<Result<Ack, ErrorInfo>>;

/// Exactly-once bookkeeping of a connection's sequenced operations.
#[derive(Default)]
pub struct Dedupe {
    last_seq: u64,
    results: BTreeMap<u64, watch::Receiver<Outcome>>,
}

/// What to do with an operation carrying a sequence number.
pub enum SeqCheck {
    /// New: apply it and report the outcome through the sender.
    New(watch::Sender<Outcome>),
    /// Already applied (or in flight): answer with its outcome.
    Repeat(watch::Receiver<Outcome>),
    /// Too old to remember.
    Forgotten,
}

impl Dedupe {
    /// Classifies sequence number `seq`.
    pub fn check(&mut self, seq: u64) -> SeqCheck {
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
pub struct SessionState {
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
pub struct Sessions {
    ttl: Duration,
    grace: Duration,
    /// A std mutex: never held across an await.
    inner: Mutex<Inner>,
    /// Wakes resumes waiting for a taken-over connection to park.
    parked_signal: Notify,
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
    pub fn new(ttl: Duration, grace: Duration) -> Sessions {
        Sessions {
            ttl,
            grace,
            inner: Mutex::new(Inner::default()),
            parked_signal: Notify::new(),
        }
    }

    /// The resume TTL announced to clients.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Registers a live connection; the receiver flips when a resume takes
    /// it over.
    pub fn register(
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
    pub fn forget(&self, connection_id: &str) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.live.remove(connection_id);
    }

    /// A connection vanished: keep its state for the TTL and its presence
    /// for the grace period.
    pub fn park(self: &Arc<Self>, state: SessionState, presence: Arc<Presence>) {
        let id = state.connection_id.clone();
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
                    let mut inner = sessions.inner.lock().unwrap_or_else(|p| p.into_inner());
                    inner.parked.remove(&id);
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
    pub async fn resume(
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
                    None => return Err(failed("unknown connection or resume TTL passed")),
                }
            }
            if tokio::time::timeout_at(deadline, waiter).await.is_err() {
                return Err(failed("the old connection did not hand over in time"));
            }
        }
    }
}

/// A new random resume key.
pub fn new_resume_key() -> String {
    format!(
        "{:032x}{:032x}",
        rand::random::<u128>(),
        rand::random::<u128>()
    )
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
