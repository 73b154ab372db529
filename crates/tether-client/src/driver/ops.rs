//! Requests waiting for their reply, and how they survive a dropped
//! connection.
//!
//! Requests are sent in the order they were queued, and the server replies
//! in that order too. Every publish, append, update and delete carries
//! `seq`, a per-connection number given when it is first written. When a
//! connection drops, every request sent on it without a reply is put back,
//! in order, in front of those never sent, marked *in doubt*; what happens
//! to it depends on how the next socket starts:
//!
//! - **resumed** (the server still knew the connection): everything is
//!   re-sent, mutations with their original `seq`, and the server applies
//!   each exactly once (a re-send of one it already applied gets the
//!   original ack or error again);
//! - **fresh** (resume refused: too late, or the server forgot the
//!   connection): a publish is re-sent (it always carries an id, which the
//!   server deduplicates), presence requests are re-sent (they are
//!   idempotent), and appends, updates and deletes fail with
//!   [`Error::OutcomeUnknown`]: nothing on the server can tell whether
//!   they were applied.
//!
//! Ephemeral publishes carry no `seq` and are at most once: one in flight
//! at a drop fails with [`Error::OutcomeUnknown`] at once.

use std::collections::VecDeque;

use serde_json::Value;
use tether_core::{ChannelName, NewMessage, Operation};

use super::Slot;
use crate::error::Error;
use crate::presence::PresenceAction;
use crate::reply::Replier;
use crate::rest::Ack;
use crate::wire;
use tether_protocol::ClientFrame;

/// Most requests in flight on one connection. The server remembers the
/// outcomes of the last 8,192 sequenced operations of a connection; more
/// in flight at a drop could not all be re-sent exactly once.
const MAX_INFLIGHT: usize = 4096;

/// What a request asks.
#[derive(Debug)]
pub(crate) enum Request {
    /// Publish, append, update or delete: sequenced, exactly once across a
    /// resumed connection.
    Mutation(Operation),
    /// A live-only publish: at most once.
    Ephemeral(NewMessage),
    /// Enter, update or leave presence: idempotent, re-sent after any drop.
    Presence { action: PresenceAction, data: Value },
}

/// One request and whoever waits for its reply.
#[derive(Debug)]
pub(crate) struct PendingOp {
    pub(crate) channel: ChannelName,
    pub(crate) request: Request,
    reply: Replier,
    /// A unit of the backlog limit; none for requests the driver makes.
    _slot: Option<Slot>,
    /// The request id on the current connection, once sent.
    req: Option<u64>,
    /// The exactly-once number of a mutation, once first written.
    seq: Option<u64>,
    /// Sent on a connection that dropped before the reply.
    in_doubt: bool,
}

impl PendingOp {
    pub(crate) fn new(
        channel: ChannelName,
        request: Request,
        reply: Replier,
        slot: Option<Slot>,
    ) -> PendingOp {
        PendingOp {
            channel,
            request,
            reply,
            _slot: slot,
            req: None,
            seq: None,
            in_doubt: false,
        }
    }

    fn frame(&self, req: u64) -> String {
        let channel = self.channel.as_str();
        let frame = match &self.request {
            Request::Mutation(op) => wire::operation(req, self.seq, channel, op),
            Request::Ephemeral(message) => ClientFrame::Publish {
                req: Some(req),
                seq: None,
                channel: channel.to_owned(),
                message: message.clone(),
                ephemeral: true,
            },
            Request::Presence { action, data } => ClientFrame::Presence {
                req: Some(req),
                channel: channel.to_owned(),
                action: wire::verb(*action),
                data: data.clone(),
            },
        };
        frame.to_json()
    }

    /// What a fresh connection does with it when it is in doubt: `None`
    /// re-sends it, `Some(what)` reports that the outcome is unknown.
    fn unsafe_to_resend(&self) -> Option<&'static str> {
        match &self.request {
            Request::Mutation(Operation::Create(_)) | Request::Presence { .. } => None,
            Request::Mutation(Operation::Append { .. }) => Some("append"),
            Request::Mutation(Operation::Update { .. }) => Some("update"),
            Request::Mutation(Operation::Delete { .. }) => Some("delete"),
            Request::Ephemeral(_) => Some("ephemeral publish"),
        }
    }

    pub(crate) fn fail(self, err: Error) {
        self.reply.fail(err);
    }
}

/// Every request not yet answered, in order.
#[derive(Debug, Default)]
pub(crate) struct OpQueue {
    /// Not sent on the current connection. Those in doubt come first.
    unsent: VecDeque<PendingOp>,
    /// Sent on the current connection, waiting for the reply.
    inflight: VecDeque<PendingOp>,
    /// The next `seq` to give. Never reused, across connections too, so
    /// a resumed connection sees each number once.
    next_seq: u64,
}

impl OpQueue {
    pub(crate) fn push(&mut self, op: PendingOp) {
        self.unsent.push_back(op);
    }

    /// Whether there is something to send and room to send it.
    pub(crate) fn has_unsent(&self) -> bool {
        !self.unsent.is_empty() && self.inflight.len() < MAX_INFLIGHT
    }

    /// Moves the next queued request to in flight under `req` and returns
    /// its frame; a mutation gets its `seq` the first time.
    pub(crate) fn send_next(&mut self, req: u64) -> Option<String> {
        let mut op = self.unsent.pop_front()?;
        if matches!(op.request, Request::Mutation(_)) && op.seq.is_none() {
            self.next_seq += 1;
            op.seq = Some(self.next_seq);
        }
        op.req = Some(req);
        let frame = op.frame(req);
        self.inflight.push_back(op);
        Some(frame)
    }

    /// The in-flight request sent as `req`. Replies come in order, so it
    /// is nearly always the first.
    pub(crate) fn take_inflight(&mut self, req: u64) -> Option<PendingOp> {
        let index = self.inflight.iter().position(|op| op.req == Some(req))?;
        self.inflight.remove(index)
    }

    /// Resolves the request sent as `req` with its acknowledgement.
    pub(crate) fn acked(&mut self, req: u64, ack: Ack) {
        if let Some(op) = self.take_inflight(req) {
            op.reply.ack(ack);
        }
    }

    /// Resolves the request sent as `req` with an `ok`.
    pub(crate) fn done(&mut self, req: u64) {
        if let Some(op) = self.take_inflight(req) {
            op.reply.done();
        }
    }

    /// The connection dropped: whatever was in flight goes back in front,
    /// in order, in doubt; an ephemeral publish fails (at most once).
    pub(crate) fn disconnected(&mut self, reason: &str) {
        while let Some(mut op) = self.inflight.pop_back() {
            if matches!(op.request, Request::Ephemeral(_)) {
                op.fail(Error::OutcomeUnknown {
                    operation: "ephemeral publish",
                    reason: reason.to_owned(),
                });
                continue;
            }
            op.req = None;
            op.in_doubt = true;
            self.unsent.push_front(op);
        }
    }

    /// The new socket resumed the connection: every request in doubt is
    /// re-sent as it was, and the server applies each once.
    pub(crate) fn resumed(&mut self) {
        for op in &mut self.unsent {
            op.in_doubt = false;
        }
    }

    /// The new socket is a new connection: requests in doubt that cannot be
    /// re-sent safely fail with [`Error::OutcomeUnknown`].
    pub(crate) fn not_resumed(&mut self, reason: &str) {
        let mut kept = VecDeque::with_capacity(self.unsent.len());
        for mut op in self.unsent.drain(..) {
            match op.unsafe_to_resend().filter(|_| op.in_doubt) {
                Some(operation) => op.fail(Error::OutcomeUnknown {
                    operation,
                    reason: reason.to_owned(),
                }),
                None => {
                    op.in_doubt = false;
                    kept.push_back(op);
                }
            }
        }
        self.unsent = kept;
    }

    /// Whether a presence request for `channel` is waiting: it will set
    /// the presence, so re-entering would be redundant.
    pub(crate) fn has_presence_for(&self, channel: &ChannelName) -> bool {
        self.unsent
            .iter()
            .chain(&self.inflight)
            .any(|op| &op.channel == channel && matches!(op.request, Request::Presence { .. }))
    }

    /// Fails everything (the client is closing).
    pub(crate) fn fail_all(&mut self) {
        for op in self.inflight.drain(..).chain(self.unsent.drain(..)) {
            op.fail(Error::Closed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use serde_json::json;
    use tether_core::{AppendOp, Serial};
    use tokio::sync::{oneshot, watch};

    use crate::auth::Auth;
    use crate::client::{ConnectionState, Shared};
    use crate::endpoint::Endpoint;
    use crate::options::ClientOptions;

    fn shared() -> Arc<Shared> {
        let endpoint = Endpoint::parse("http://127.0.0.1:1").expect("url");
        let options = ClientOptions::default();
        let auth = Auth::new(&options);
        Arc::new(Shared {
            auth,
            endpoint,
            options,
            state: watch::Sender::new(ConnectionState::Closed),
            pending: AtomicUsize::new(0),
        })
    }

    type Reply = oneshot::Receiver<Result<Ack, Error>>;

    fn pending(shared: &Arc<Shared>, request: Request) -> (PendingOp, Reply) {
        let (tx, rx) = oneshot::channel();
        let slot = Slot::take(shared, 10).expect("room");
        let channel = ChannelName::new("c").expect("name");
        let op = PendingOp::new(channel, request, Replier::Ack(tx), Some(slot));
        (op, rx)
    }

    fn serial(seq: u64) -> Serial {
        Serial::new(1_764_151_200_000, seq).expect("fits")
    }

    fn append(data: &str) -> Request {
        Request::Mutation(Operation::Append {
            target: serial(1),
            append: AppendOp {
                data: data.into(),
                name: None,
                extras: None,
            },
        })
    }

    fn publish() -> Request {
        Request::Mutation(Operation::Create(NewMessage {
            id: Some("m-1".into()),
            data: json!("hi"),
            ..NewMessage::default()
        }))
    }

    fn seq_of(frame: &str) -> Option<u64> {
        let value: Value = serde_json::from_str(frame).expect("json");
        value.get("seq").and_then(Value::as_u64)
    }

    #[test]
    fn a_resumed_connection_resends_with_the_original_seq() {
        let shared = shared();
        let mut queue = OpQueue::default();
        let mut replies = Vec::new();
        for data in ["a", "b", "c"] {
            let (op, reply) = pending(&shared, append(data));
            queue.push(op);
            replies.push(reply);
        }
        let first: Vec<_> = (1..=3).filter_map(|req| queue.send_next(req)).collect();
        assert_eq!(
            first.iter().map(|f| seq_of(f)).collect::<Vec<_>>(),
            [Some(1), Some(2), Some(3)]
        );
        queue.acked(
            1,
            Ack {
                serial: serial(1),
                version_serial: serial(2),
                duplicate: false,
            },
        );
        let (later, _) = pending(&shared, append("d"));
        queue.push(later);
        queue.disconnected("cut");
        queue.resumed();
        let again: Vec<_> = (10..=12).filter_map(|req| queue.send_next(req)).collect();
        assert_eq!(
            again.iter().map(|f| seq_of(f)).collect::<Vec<_>>(),
            [Some(2), Some(3), Some(4)],
            "b and c keep their seq, d gets the next"
        );
        assert!(again[0].contains(r#""data":"b""#), "{}", again[0]);
        assert!(replies[0].try_recv().expect("acked").is_ok());
        assert!(replies[1].try_recv().is_err(), "still waiting");
    }

    #[test]
    fn a_fresh_connection_reports_appends_in_doubt_and_resends_publishes() {
        let shared = shared();
        let mut queue = OpQueue::default();
        let (op, mut publish_reply) = pending(&shared, publish());
        queue.push(op);
        let (op, mut append_reply) = pending(&shared, append("x"));
        queue.push(op);
        assert!(queue.send_next(1).is_some() && queue.send_next(2).is_some());
        let (never_sent, mut unsent_reply) = pending(&shared, append("y"));
        queue.push(never_sent);
        queue.disconnected("cut");
        queue.not_resumed("41001");
        let err = append_reply
            .try_recv()
            .expect("resolved")
            .expect_err("unknown");
        assert!(
            matches!(
                err,
                Error::OutcomeUnknown {
                    operation: "append",
                    ..
                }
            ),
            "{err}"
        );
        assert!(publish_reply.try_recv().is_err(), "the publish is re-sent");
        assert!(unsent_reply.try_recv().is_err(), "never sent: sent now");
        let frame = queue.send_next(3).expect("publish again");
        assert!(frame.contains(r#""type":"publish""#), "{frame}");
        assert_eq!(seq_of(&frame), Some(1));
        assert_eq!(seq_of(&queue.send_next(4).expect("then y")), Some(3));
    }

    #[test]
    fn presence_is_resent_and_ephemeral_fails_at_the_drop() {
        let shared = shared();
        let mut queue = OpQueue::default();
        let presence = Request::Presence {
            action: PresenceAction::Enter,
            data: json!({"s": 1}),
        };
        let (op, mut presence_reply) = pending(&shared, presence);
        queue.push(op);
        let (op, mut ephemeral_reply) = pending(&shared, Request::Ephemeral(NewMessage::default()));
        queue.push(op);
        let frame = queue.send_next(1).expect("presence");
        assert_eq!(seq_of(&frame), None, "presence carries no seq");
        let frame = queue.send_next(2).expect("ephemeral");
        assert!(frame.contains(r#""ephemeral":true"#), "{frame}");
        assert!(queue.has_presence_for(&ChannelName::new("c").expect("name")));
        queue.disconnected("cut");
        assert!(matches!(
            ephemeral_reply.try_recv(),
            Ok(Err(Error::OutcomeUnknown { .. }))
        ));
        queue.not_resumed("41001");
        assert!(presence_reply.try_recv().is_err(), "re-sent");
        assert!(queue.send_next(3).is_some());
        queue.done(3);
        assert!(matches!(
            presence_reply.try_recv(),
            Ok(Err(Error::Protocol(_)))
        ));
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
}
