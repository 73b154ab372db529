//! Connection resume: the first exchange on every new socket.
//!
//! The `connected` frame gives a `connection_id` and a `resume_key`. After
//! a drop, the first frame on the next socket is `resume`, naming the last
//! exact position of every channel. On `resumed` the socket *is* the old
//! connection again: the server kept its presence and its exactly-once
//! state and re-attaches its channels by itself, and every request in
//! doubt is re-sent as it was (mutations with their `seq`). On a refusal
//! (`41001`: expired, unknown, closed cleanly) or when the drop is older
//! than `resume_ttl_ms`, the socket is a new connection: channels are
//! attached by position, presence is entered again, and requests in doubt
//! that cannot be re-sent safely fail (see `ops`).

use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message as WsMessage;

use super::ops::{PendingOp, Request};
use super::{Driver, End, Ws, close_code, close_reason};
use crate::error::root_cause;
use crate::presence::PresenceAction;
use crate::reply::Replier;
use crate::wire::{self, Hello};
use tether_protocol::{ClientFrame, ResumedAttachment, ServerFrame};

/// What it takes to resume a connection.
#[derive(Debug, Clone)]
pub(super) struct Resumable {
    pub(super) connection_id: String,
    pub(super) resume_key: String,
    /// How long the server keeps it after a drop.
    pub(super) ttl: Duration,
    /// When the socket carrying it was lost; `None` while it is live.
    pub(super) dropped_at: Option<Instant>,
}

impl Resumable {
    fn from_hello(hello: &Hello) -> Option<Resumable> {
        Some(Resumable {
            connection_id: hello.connection_id.clone(),
            resume_key: hello.resume_key.clone()?,
            ttl: Duration::from_millis(hello.resume_ttl_ms),
            dropped_at: None,
        })
    }

    fn still_kept(&self) -> bool {
        self.dropped_at.is_none_or(|at| at.elapsed() < self.ttl)
    }
}

/// The server's answer to a `resume`.
struct Resumed {
    connection_id: String,
    resume_key: String,
    attachments: Vec<ResumedAttachment>,
}

impl Driver {
    /// Resumes the previous connection on this socket if there is one to
    /// resume, and settles what was in doubt either way. Returns the
    /// connection's id (the old one after a resume).
    pub(super) async fn handshake(&mut self, ws: &mut Ws, hello: &Hello) -> Result<String, End> {
        // Kept until the outcome is known: a socket lost during the resume
        // leaves it to the next one.
        let outcome = match self.resumable.clone() {
            Some(previous) if !previous.still_kept() => {
                Err("the previous connection expired".to_owned())
            }
            Some(previous) if hello.resume_key.is_some() => self.resume(ws, &previous).await?,
            Some(_) => Err("the server does not offer connection resume".to_owned()),
            None => Err("there was no connection to resume".to_owned()),
        };
        match outcome {
            Ok(resumed) => {
                tracing::debug!(connection = %resumed.connection_id, "connection resumed");
                self.resumable = Some(Resumable {
                    connection_id: resumed.connection_id.clone(),
                    resume_key: resumed.resume_key,
                    ttl: Duration::from_millis(hello.resume_ttl_ms),
                    dropped_at: None,
                });
                self.channels.resumed(&resumed.attachments);
                self.ops.resumed();
                Ok(resumed.connection_id)
            }
            Err(reason) => {
                self.resumable = Resumable::from_hello(hello);
                self.ops.not_resumed(&reason);
                self.reenter();
                Ok(hello.connection_id.clone())
            }
        }
    }

    /// Sends `resume` and waits for its reply: `Ok(Err(reason))` when the
    /// server refused it (the socket goes on as a new connection).
    async fn resume(
        &mut self,
        ws: &mut Ws,
        previous: &Resumable,
    ) -> Result<Result<Resumed, String>, End> {
        let req = self.req();
        let frame = ClientFrame::Resume {
            req: Some(req),
            connection_id: previous.connection_id.clone(),
            resume_key: previous.resume_key.clone(),
            positions: wire::positions(self.channels.positions()),
        }
        .to_json();
        ws.send(WsMessage::text(frame))
            .await
            .map_err(|e| End::Lost(root_cause(&e)))?;
        let deadline = tokio::time::Instant::now() + self.shared.options.connect_timeout;
        loop {
            let frame = tokio::time::timeout_at(deadline, ws.next())
                .await
                .map_err(|_| End::Lost("no reply from the server to resume".into()))?;
            let text = match frame {
                Some(Ok(WsMessage::Text(text))) => text,
                Some(Ok(WsMessage::Close(frame))) => {
                    self.on_close(close_code(frame.as_ref()));
                    return Err(End::Lost(close_reason(frame)));
                }
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(End::Lost(root_cause(&e))),
                None => return Err(End::Lost("the connection was closed".into())),
            };
            let frame = match wire::decode(&text) {
                Ok(Some(frame)) if frame.req() == Some(req) => frame,
                Ok(other) => {
                    tracing::debug!(?other, "frame before the reply to resume; ignored");
                    continue;
                }
                Err(err) => {
                    tracing::error!(%err, "undecodable frame from the server; ignored");
                    continue;
                }
            };
            return Ok(match frame {
                ServerFrame::Resumed {
                    connection_id,
                    resume_key,
                    attachments,
                    ..
                } => Ok(Resumed {
                    connection_id: connection_id.into_owned(),
                    resume_key: resume_key.into_owned(),
                    attachments,
                }),
                ServerFrame::Error { code, message, .. } => {
                    tracing::debug!(code, %message, "resume refused; carrying on as a new connection");
                    Err(format!("error {code}: {message}"))
                }
                other => Err(format!("unexpected reply to resume: {other:?}")),
            });
        }
    }

    /// A new connection has no presence: enter again wherever this client
    /// is present, unless a presence request for the channel is queued
    /// anyway (it sets the presence when sent).
    fn reenter(&mut self) {
        let channels: Vec<_> = self
            .entered
            .iter()
            .filter(|(channel, _)| !self.ops.has_presence_for(channel))
            .map(|(channel, data)| (channel.clone(), data.clone()))
            .collect();
        for (channel, data) in channels {
            let request = Request::Presence {
                action: PresenceAction::Enter,
                data,
            };
            self.ops
                .push(PendingOp::new(channel, request, Replier::Nobody, None));
        }
    }
}
