//! A small WebSocket client of the Tether protocol, for the demo's agents.
//!
//! The agents are ordinary clients of the server: they connect over
//! WebSocket with the demo's API key and a `client_id`, attach channels,
//! publish, append and enter presence with the frames of docs/protocol.md
//! (the `tether-protocol` types).
//! (The Rust SDK has no presence yet, and the demo must show it.)
//!
//! A [`Link`] is cheap to clone. Requests are written in call order (the
//! frame is queued when the method is called, not when the returned
//! [`Reply`] is awaited), so appends can be pipelined and their replies
//! ignored. When every clone is dropped the socket closes cleanly, which
//! makes the agent leave presence at once.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{Map, Value};
use tether_core::{AppendOp, Message, NewMessage, UpdateOp};
use tether_protocol::{ClientFrame, PresenceVerb, ServerFrame};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message as WsMessage;

/// How often an agent pings, so the server's idle timeout never fires.
const PING_EVERY: Duration = Duration::from_secs(10);

/// An error reply, or a connection that went away.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkError {
    /// The Tether error code (`0`: the connection closed).
    pub code: u32,
    /// What the server said.
    pub message: String,
}

impl std::fmt::Display for LinkError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.message, self.code)
    }
}

fn closed() -> LinkError {
    LinkError {
        code: 0,
        message: "connection closed".into(),
    }
}

/// What the server sends that is not a reply.
#[derive(Debug)]
pub enum Incoming {
    /// One event of an attached channel.
    Message {
        /// The channel.
        channel: String,
        /// The event (an append carries only its fragment).
        message: Box<Message>,
        /// Where a re-attach could resume from, when exact.
        position: Option<String>,
    },
    /// An attach caught up; what follows is live.
    Synced {
        /// The channel.
        channel: String,
        /// Its position, when exact.
        position: Option<String>,
    },
}

type Replies = Arc<Mutex<HashMap<u64, oneshot::Sender<Result<Value, LinkError>>>>>;

/// One WebSocket connection to the server.
#[derive(Clone)]
pub struct Link {
    out: mpsc::UnboundedSender<String>,
    replies: Replies,
    next: Arc<AtomicU64>,
}

/// The server's answer to one request.
pub struct Reply(oneshot::Receiver<Result<Value, LinkError>>);

impl Reply {
    /// Waits for the answer (`ack`, `attached`, `ok`...).
    pub async fn wait(self) -> Result<Value, LinkError> {
        self.0.await.unwrap_or_else(|_| Err(closed()))
    }

    /// Waits for an `ack` and returns the message's serial.
    pub async fn serial(self) -> Result<String, LinkError> {
        let ack = self.wait().await?;
        ack.get("serial")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| LinkError {
                code: 0,
                message: format!("expected an ack, got {ack}"),
            })
    }
}

impl Link {
    /// Connects to `base` (`http://host:port`) with the API key `key`
    /// (`name:secret`), acting as `client_id`. Resolves once the server
    /// said `connected`; events arrive on the returned receiver, which ends
    /// when the connection does.
    pub async fn connect(
        base: &str,
        key: &str,
        client_id: &str,
    ) -> Result<(Link, mpsc::UnboundedReceiver<Incoming>), LinkError> {
        let ws = base
            .replacen("https://", "wss://", 1)
            .replacen("http://", "ws://", 1);
        let url = format!(
            "{}/ws?key={}&client_id={}",
            ws.trim_end_matches('/'),
            query_encode(key),
            query_encode(client_id)
        );
        let (socket, _) = tokio_tungstenite::connect_async(url.as_str())
            .await
            .map_err(|err| LinkError {
                code: 0,
                message: format!("cannot connect: {err}"),
            })?;
        let (mut write, mut read) = socket.split();
        // The first frame is `connected` (or an error before a close).
        loop {
            match read.next().await {
                Some(Ok(WsMessage::Text(text))) => match ServerFrame::decode(text.as_str()) {
                    Ok(ServerFrame::Connected { .. }) => break,
                    Ok(ServerFrame::Error { code, message, .. }) => {
                        return Err(LinkError {
                            code,
                            message: message.into_owned(),
                        });
                    }
                    _ => {}
                },
                Some(Ok(_)) => {}
                _ => return Err(closed()),
            }
        }
        let (out, mut outgoing) = mpsc::unbounded_channel::<String>();
        let (events, incoming) = mpsc::unbounded_channel();
        let replies: Replies = Arc::default();
        let pump_replies = replies.clone();
        tokio::spawn(async move {
            let mut ping = tokio::time::interval(PING_EVERY);
            ping.tick().await;
            loop {
                tokio::select! {
                    frame = read.next() => match frame {
                        Some(Ok(WsMessage::Text(text))) => {
                            dispatch(text.as_str(), &pump_replies, &events);
                        }
                        Some(Ok(WsMessage::Close(_))) | Some(Err(_)) | None => break,
                        Some(Ok(_)) => {}
                    },
                    frame = outgoing.recv() => match frame {
                        Some(text) => {
                            if write.send(WsMessage::Text(text.into())).await.is_err() {
                                break;
                            }
                        }
                        None => {
                            // Every Link is gone: leave cleanly.
                            let _ = write.send(WsMessage::Close(None)).await;
                            break;
                        }
                    },
                    _ = ping.tick() => {
                        let ping = ClientFrame::Ping { req: None }.to_json();
                        if write.send(WsMessage::Text(ping.into())).await.is_err() {
                            break;
                        }
                    }
                }
            }
            // Dropping the senders fails every outstanding reply.
            if let Ok(mut replies) = pump_replies.lock() {
                replies.clear();
            }
        });
        Ok((
            Link {
                out,
                replies,
                next: Arc::new(AtomicU64::new(1)),
            },
            incoming,
        ))
    }

    /// Sends `frame` with a fresh `req` (whatever `req` it holds is
    /// replaced); the reply comes through [`Reply`].
    pub fn request(&self, mut frame: ClientFrame) -> Reply {
        let req = self.next.fetch_add(1, Ordering::Relaxed);
        set_req(&mut frame, req);
        let (tx, rx) = oneshot::channel();
        if let Ok(mut replies) = self.replies.lock() {
            replies.insert(req, tx);
        }
        if self.out.send(frame.to_json()).is_err()
            && let Ok(mut replies) = self.replies.lock()
        {
            replies.remove(&req);
        }
        Reply(rx)
    }

    /// Attaches `channel`: from `position` when given (exact resume),
    /// otherwise fresh with the last `rewind` messages.
    pub fn attach(&self, channel: &str, position: Option<&str>, rewind: usize) -> Reply {
        self.request(ClientFrame::Attach {
            req: None,
            channel: channel.to_owned(),
            from: position.map(str::to_owned),
            rewind: position.is_none().then_some(rewind),
            presence: false,
        })
    }

    /// Publishes `message` (`{id?, name?, data?, extras?}`).
    pub fn publish(&self, channel: &str, message: Value) -> Reply {
        match serde_json::from_value::<NewMessage>(message) {
            Ok(message) => self.publish_message(channel, message),
            Err(err) => refused(format!("not a message: {err}")),
        }
    }

    fn publish_message(&self, channel: &str, message: NewMessage) -> Reply {
        self.request(ClientFrame::Publish {
            req: None,
            seq: None,
            channel: channel.to_owned(),
            message,
            ephemeral: false,
        })
    }

    /// Appends a fragment to the message `serial`.
    pub fn append(&self, channel: &str, serial: &str, data: &str) -> Reply {
        self.request(ClientFrame::Append {
            req: None,
            seq: None,
            channel: channel.to_owned(),
            serial: serial.to_owned(),
            append: AppendOp {
                data: data.to_owned(),
                name: None,
                extras: None,
            },
        })
    }

    /// Updates the message `serial`: `patch` holds `name`, `data` and/or
    /// `extras` (merged one level deep).
    pub fn update(&self, channel: &str, serial: &str, patch: Value) -> Reply {
        match serde_json::from_value::<UpdateOp>(patch) {
            Ok(update) => self.request(ClientFrame::Update {
                req: None,
                seq: None,
                channel: channel.to_owned(),
                serial: serial.to_owned(),
                update,
            }),
            Err(err) => refused(format!("not an update: {err}")),
        }
    }

    /// Asks the response `target` to stop (the interrupt convention).
    pub fn cancel(&self, channel: &str, target: &str) -> Reply {
        let mut extras = Map::new();
        extras.insert("target".into(), target.into());
        self.publish_message(
            channel,
            NewMessage {
                name: Some(tether_core::conventions::CANCEL.into()),
                extras: Some(extras),
                ..NewMessage::default()
            },
        )
    }

    /// Enters (or updates) presence on `channel` with `data`.
    pub fn presence(&self, channel: &str, data: Value) -> Reply {
        self.request(ClientFrame::Presence {
            req: None,
            channel: channel.to_owned(),
            action: PresenceVerb::Enter,
            data,
        })
    }

    /// Leaves presence on `channel`.
    pub fn leave(&self, channel: &str) -> Reply {
        self.request(ClientFrame::Presence {
            req: None,
            channel: channel.to_owned(),
            action: PresenceVerb::Leave,
            data: Value::Null,
        })
    }
}

/// A reply that is already a refusal (a request that could not be built).
fn refused(message: String) -> Reply {
    let (tx, rx) = oneshot::channel();
    let _ = tx.send(Err(LinkError { code: 0, message }));
    Reply(rx)
}

/// Sets the `req` of any frame.
fn set_req(frame: &mut ClientFrame, value: u64) {
    match frame {
        ClientFrame::Attach { req, .. }
        | ClientFrame::Detach { req, .. }
        | ClientFrame::Publish { req, .. }
        | ClientFrame::Append { req, .. }
        | ClientFrame::Update { req, .. }
        | ClientFrame::Delete { req, .. }
        | ClientFrame::Auth { req, .. }
        | ClientFrame::Presence { req, .. }
        | ClientFrame::Resume { req, .. }
        | ClientFrame::Ping { req } => *req = Some(value),
    }
}

/// Routes one server frame: replies to their request, events to the agent.
fn dispatch(text: &str, replies: &Replies, events: &mpsc::UnboundedSender<Incoming>) {
    let Ok(frame) = ServerFrame::decode(text) else {
        return;
    };
    let req = frame.req();
    let reply = match frame {
        ServerFrame::Message {
            channel,
            position,
            message,
        } => {
            let _ = events.send(Incoming::Message {
                channel: channel.into_owned(),
                message: Box::new(message.into_owned()),
                position: position.map(|p| p.to_string()),
            });
            return;
        }
        ServerFrame::Synced { channel, position } => {
            let _ = events.send(Incoming::Synced {
                channel: channel.into_owned(),
                position: position.map(|p| p.to_string()),
            });
            return;
        }
        ServerFrame::Error { code, message, .. } => Err(LinkError {
            code,
            message: message.into_owned(),
        }),
        // `attached` is a reply and also precedes the attach's events; both
        // orders are fine for the agents, which wait for `synced`.
        other => Ok(serde_json::to_value(&other).unwrap_or_default()),
    };
    let Some(req) = req else {
        if let Err(err) = reply {
            tracing::warn!(error = %err, "demo agent: connection error");
        }
        return;
    };
    let Some(waiter) = replies.lock().ok().and_then(|mut r| r.remove(&req)) else {
        return;
    };
    let _ = waiter.send(reply);
}

/// Percent-encodes a query parameter value.
pub fn query_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::query_encode;

    #[test]
    fn query_values_are_encoded() {
        assert_eq!(query_encode("demo:a b&c"), "demo%3Aa%20b%26c");
        assert_eq!(query_encode("u-1f.x~"), "u-1f.x~");
    }
}
