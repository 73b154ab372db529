//! Handling each client frame, in the order received.

use std::collections::HashMap;

use serde_json::Value;
use tether_core::capability::Operation as Cap;
use tether_core::{ChannelName, ErrorCode, ErrorInfo, Operation};

use super::acks::Pending;
use super::{Connection, attachment, now_ms};
use crate::auth::{Credentials, Principal};
use crate::engine::{Feed, Start};
use crate::protocol::{
    self, ClientFrame, EncodeFrame, MAX_REWIND, Mutation, PresenceVerb, ResumedAttachment,
    ServerFrame,
};
use crate::sessions::SeqCheck;

impl Connection {
    pub(super) async fn on_text(&mut self, text: &str) {
        if text.len() > self.app.config.max_frame_bytes {
            let err = ErrorInfo::new(
                ErrorCode::FrameTooLarge,
                format!(
                    "frame of {} bytes is over the limit of {}",
                    text.len(),
                    self.app.config.max_frame_bytes
                ),
            );
            return self.reply_error(protocol::salvage_req(text), None, err);
        }
        let frame = match protocol::decode_client_frame(text) {
            Ok(frame) => frame,
            Err(err) => return self.reply_error(protocol::salvage_req(text), None, err),
        };
        if let ClientFrame::Auth {
            req,
            token,
            key,
            client_id,
        } = frame
        {
            return self.on_auth(req, token, key, client_id);
        }
        let Some(principal) = self.principal.clone() else {
            self.outbox.close(ErrorInfo::new(
                ErrorCode::Unauthorized,
                "authenticate first: send an auth frame with a token or key",
            ));
            return;
        };
        if frame.is_mutation() {
            match protocol::mutation(frame) {
                Some(Ok(mutation)) => self.submit(&principal, mutation).await,
                Some(Err((req, err))) => {
                    let reply = protocol::error_frame(req, None, &err);
                    self.queue_reply(Pending::Ready(reply)).await;
                }
                None => {}
            }
            return;
        }
        match frame {
            ClientFrame::Attach {
                req,
                channel,
                from,
                rewind,
                presence,
            } => {
                let start = self.start(&principal, &channel, from.as_deref(), rewind, presence);
                match start {
                    Ok((name, start)) => {
                        self.attach(req, name, start).await;
                        self.save_session();
                    }
                    Err(err) => self.reply_error(req, Some(&channel), err),
                }
            }
            ClientFrame::Detach { req, channel } => match protocol::channel(&channel) {
                Ok(name) => {
                    self.detach(&name).await;
                    self.save_session();
                    self.outbox.send(
                        ServerFrame::Detached {
                            req,
                            channel: channel.as_str().into(),
                        }
                        .encode(),
                    );
                }
                Err(err) => self.reply_error(req, Some(&channel), err),
            },
            ClientFrame::Presence {
                req,
                channel,
                action,
                data,
            } => {
                let reply = match self.presence(&principal, &channel, action, data) {
                    Ok(()) => {
                        self.save_session();
                        ServerFrame::Ok { req }.encode()
                    }
                    Err(err) => protocol::error_frame(req, Some(&channel), &err),
                };
                self.queue_reply(Pending::Ready(reply)).await;
            }
            ClientFrame::Resume {
                req,
                connection_id,
                resume_key,
                positions,
            } => {
                if let Err(err) = self
                    .resume(&principal, req, &connection_id, &resume_key, positions)
                    .await
                {
                    self.reply_error(req, None, err);
                }
            }
            ClientFrame::Ping { req } => {
                self.queue_reply(Pending::Ready(ServerFrame::Pong { req }.encode()))
                    .await;
            }
            ClientFrame::Auth { .. }
            | ClientFrame::Publish { .. }
            | ClientFrame::Append { .. }
            | ClientFrame::Update { .. }
            | ClientFrame::Delete { .. } => {}
        }
    }

    /// First authentication, or renewal. A renewal must keep the identity;
    /// attachments the new credential no longer allows are detached.
    fn on_auth(
        &mut self,
        req: Option<u64>,
        token: Option<String>,
        key: Option<String>,
        client_id: Option<String>,
    ) {
        let credentials = match (token, key) {
            (Some(token), _) => Ok(Credentials::Token(token)),
            (None, Some(key)) => Credentials::key(&key),
            (None, None) => Err(ErrorInfo::new(
                ErrorCode::BadRequest,
                "auth needs a token or a key",
            )),
        };
        let wanted = client_id.or_else(|| self.identity.client_id.clone());
        let principal = match credentials.and_then(|c| self.app.auth.authenticate(&c, wanted)) {
            Ok(principal) => principal,
            Err(err) => {
                // A failed first authentication ends the connection; a
                // failed renewal leaves the current credential in place.
                if self.principal.is_none() {
                    self.outbox.close(err);
                } else {
                    self.reply_error(req, None, err);
                }
                return;
            }
        };
        if self.principal.is_some() && principal.client_id != self.identity.client_id {
            let err = ErrorInfo::new(
                ErrorCode::Forbidden,
                "a renewed credential must keep the same client_id",
            );
            return self.reply_error(req, None, err);
        }
        // The key pays for the connection from now on (until the first
        // `auth` it sat in the unauthenticated pool); a full key refuses it.
        if let Err(err) = self.slot.charge(&principal.key) {
            if self.principal.is_none() {
                self.outbox.close(err);
            } else {
                self.reply_error(req, None, err);
            }
            return;
        }
        let registered = self.principal.as_ref().map(|p| p.key.as_str());
        if registered != Some(principal.key.as_str()) {
            // So that a resume of this (still live) connection is checked
            // against the credential it has now.
            self.takeover = self.app.sessions.register(
                &self.connection_id,
                &self.resume_key,
                &principal.key,
                principal.client_id.as_deref(),
            );
        }
        self.narrow_to(&principal);
        self.identity.client_id.clone_from(&principal.client_id);
        self.outbox.send(
            ServerFrame::Authorized {
                req,
                client_id: principal.client_id.as_deref().map(Into::into),
                expires_at: principal.expires_at,
            }
            .encode(),
        );
        self.principal = Some(principal);
        // Before any operation: see `Connection::run`.
        self.save_session();
    }

    /// Validates an attach request.
    fn start(
        &self,
        principal: &Principal,
        channel: &str,
        from: Option<&str>,
        rewind: Option<usize>,
        presence: bool,
    ) -> Result<(ChannelName, Start), ErrorInfo> {
        let name = protocol::channel(channel)?;
        principal.require(&name, Cap::Subscribe)?;
        if presence {
            principal.require(&name, Cap::PresenceSubscribe)?;
        }
        let from = from.map(protocol::serial).transpose()?;
        let rewind = rewind.unwrap_or(0);
        if rewind > MAX_REWIND {
            return Err(ErrorInfo::new(
                ErrorCode::InvalidParameter,
                format!("rewind must be at most {MAX_REWIND}"),
            ));
        }
        self.room_for(&name)?;
        Ok((
            name,
            Start {
                from,
                rewind,
                presence,
            },
        ))
    }

    /// Starts (or restarts) the subscription of a channel.
    async fn attach(&mut self, req: Option<u64>, name: ChannelName, start: Start) {
        self.used = true;
        self.detach(&name).await;
        if let Ok(mut starts) = self.starts.lock() {
            starts.insert(name.clone(), start);
        }
        let window = self.app.engine.rollup_window(&name, self.rollup_ms);
        let subscription = self.app.engine.subscribe(name.clone(), start);
        let task = tokio::spawn(attachment::run(
            Feed::new(subscription, window),
            self.outbox.clone(),
            req,
            self.starts.clone(),
        ));
        self.attachments.insert(name, task);
    }

    /// Stops a channel's subscription; waits so no frame of it follows.
    async fn detach(&mut self, name: &ChannelName) {
        if let Some(task) = self.attachments.remove(name) {
            task.abort();
            let _ = task.await;
        }
        if let Ok(mut starts) = self.starts.lock() {
            starts.remove(name);
        }
    }

    /// Publish, append, update or delete; ephemeral publishes skip the log.
    async fn submit(&mut self, principal: &Principal, mutation: Mutation) {
        self.used = true;
        let Mutation {
            channel,
            req,
            seq,
            op,
            ephemeral,
        } = mutation;
        let name = match protocol::channel(&channel) {
            Ok(name) => name,
            Err(err) => {
                metrics::counter!("tether_client_errors_total").increment(1);
                let reply = protocol::error_frame(req, Some(&channel), &err);
                return self.queue_reply(Pending::Ready(reply)).await;
            }
        };
        if ephemeral {
            let reply = match op {
                Operation::Create(message) => self
                    .app
                    .engine
                    .publish_ephemeral(&name, message, principal, &self.identity, now_ms())
                    .map(|_| ServerFrame::Ok { req }.encode())
                    .map_err(ErrorInfo::from),
                _ => Err(ErrorInfo::new(
                    ErrorCode::BadRequest,
                    "only publishes can be ephemeral",
                )),
            };
            let reply = reply.unwrap_or_else(|err| {
                metrics::counter!("tether_client_errors_total").increment(1);
                protocol::error_frame(req, Some(&channel), &err)
            });
            return self.queue_reply(Pending::Ready(reply)).await;
        }
        let check = seq.map(|seq| match self.dedupe.lock() {
            Ok(mut dedupe) => dedupe.check(seq),
            Err(_) => SeqCheck::Forgotten,
        });
        let outcome = match check {
            None => None,
            Some(SeqCheck::New(outcome)) => Some(outcome),
            Some(SeqCheck::Repeat(outcome)) => {
                return self.queue_reply(Pending::Repeat { req, outcome }).await;
            }
            Some(SeqCheck::Forgotten) => {
                let err = ErrorInfo::new(
                    ErrorCode::InvalidParameter,
                    "seq is older than the operations this connection remembers",
                );
                let reply = protocol::error_frame(req, Some(&channel), &err);
                return self.queue_reply(Pending::Ready(reply)).await;
            }
        };
        // A new sequenced operation has its outcome recorded with it, so a
        // re-send finds it even after a crash.
        let seq = seq.filter(|_| outcome.is_some());
        let pending = match self
            .app
            .engine
            .submit_sequenced(name, op, principal, &self.identity, seq)
            .await
        {
            Ok(receipt) => Pending::Receipt {
                req,
                receipt,
                outcome,
            },
            Err(err) => {
                // Refused before the store: capability, convention or rate.
                let err = ErrorInfo::from(err);
                metrics::counter!("tether_client_errors_total").increment(1);
                if let Some(outcome) = outcome {
                    outcome.send_replace(Some(Err(err.clone())));
                }
                Pending::Ready(protocol::error_frame(req, Some(&channel), &err))
            }
        };
        self.queue_reply(pending).await;
    }

    /// Enter, update or leave presence on a channel.
    fn presence(
        &mut self,
        principal: &Principal,
        channel: &str,
        action: PresenceVerb,
        data: Value,
    ) -> Result<(), ErrorInfo> {
        self.used = true;
        let name = protocol::channel(channel)?;
        principal.require(&name, Cap::Presence)?;
        self.check_presence(&name, action, &data)?;
        let presence = self.app.engine.presence();
        match action {
            PresenceVerb::Enter | PresenceVerb::Update => {
                presence.enter(
                    &name,
                    self.identity.client_id.clone(),
                    &self.connection_id,
                    data.clone(),
                    now_ms(),
                )?;
                self.presence.insert(name, data);
            }
            PresenceVerb::Leave => {
                presence.leave(&name, &self.connection_id, now_ms());
                self.presence.remove(&name);
            }
        }
        Ok(())
    }

    /// Adopts a vanished connection: its id, presence, exactly-once state
    /// and attachments (each from the client's position when given).
    async fn resume(
        &mut self,
        principal: &Principal,
        req: Option<u64>,
        connection_id: &str,
        resume_key: &str,
        positions: HashMap<String, String>,
    ) -> Result<(), ErrorInfo> {
        if self.used {
            return Err(ErrorInfo::new(
                ErrorCode::BadRequest,
                "resume must come before any attach, publish or presence on this connection",
            ));
        }
        // Validate everything before adopting anything.
        if positions.len() > self.app.config.max_channels_per_connection {
            return Err(ErrorInfo::new(
                ErrorCode::TooManyChannels,
                format!(
                    "positions name more than the {} channels a connection may use",
                    self.app.config.max_channels_per_connection
                ),
            ));
        }
        let mut given = HashMap::new();
        for (channel, position) in &positions {
            given.insert(protocol::channel(channel)?, protocol::serial(position)?);
        }
        let (state, presence_left) = self
            .app
            .sessions
            .resume(
                connection_id,
                resume_key,
                &principal.key,
                principal.client_id.as_deref(),
            )
            .await?;
        metrics::counter!("tether_connection_resumes_total").increment(1);
        // This connection becomes the old one.
        self.app.sessions.forget(&self.connection_id);
        self.connection_id = state.connection_id;
        self.resume_key = state.resume_key;
        self.identity.connection_id = Some(self.connection_id.clone());
        self.takeover = self.app.sessions.register(
            &self.connection_id,
            &self.resume_key,
            &principal.key,
            principal.client_id.as_deref(),
        );
        self.dedupe = state.dedupe;
        self.adopt_presence(principal, state.presence, presence_left);
        // Each channel starts as it was attached, from the client's position
        // when given, else from the last exact position the server sent
        // (or afresh, with its original rewind, if it never sent one);
        // channels only named in `positions` are attached from there.
        let plan = self.plan_restarts(principal, state.attachments, &given);
        let restarts = plan.attach;
        let attachments = restarts
            .iter()
            .map(|(channel, start)| ResumedAttachment {
                channel: channel.to_string(),
                position: start.from,
                presence: start.presence,
            })
            .collect();
        self.outbox.send(
            ServerFrame::Resumed {
                req,
                connection_id: self.connection_id.as_str().into(),
                resume_key: self.resume_key.as_str().into(),
                attachments,
            }
            .encode(),
        );
        for (channel, err) in plan.refused {
            self.reply_error(None, Some(channel.as_str()), err);
        }
        for (channel, start) in restarts {
            self.attach(None, channel, start).await;
        }
        self.used = true;
        self.save_session();
        Ok(())
    }

    /// Replies that must keep their place behind earlier acks.
    async fn queue_reply(&self, pending: Pending) {
        // Fails only when the ack loop has ended, i.e. the connection closes.
        let _ = self.acks.send(pending).await;
    }
}
