//! The chat agent: answers each user prompt of one conversation by
//! starting an LLM bridge job (`POST /channels/{c}/llm`), so the answer is
//! streamed into the channel by the server itself, as one message.
//!
//! It follows the conventions of docs/patterns.md:
//! - presence `{role: "agent", status}`: `thinking` from the prompt to the
//!   first token, `streaming` until the response ends, then `idle`;
//! - cancel: the user's `cancel` message makes the server end the response
//!   `cancelled` and the bridge stop; the agent just goes back to `idle`.
//!   A new prompt while an answer streams cancels that answer first;
//! - handoff: a `handoff` `claim` (only operators may publish one) makes
//!   the agent stop any answer, go `handed-off` and stay silent until the
//!   `release`.
//!
//! The agent is an ordinary client on the Rust SDK (`tether_client`),
//! which reconnects and resumes by itself. It folds the channel into a
//! [`View`] and only reacts to what happens after its attach caught up
//! ([`Event::Synced`]), apart from one catch-up rule: a recent prompt that
//! nobody answered (sent before the agent was attached) is answered.

use std::time::Duration;

use futures::StreamExt;
use serde_json::{Value, json};
use tether_client::{Channel, Event, NewMessage, Serial, SubscribeOptions};
use tether_core::fold::ended;
use tether_core::{Action, Message, View};
use tether_protocol::ErrorBody;
use tether_protocol::llm::{ChatMessage, JobStarted, StartRequest};

use super::{Ctx, object};

/// The agent's identity on the wire.
pub const AGENT_ID: &str = "assistant";
/// Messages a fresh attach loads, so the agent knows the conversation.
const REWIND: usize = 200;
/// Older unanswered prompts are left alone.
const ANSWER_WITHIN_MS: u64 = 120_000;
/// Conversation turns sent to the model.
const CONTEXT_TURNS: usize = 20;
const SYSTEM_PROMPT: &str = "You are the assistant of the Tether demo. Answer briefly and plainly.";

/// Watches `channel` and answers its prompts until the task is aborted.
/// The SDK rides out dropped connections; a client that cannot connect
/// at all, or whose subscription ends, is replaced after a second.
pub async fn run(ctx: Ctx, channel: String) {
    let mut agent = ChatAgent {
        ctx,
        name: channel,
        view: View::new(),
        position: None,
        live: false,
        channel: None,
        status: "idle",
        handed_off: false,
        current: None,
    };
    loop {
        if let Err(err) = agent.session().await {
            tracing::debug!(channel = %agent.name, error = %err, "chat agent: reconnecting");
        }
        agent.channel = None;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

struct ChatAgent {
    ctx: Ctx,
    /// The conversation's channel name.
    name: String,
    view: View,
    /// Where a new client continues the conversation, exactly.
    position: Option<Serial>,
    /// The first attach caught up: events are now reacted to.
    live: bool,
    channel: Option<Channel>,
    status: &'static str,
    handed_off: bool,
    /// The response being streamed for the latest prompt.
    current: Option<Serial>,
}

impl ChatAgent {
    async fn session(&mut self) -> Result<(), tether_client::Error> {
        let client = self.ctx.connect(AGENT_ID).await?;
        let channel = client.channel(&self.name)?;
        let mut options = SubscribeOptions::default().rewind(REWIND).synced();
        if let Some(position) = self.position {
            options = options.from(position);
        }
        let mut events = channel.subscribe_with(options).await?;
        channel.presence().enter(self.presence_data()).await?;
        self.channel = Some(channel.clone());
        while let Some(event) = events.next().await {
            match event {
                Event::Message(message) => {
                    // Repeats and fragments of unknown messages change
                    // nothing and are not reacted to.
                    let changed = self.view.apply(&message);
                    if changed && self.live {
                        self.on_event(&message).await;
                    }
                }
                Event::Synced { position } => {
                    self.position = position.or(self.position);
                    if !self.live {
                        self.live = true;
                        self.catch_up().await;
                    }
                }
                Event::ContinuityLost(_) => {
                    // Current state follows: rebuild the view from it and
                    // catch up again, as after the first attach.
                    self.view = View::new();
                    self.live = false;
                }
                _ => {}
            }
        }
        self.position = channel.position().or(self.position);
        client.close().await;
        Err(tether_client::Error::Closed)
    }

    fn presence_data(&self) -> Value {
        json!({"role": "agent", "name": "Assistant", "status": self.status})
    }

    fn set_status(&mut self, status: &'static str) {
        if self.status == status {
            return;
        }
        self.status = status;
        if let Some(channel) = &self.channel {
            // Not awaited: the SDK sends it in order, and enters again
            // with the latest data after a connection it could not resume.
            drop(channel.presence().enter(self.presence_data()));
        }
    }

    async fn on_event(&mut self, event: &Message) {
        match (event.name.as_deref(), event.action) {
            (Some("prompt"), Action::Create) if event.client_id.as_deref() != Some(AGENT_ID) => {
                self.answer(event.serial).await;
            }
            (Some("handoff"), Action::Create) => match handoff_action(event) {
                Some("claim") => {
                    self.handed_off = true;
                    self.stop_current();
                    self.set_status("handed-off");
                }
                Some("release") => {
                    self.handed_off = false;
                    self.set_status("idle");
                }
                _ => {}
            },
            _ => {}
        }
        // Follow the current response: first token, then its end.
        if self.current == Some(event.serial) {
            let ended = self
                .view
                .get(event.serial)
                .is_none_or(|m| ended(m).is_some());
            if ended {
                self.current = None;
                if !self.handed_off {
                    self.set_status("idle");
                }
            } else if event.action == Action::Append && !self.handed_off {
                self.set_status("streaming");
            }
        }
    }

    /// After the first attach: restore the handoff state from history,
    /// end answers a previous run left streaming, and answer a prompt
    /// that arrived before the agent was listening.
    async fn catch_up(&mut self) {
        self.handed_off = self
            .view
            .messages()
            .filter(|m| m.name.as_deref() == Some("handoff"))
            .filter_map(handoff_action)
            .last()
            == Some("claim");
        let orphans: Vec<Serial> = self
            .view
            .messages()
            .filter(|m| m.client_id.as_deref() == Some(AGENT_ID) && is_streaming(m))
            .map(|m| m.serial)
            .filter(|serial| self.current != Some(*serial))
            .collect();
        if let Some(channel) = &self.channel {
            for serial in orphans {
                drop(channel.request_cancel(serial));
            }
        }
        self.set_status(if self.handed_off {
            "handed-off"
        } else {
            "idle"
        });
        if self.handed_off {
            return;
        }
        let last_prompt = self
            .view
            .messages()
            .filter(|m| m.name.as_deref() == Some("prompt") && !m.data.is_null())
            .last()
            .map(|m| (m.serial, m.timestamp));
        let Some((prompt, timestamp)) = last_prompt else {
            return;
        };
        let answered = self
            .view
            .messages()
            .any(|m| prompt_of(m) == Some(prompt.to_string().as_str()));
        if !answered && now_ms().saturating_sub(timestamp) < ANSWER_WITHIN_MS {
            self.answer(prompt).await;
        }
    }

    /// Asks for the current response to stop (the server marks it
    /// `cancelled` and the bridge stops).
    fn stop_current(&mut self) {
        if let (Some(current), Some(channel)) = (self.current.take(), &self.channel) {
            drop(channel.request_cancel(current));
        }
    }

    async fn answer(&mut self, prompt: Serial) {
        if self.handed_off {
            return;
        }
        self.stop_current();
        self.set_status("thinking");
        match self.start_job(prompt).await {
            Ok(serial) => {
                // The job may have ended already (events are handled in
                // order, after this returns).
                self.current = Some(serial);
            }
            Err(err) => {
                tracing::warn!(channel = %self.name, error = %err, "chat agent: the LLM bridge refused the job");
                if let Some(channel) = &self.channel {
                    drop(channel.publish(NewMessage {
                        name: Some("response".into()),
                        data: format!("Sorry, I cannot answer right now: {err}").into(),
                        extras: object(json!({
                            "role": "assistant", "stream": "error", "prompt": prompt.to_string(),
                        })),
                        ..NewMessage::default()
                    }));
                }
                self.set_status("idle");
            }
        }
    }

    /// `POST /channels/{channel}/llm` with the conversation so far.
    async fn start_job(&self, prompt: Serial) -> Result<Serial, String> {
        let chat = |role: &str, content: &str| ChatMessage {
            role: role.to_owned(),
            content: content.into(),
            other: serde_json::Map::new(),
        };
        let mut messages = vec![chat("system", SYSTEM_PROMPT)];
        let turns: Vec<ChatMessage> = self
            .view
            .messages()
            .filter_map(|m| {
                let text = m.data.as_str().filter(|t| !t.is_empty())?;
                let role = match m.name.as_deref()? {
                    "prompt" => "user",
                    "response" | "chat" => "assistant",
                    _ => return None,
                };
                Some(chat(role, text))
            })
            .collect();
        let skip = turns.len().saturating_sub(CONTEXT_TURNS);
        messages.extend(turns.into_iter().skip(skip));
        let mut url = reqwest::Url::parse(&self.ctx.url).map_err(|err| err.to_string())?;
        url.path_segments_mut()
            .map_err(|()| "the server URL cannot take a path".to_owned())?
            .pop_if_empty()
            .extend(["channels", self.name.as_str(), "llm"]);
        let body = StartRequest {
            messages,
            model: None,
            temperature: None,
            max_tokens: None,
            name: None,
            extras: object(json!({"prompt": prompt.to_string()})),
        };
        let (name, secret) = self.ctx.key.split_once(':').unwrap_or_default();
        let reply = self
            .ctx
            .http
            .post(url)
            .basic_auth(name, Some(secret))
            .header("x-tether-client-id", AGENT_ID)
            .json(&body)
            .send()
            .await
            .map_err(|err| format!("cannot reach the bridge: {err}"))?;
        let status = reply.status();
        let body = reply.bytes().await.unwrap_or_default();
        if !status.is_success() {
            return Err(serde_json::from_slice::<ErrorBody>(&body)
                .map_or_else(|_| "the LLM bridge failed".to_owned(), |e| e.error.message));
        }
        serde_json::from_slice::<JobStarted>(&body)
            .map(|job| job.serial)
            .map_err(|_| "the bridge gave no serial".to_owned())
    }
}

fn handoff_action(message: &Message) -> Option<&str> {
    if message.name.as_deref() != Some("handoff") {
        return None;
    }
    message.extras.as_ref()?.get("action")?.as_str()
}

fn prompt_of(message: &Message) -> Option<&str> {
    message.extras.as_ref()?.get("prompt")?.as_str()
}

fn is_streaming(message: &Message) -> bool {
    message
        .extras
        .as_ref()
        .and_then(|e| e.get("stream"))
        .and_then(Value::as_str)
        == Some("streaming")
}

pub(super) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
