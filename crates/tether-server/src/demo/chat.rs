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
//! The agent is an ordinary WebSocket client ([`Link`]). It folds the
//! channel into a [`View`] and only reacts to what happens after its attach
//! caught up, apart from one catch-up rule: a recent prompt that nobody
//! answered (sent before the agent was attached) is answered.

use std::time::Duration;

use serde_json::{Value, json};
use tether_core::fold::ended;
use tether_core::{Action, Message, View};

use super::Ctx;
use super::link::{Incoming, Link, LinkError};

/// The agent's identity on the wire.
pub const AGENT_ID: &str = "assistant";
/// Messages a fresh attach loads, so the agent knows the conversation.
const REWIND: usize = 200;
/// Older unanswered prompts are left alone.
const ANSWER_WITHIN_MS: u64 = 120_000;
/// Conversation turns sent to the model.
const CONTEXT_TURNS: usize = 20;
const SYSTEM_PROMPT: &str = "You are the assistant of the Tether demo. Answer briefly and plainly.";

/// Watches `channel` and answers its prompts, reconnecting if the
/// connection drops, until the task is aborted.
pub async fn run(ctx: Ctx, channel: String) {
    let mut agent = ChatAgent {
        ctx,
        channel,
        view: View::new(),
        position: None,
        live: false,
        link: None,
        status: "idle",
        handed_off: false,
        current: None,
    };
    loop {
        if let Err(err) = agent.session().await {
            tracing::debug!(channel = %agent.channel, error = %err, "chat agent: reconnecting");
        }
        agent.link = None;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

struct ChatAgent {
    ctx: Ctx,
    channel: String,
    view: View,
    position: Option<String>,
    /// The first attach caught up: events are now reacted to.
    live: bool,
    link: Option<Link>,
    status: &'static str,
    handed_off: bool,
    /// The response being streamed for the latest prompt.
    current: Option<String>,
}

impl ChatAgent {
    async fn session(&mut self) -> Result<(), LinkError> {
        let (link, mut events) = Link::connect(&self.ctx.url, &self.ctx.key, AGENT_ID).await?;
        link.attach(&self.channel, self.position.as_deref(), REWIND)
            .wait()
            .await?;
        link.presence(&self.channel, self.presence_data())
            .wait()
            .await?;
        self.link = Some(link);
        while let Some(event) = events.recv().await {
            match event {
                Incoming::Message {
                    message, position, ..
                } => {
                    if let Some(position) = position {
                        self.position = Some(position);
                    }
                    if self.view.apply(&message) && self.live {
                        self.on_event(&message).await;
                    }
                }
                Incoming::Synced { position, .. } => {
                    if let Some(position) = position {
                        self.position = Some(position);
                    }
                    if !self.live {
                        self.live = true;
                        self.catch_up().await;
                    }
                }
            }
        }
        Err(LinkError {
            code: 0,
            message: "connection closed".into(),
        })
    }

    fn presence_data(&self) -> Value {
        json!({"role": "agent", "name": "Assistant", "status": self.status})
    }

    fn set_status(&mut self, status: &'static str) {
        if self.status == status {
            return;
        }
        self.status = status;
        if let Some(link) = &self.link {
            // Not awaited: presence is re-entered with the latest data on
            // reconnect anyway.
            drop(link.presence(&self.channel, self.presence_data()));
        }
    }

    async fn on_event(&mut self, event: &Message) {
        let serial = event.serial.to_string();
        match (event.name.as_deref(), event.action) {
            (Some("prompt"), Action::Create) if event.client_id.as_deref() != Some(AGENT_ID) => {
                self.answer(&serial).await;
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
        if self.current.as_deref() == Some(serial.as_str()) {
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
        let orphans: Vec<String> = self
            .view
            .messages()
            .filter(|m| m.client_id.as_deref() == Some(AGENT_ID) && is_streaming(m))
            .map(|m| m.serial.to_string())
            .collect();
        if let Some(link) = &self.link {
            for serial in orphans {
                drop(link.cancel(&self.channel, &serial));
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
            .map(|m| (m.serial.to_string(), m.timestamp));
        let Some((prompt, timestamp)) = last_prompt else {
            return;
        };
        let answered = self
            .view
            .messages()
            .any(|m| prompt_of(m) == Some(prompt.as_str()));
        if !answered && now_ms().saturating_sub(timestamp) < ANSWER_WITHIN_MS {
            self.answer(&prompt).await;
        }
    }

    /// Asks for the current response to stop (the server marks it
    /// `cancelled` and the bridge stops).
    fn stop_current(&mut self) {
        if let (Some(current), Some(link)) = (self.current.take(), &self.link) {
            drop(link.cancel(&self.channel, &current));
        }
    }

    async fn answer(&mut self, prompt: &str) {
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
                tracing::warn!(channel = %self.channel, error = %err, "chat agent: the LLM bridge refused the job");
                if let Some(link) = &self.link {
                    drop(link.publish(
                        &self.channel,
                        json!({
                            "name": "response",
                            "data": format!("Sorry, I cannot answer right now: {err}"),
                            "extras": {"role": "assistant", "stream": "error", "prompt": prompt},
                        }),
                    ));
                }
                self.set_status("idle");
            }
        }
    }

    /// `POST /channels/{channel}/llm` with the conversation so far.
    async fn start_job(&self, prompt: &str) -> Result<String, String> {
        let mut messages = vec![json!({"role": "system", "content": SYSTEM_PROMPT})];
        let turns: Vec<Value> = self
            .view
            .messages()
            .filter_map(|m| {
                let text = m.data.as_str().filter(|t| !t.is_empty())?;
                let role = match m.name.as_deref()? {
                    "prompt" => "user",
                    "response" | "chat" => "assistant",
                    _ => return None,
                };
                Some(json!({"role": role, "content": text}))
            })
            .collect();
        messages.extend(turns.into_iter().rev().take(CONTEXT_TURNS).rev());
        let url = format!(
            "{}/channels/{}/llm",
            self.ctx.url,
            super::link::query_encode(&self.channel)
        );
        let (name, secret) = self.ctx.key.split_once(':').unwrap_or_default();
        let reply = self
            .ctx
            .http
            .post(url)
            .basic_auth(name, Some(secret))
            .header("x-tether-client-id", AGENT_ID)
            .json(&json!({
                "messages": messages,
                "extras": {"prompt": prompt},
            }))
            .send()
            .await
            .map_err(|err| format!("cannot reach the bridge: {err}"))?;
        let status = reply.status();
        let body: Value = reply.json().await.unwrap_or_default();
        if !status.is_success() {
            return Err(body
                .pointer("/error/message")
                .and_then(Value::as_str)
                .unwrap_or("the LLM bridge failed")
                .to_owned());
        }
        body.get("serial")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| "the bridge gave no serial".to_owned())
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
