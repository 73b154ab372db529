//! Operations waiting for their acknowledgement, and how they survive a
//! dropped connection.
//!
//! Operations are sent in the order they were queued, and the server
//! replies in that order too. When a connection drops, every operation
//! sent on it without a reply is put back, in order, in front of those
//! never sent, and all of them go out again on the next connection:
//!
//! - a **publish** always carries an id (generated if needed), so the
//!   server recognises a resend and answers with the original serial;
//! - an **append** cannot be recognised by the server yet (protocol v1 has
//!   no append dedupe; TODO(connection-resume issue): replace this with the
//!   server's per-connection sequence). So before resending, the driver
//!   asks the server how far the message got (see [`OpQueue::confirm`]) and
//!   resends only what is missing. That needs the message's data length at
//!   the last acknowledgement, which the driver knows for messages this
//!   client created or replaced the data of ([`Lengths`]). Appends to other
//!   messages are resent as they are: at-least-once;
//! - an **update** is resent: applying it twice makes one extra version
//!   with the same content;
//! - a **delete** that is refused on resend because the message is already
//!   deleted is confirmed from the tombstone (see the driver).

use std::collections::{BTreeMap, HashMap, VecDeque};

use serde_json::Value;
use tether_core::{ChannelName, Message, Operation, Serial};
use tokio::sync::oneshot;

use super::Slot;
use crate::error::Error;
use crate::rest::Ack;
use crate::wire::Outgoing;

/// How many messages' data lengths are remembered. Streams are short-lived;
/// the oldest (lowest serial) are forgotten first.
const LENGTHS_KEPT: usize = 4096;

/// One operation and whoever waits for its acknowledgement.
#[derive(Debug)]
pub(crate) struct PendingOp {
    pub(crate) channel: ChannelName,
    pub(crate) op: Operation,
    reply: oneshot::Sender<Result<Ack, Error>>,
    _slot: Slot,
    /// The request id on the current connection, once sent.
    req: Option<u64>,
    /// Sent on an earlier connection that dropped before the reply.
    pub(crate) resent: bool,
}

impl PendingOp {
    pub(crate) fn new(
        channel: ChannelName,
        op: Operation,
        reply: oneshot::Sender<Result<Ack, Error>>,
        slot: Slot,
    ) -> PendingOp {
        PendingOp {
            channel,
            op,
            reply,
            _slot: slot,
            req: None,
            resent: false,
        }
    }

    /// Answers the waiter (who may have stopped waiting) and frees the slot.
    pub(crate) fn resolve(self, result: Result<Ack, Error>) {
        let _ = self.reply.send(result);
    }

    fn append_target(&self) -> Option<(Serial, &str)> {
        match &self.op {
            Operation::Append { target, append } => Some((*target, append.data.as_str())),
            _ => None,
        }
    }
}

/// The data length (bytes) of messages as of our last acknowledged
/// operation on them.
#[derive(Debug, Default)]
pub(crate) struct Lengths {
    known: BTreeMap<Serial, HashMap<ChannelName, usize>>,
    count: usize,
}

impl Lengths {
    fn get(&self, channel: &ChannelName, serial: Serial) -> Option<usize> {
        self.known.get(&serial)?.get(channel).copied()
    }

    fn set(&mut self, channel: &ChannelName, serial: Serial, len: usize) {
        if self
            .known
            .entry(serial)
            .or_default()
            .insert(channel.clone(), len)
            .is_none()
        {
            self.count += 1;
        }
        while self.count > LENGTHS_KEPT {
            let Some((_, oldest)) = self.known.pop_first() else {
                break;
            };
            self.count -= oldest.len();
        }
    }

    fn remove(&mut self, channel: &ChannelName, serial: Serial) {
        if let Some(by_channel) = self.known.get_mut(&serial) {
            if by_channel.remove(channel).is_some() {
                self.count -= 1;
            }
            if by_channel.is_empty() {
                self.known.remove(&serial);
            }
        }
    }

    /// Follows an acknowledged operation.
    fn applied(&mut self, channel: &ChannelName, op: &Operation, ack: &Ack, resent: bool) {
        let data_len = |data: &Value| match data {
            Value::String(s) => Some(s.len()),
            Value::Null => Some(0),
            _ => None,
        };
        match op {
            // A duplicate of someone else's (or an old) publish may have
            // been appended to since; ours (a resend) cannot have been,
            // since nobody had its serial yet.
            Operation::Create(new) if !ack.duplicate || resent => match data_len(&new.data) {
                Some(len) => self.set(channel, ack.serial, len),
                None => self.remove(channel, ack.serial),
            },
            Operation::Create(_) => {}
            Operation::Append { target, append } => {
                if let Some(len) = self.get(channel, *target) {
                    self.set(channel, *target, len + append.data.len());
                }
            }
            Operation::Update { target, update } => match update.data.as_ref().map(data_len) {
                Some(Some(len)) => self.set(channel, *target, len),
                Some(None) => self.remove(channel, *target),
                None => {}
            },
            Operation::Delete { target, .. } => self.remove(channel, *target),
        }
    }
}

/// Every operation not yet acknowledged, in order.
#[derive(Debug, Default)]
pub(crate) struct OpQueue {
    /// Queued, not sent on the current connection. Resent ones come first.
    unsent: VecDeque<PendingOp>,
    /// Sent on the current connection, waiting for the reply.
    inflight: VecDeque<PendingOp>,
    lengths: Lengths,
}

impl OpQueue {
    pub(crate) fn push(&mut self, op: PendingOp) {
        self.unsent.push_back(op);
    }

    /// Moves the next queued operation to in flight under `req` and returns
    /// its frame.
    pub(crate) fn send_next(&mut self, req: u64) -> Option<String> {
        let mut op = self.unsent.pop_front()?;
        op.req = Some(req);
        let frame = Outgoing::operation(req, op.channel.as_str(), &op.op).encode();
        self.inflight.push_back(op);
        Some(frame)
    }

    pub(crate) fn has_unsent(&self) -> bool {
        !self.unsent.is_empty()
    }

    /// The in-flight operation sent as `req`. Replies come in order, so it
    /// is nearly always the first.
    pub(crate) fn take_inflight(&mut self, req: u64) -> Option<PendingOp> {
        let index = self.inflight.iter().position(|op| op.req == Some(req))?;
        self.inflight.remove(index)
    }

    /// Resolves the operation sent as `req` with its acknowledgement.
    pub(crate) fn acked(&mut self, req: u64, ack: Ack) {
        if let Some(op) = self.take_inflight(req) {
            self.lengths.applied(&op.channel, &op.op, &ack, op.resent);
            op.resolve(Ok(ack));
        }
    }

    /// The connection dropped: whatever was in flight goes back in front,
    /// in order, marked as possibly applied.
    pub(crate) fn disconnected(&mut self) {
        while let Some(mut op) = self.inflight.pop_back() {
            op.req = None;
            op.resent = true;
            self.unsent.push_front(op);
        }
    }

    /// Fails everything (the client is closing).
    pub(crate) fn fail_all(&mut self) {
        for op in self.inflight.drain(..).chain(self.unsent.drain(..)) {
            op.resolve(Err(Error::Closed));
        }
    }

    /// Messages with appends that may or may not have been applied before
    /// the connection dropped, and whose length we know so we can tell.
    /// A message with a resent update or delete is left alone (resent as is).
    pub(crate) fn to_confirm(&self) -> Vec<(ChannelName, Serial)> {
        let mut eligible: BTreeMap<(Serial, &ChannelName), bool> = BTreeMap::new();
        for op in self.unsent.iter().filter(|op| op.resent) {
            let Some(target) = op.op.target() else {
                continue;
            };
            let appends_only = op.append_target().is_some();
            *eligible.entry((target, &op.channel)).or_insert(true) &= appends_only;
        }
        eligible
            .into_iter()
            .filter(|((serial, channel), ok)| *ok && self.lengths.get(channel, *serial).is_some())
            .map(|((serial, channel), _)| (channel.clone(), serial))
            .collect()
    }

    /// Given the current state of a message, resolves the resent appends
    /// that it shows were applied, so they are not sent again. Returns how
    /// many were confirmed.
    pub(crate) fn confirm(&mut self, channel: &ChannelName, current: &Message) -> usize {
        let serial = current.serial;
        let Some(base) = self.lengths.get(channel, serial) else {
            return 0;
        };
        let Value::String(data) = &current.data else {
            return 0;
        };
        let matches = |op: &PendingOp| {
            op.resent
                && &op.channel == channel
                && op.append_target().map(|(t, _)| t) == Some(serial)
        };
        let fragments: Vec<&str> = self
            .unsent
            .iter()
            .filter(|op| matches(op))
            .filter_map(|op| op.append_target().map(|(_, data)| data))
            .collect();
        let Some(applied) = applied_prefix(base, data, &fragments) else {
            tracing::warn!(
                %channel, %serial,
                "message changed in an unexpected way while disconnected; resending its unacknowledged appends (they may apply twice)"
            );
            return 0;
        };
        self.lengths.set(channel, serial, data.len());
        let mut confirmed = 0;
        let mut index = 0;
        while confirmed < applied && index < self.unsent.len() {
            if matches(&self.unsent[index]) {
                if let Some(op) = self.unsent.remove(index) {
                    op.resolve(Ok(Ack {
                        serial,
                        version_serial: current.version.serial,
                        duplicate: true,
                    }));
                }
                confirmed += 1;
            } else {
                index += 1;
            }
        }
        confirmed
    }
}

/// How many of `fragments` (in order) a message whose data was `base` bytes
/// long now shows applied, given its current `data`; `None` when the data
/// is not `base` bytes followed by a prefix of the fragments (someone else
/// changed it). The smallest count wins, so an empty fragment is resent
/// rather than wrongly confirmed.
pub(crate) fn applied_prefix(base: usize, data: &str, fragments: &[&str]) -> Option<usize> {
    let rest = data.get(base..)?;
    let mut offset = 0;
    for (count, fragment) in fragments.iter().enumerate() {
        if offset == rest.len() {
            return Some(count);
        }
        if !rest[offset..].starts_with(fragment) {
            return None;
        }
        offset += fragment.len();
    }
    (offset == rest.len()).then_some(fragments.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use serde_json::json;
    use tether_core::{AppendOp, NewMessage, UpdateOp};
    use tokio::sync::watch;

    use crate::client::{ConnectionState, Shared};
    use crate::endpoint::Endpoint;
    use crate::options::ClientOptions;
    use crate::rest::Rest;

    fn shared() -> Arc<Shared> {
        let endpoint = Endpoint::parse("http://127.0.0.1:1").expect("url");
        let options = ClientOptions::default();
        Arc::new(Shared {
            rest: Rest::with_endpoint(endpoint.clone(), &options),
            endpoint,
            options,
            state: watch::Sender::new(ConnectionState::Closed),
            pending: AtomicUsize::new(0),
        })
    }

    type Reply = oneshot::Receiver<Result<Ack, Error>>;

    fn pending(shared: &Arc<Shared>, op: Operation) -> (PendingOp, Reply) {
        let (tx, rx) = oneshot::channel();
        let slot = Slot::take(shared, 10).expect("room");
        let channel = ChannelName::new("c").expect("name");
        (PendingOp::new(channel, op, tx, slot), rx)
    }

    fn serial(seq: u64) -> Serial {
        Serial::new(1_764_151_200_000, seq).expect("fits")
    }

    fn append(target: Serial, data: &str) -> Operation {
        Operation::Append {
            target,
            append: AppendOp {
                data: data.into(),
                name: None,
                extras: None,
            },
        }
    }

    fn current(data: &str, version: u64) -> Message {
        serde_json::from_value(json!({
            "serial": serial(1), "id": "x", "data": data, "timestamp": 1,
            "action": "update", "version": {"serial": serial(version), "timestamp": 1},
        }))
        .expect("message")
    }

    /// A queue where message 1 was created with "ab" and acknowledged.
    fn created(shared: &Arc<Shared>) -> OpQueue {
        let mut queue = OpQueue::default();
        let create = Operation::Create(NewMessage {
            data: json!("ab"),
            ..NewMessage::default()
        });
        let (op, _) = pending(shared, create);
        queue.push(op);
        assert!(queue.send_next(1).is_some());
        let ack = Ack {
            serial: serial(1),
            version_serial: serial(1),
            duplicate: false,
        };
        queue.acked(1, ack);
        queue
    }

    #[test]
    fn confirms_the_applied_prefix_and_resends_the_rest_in_order() {
        let shared = shared();
        let mut queue = created(&shared);
        let mut replies = Vec::new();
        for (req, fragment) in [(2, "cd"), (3, "ef"), (4, "gh")] {
            let (op, reply) = pending(&shared, append(serial(1), fragment));
            queue.push(op);
            replies.push(reply);
            assert!(queue.send_next(req).is_some());
        }
        let (later, _) = pending(&shared, append(serial(1), "ij"));
        queue.push(later);
        queue.disconnected();
        assert_eq!(
            queue.to_confirm(),
            vec![(ChannelName::new("c").expect("name"), serial(1))]
        );

        // The server got "cd" and "ef" before the drop.
        assert_eq!(
            queue.confirm(&ChannelName::new("c").expect("name"), &current("abcdef", 3)),
            2
        );
        for reply in replies.iter_mut().take(2) {
            let ack = reply.try_recv().expect("resolved").expect("ok");
            assert!(ack.duplicate);
            assert_eq!(ack.version_serial, serial(3));
        }
        assert!(replies[2].try_recv().is_err(), "gh is still pending");
        let next = queue.send_next(10).expect("gh first");
        assert!(next.contains(r#""data":"gh""#), "{next}");
        let next = queue.send_next(11).expect("then ij");
        assert!(next.contains(r#""data":"ij""#), "{next}");
        assert_eq!(shared.pending.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn foreign_changes_and_updates_fall_back_to_resending() {
        let shared = shared();
        let name = ChannelName::new("c").expect("name");
        let mut queue = created(&shared);
        let (op, _) = pending(&shared, append(serial(1), "cd"));
        queue.push(op);
        assert!(queue.send_next(2).is_some());
        queue.disconnected();
        assert_eq!(queue.confirm(&name, &current("abXY", 3)), 0);
        assert!(queue.has_unsent());

        let mut queue = created(&shared);
        let (op, _) = pending(&shared, append(serial(1), "cd"));
        queue.push(op);
        let update = Operation::Update {
            target: serial(1),
            update: UpdateOp::default(),
        };
        let (op, _) = pending(&shared, update);
        queue.push(op);
        assert!(queue.send_next(2).is_some() && queue.send_next(3).is_some());
        queue.disconnected();
        assert!(
            queue.to_confirm().is_empty(),
            "an update in doubt: resend all"
        );
    }

    #[test]
    fn the_backlog_is_bounded() {
        let shared = shared();
        let slots: Vec<_> = (0..3)
            .map(|_| Slot::take(&shared, 3).expect("room"))
            .collect();
        assert!(matches!(
            Slot::take(&shared, 3),
            Err(Error::Backlog { limit: 3 })
        ));
        drop(slots);
        assert_eq!(shared.pending.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn applied_prefix_counts_what_the_server_has() {
        let frags = ["Hel", "lo, ", "world"];
        assert_eq!(applied_prefix(3, "abc", &frags), Some(0));
        assert_eq!(applied_prefix(3, "abcHel", &frags), Some(1));
        assert_eq!(applied_prefix(3, "abcHello, ", &frags), Some(2));
        assert_eq!(applied_prefix(3, "abcHello, world", &frags), Some(3));
        assert_eq!(applied_prefix(0, "", &[]), Some(0));
    }

    #[test]
    fn applied_prefix_refuses_foreign_changes() {
        let frags = ["a", "b"];
        assert_eq!(applied_prefix(3, "ab", &frags), None, "shorter than base");
        assert_eq!(applied_prefix(0, "ax", &frags), None, "not our fragment");
        assert_eq!(applied_prefix(0, "abc", &frags), None, "more than we sent");
        assert_eq!(applied_prefix(1, "é", &frags), None, "not a char boundary");
    }

    #[test]
    fn applied_prefix_prefers_resending_empty_fragments() {
        assert_eq!(applied_prefix(0, "a", &["a", "", "b"]), Some(1));
        assert_eq!(applied_prefix(0, "", &["", "x"]), Some(0));
        assert_eq!(applied_prefix(0, "aa", &["a", "a"]), Some(2));
    }
}
