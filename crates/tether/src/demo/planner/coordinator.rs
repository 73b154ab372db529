//! The coordinator: dispatches a trip request to the specialists and
//! writes the combined plan once every part has ended.

use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{Map, Value, json};
use tether_client::{Channel, Client, Event, NewMessage, SubscribeOptions, UpdateOp};
use tether_core::fold::ended;
use tether_core::{Action, Message, View};

use super::*;
use crate::demo::chat::now_ms;
use crate::demo::{Ctx, object};

/// Watches one trip channel until the task is aborted.
pub async fn coordinator(ctx: Ctx, channel: String) {
    let mut agent = Coordinator {
        ctx,
        name: channel,
        view: View::new(),
        position: None,
        live: false,
        client: None,
        channel: None,
        pending: Vec::new(),
        status: json!({"role": "agent", "agent": "planner", "name": "Planner", "status": "idle"}),
    };
    loop {
        if let Err(err) = agent.session().await {
            tracing::debug!(channel = %agent.name, error = %err, "planner: reconnecting");
        }
        agent.client = None;
        agent.channel = None;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

struct Pending {
    request: String,
    trip: Trip,
    since: Instant,
    reported: Vec<&'static str>,
}

struct Coordinator {
    ctx: Ctx,
    /// The trip channel's name.
    name: String,
    view: View,
    /// Where a new client continues the trip channel, exactly.
    position: Option<Serial>,
    live: bool,
    /// Publishes the tasks on the specialists' channels.
    client: Option<Client>,
    /// The trip channel.
    channel: Option<Channel>,
    pending: Vec<Pending>,
    status: Value,
}

impl Coordinator {
    async fn session(&mut self) -> Result<(), tether_client::Error> {
        let client = self.ctx.connect(COORDINATOR_ID).await?;
        let channel = client.channel(&self.name)?;
        let mut options = SubscribeOptions::default().rewind(200).synced();
        if let Some(position) = self.position {
            options = options.from(position);
        }
        let mut events = channel.subscribe_with(options).await?;
        channel.presence().enter(self.status.clone()).await?;
        self.client = Some(client.clone());
        self.channel = Some(channel.clone());
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        loop {
            tokio::select! {
                event = events.next() => match event {
                    Some(Event::Message(message)) => {
                        if self.view.apply(&message) && self.live {
                            if message.name.as_deref() == Some("trip-request")
                                && message.action == Action::Create
                                && message.client_id.as_deref() != Some(COORDINATOR_ID)
                            {
                                let text = message.data.as_str().unwrap_or_default().to_owned();
                                self.dispatch(&message.serial.to_string(), &text).await;
                            }
                            self.check();
                        }
                    }
                    Some(Event::Synced { position }) => {
                        self.position = position.or(self.position);
                        if !self.live {
                            self.live = true;
                            self.catch_up().await;
                        }
                    }
                    Some(Event::ContinuityLost(_)) => {
                        // Current state follows: rebuild the view from it.
                        self.view = View::new();
                    }
                    Some(_) => {}
                    None => break,
                },
                _ = tick.tick() => self.check(),
            }
        }
        self.position = channel.position().or(self.position);
        client.close().await;
        Err(tether_client::Error::Closed)
    }

    fn set_status(&mut self, status: &str, step: Option<String>) {
        let mut data =
            json!({"role": "agent", "agent": "planner", "name": "Planner", "status": status});
        if let Some(step) = step {
            data["step"] = step.into();
        }
        if data == self.status {
            return;
        }
        self.status = data.clone();
        if let Some(channel) = &self.channel {
            drop(channel.presence().enter(data));
        }
    }

    /// Requests that were dispatched but have no plan yet are waited for
    /// again; a recent request nobody handled is dispatched.
    async fn catch_up(&mut self) {
        let with = |name: &str| -> Vec<String> {
            self.view
                .messages()
                .filter(|m| m.name.as_deref() == Some(name))
                .filter_map(|m| request_of(m).map(str::to_owned))
                .collect()
        };
        let (dispatched, planned) = (with("dispatch"), with("plan"));
        let requests: Vec<(String, String, u64)> = self
            .view
            .messages()
            .filter(|m| m.name.as_deref() == Some("trip-request") && !m.data.is_null())
            .map(|m| {
                (
                    m.serial.to_string(),
                    m.data.as_str().unwrap_or_default().to_owned(),
                    m.timestamp,
                )
            })
            .collect();
        for (request, text, timestamp) in requests {
            if planned.contains(&request) || now_ms().saturating_sub(timestamp) > ANSWER_WITHIN_MS {
                continue;
            }
            if dispatched.contains(&request) {
                self.pending.push(Pending {
                    request,
                    trip: Trip::parse(&text),
                    since: Instant::now(),
                    reported: Vec::new(),
                });
            } else {
                self.dispatch(&request, &text).await;
            }
        }
        self.check();
    }

    async fn dispatch(&mut self, request: &str, text: &str) {
        let (Some(client), Some(channel)) = (self.client.clone(), self.channel.clone()) else {
            return;
        };
        let trip = Trip::parse(text);
        self.set_status(
            "dispatching",
            Some("Splitting the request into tasks".into()),
        );
        let note = format!(
            "Planning {} day{} in {} in {} (from {}): asking the flights, hotels and weather agents.",
            trip.days,
            if trip.days == 1 { "" } else { "s" },
            trip.destination,
            trip.month,
            trip.origin
        );
        let dispatch = channel.publish(NewMessage {
            id: Some(format!("dispatch-{request}")),
            name: Some("dispatch".into()),
            data: note.into(),
            extras: object(json!({
                "role": "agent", "agent": "planner", "request": request,
                "agents": SPECIALISTS.map(Specialist::id),
            })),
        });
        for specialist in SPECIALISTS {
            let task = NewMessage {
                id: Some(format!("task-{}-{request}", specialist.id())),
                name: Some("task".into()),
                data: json!({
                    "channel": self.name, "request": request, "text": text,
                    "destination": trip.destination, "origin": trip.origin,
                    "days": trip.days, "month": trip.month,
                }),
                extras: None,
            };
            match client.channel(&specialist.task_channel()) {
                Ok(tasks) => drop(tasks.publish(task)),
                Err(err) => tracing::warn!(error = %err, "planner: no task channel"),
            }
        }
        if let Err(err) = dispatch.await {
            tracing::warn!(channel = %self.name, error = %err, "planner: dispatch failed");
        }
        self.pending.push(Pending {
            request: request.to_owned(),
            trip,
            since: Instant::now(),
            reported: Vec::new(),
        });
        self.check();
    }

    /// Writes the plan of every request whose parts have all ended (or
    /// timed out), and keeps the status line current.
    fn check(&mut self) {
        let mut ready = Vec::new();
        for (index, pending) in self.pending.iter_mut().enumerate() {
            let parts: Vec<&Message> = self
                .view
                .messages()
                .filter(|m| {
                    m.name.as_deref() == Some("part") && request_of(m) == Some(&pending.request)
                })
                .collect();
            let done: Vec<&'static str> = SPECIALISTS
                .iter()
                .map(|s| s.id())
                .filter(|id| {
                    parts
                        .iter()
                        .any(|m| agent_of(m) == Some(*id) && ended(m).is_some())
                })
                .collect();
            pending.reported.clone_from(&done);
            if done.len() == SPECIALISTS.len() || pending.since.elapsed() > PARTS_TIMEOUT {
                let mut found = Map::new();
                for part in parts.iter().filter(|m| ended(m) == Some("complete")) {
                    if let (Some(agent), Some(extras)) = (agent_of(part), part.extras.as_ref()) {
                        found.insert(agent.to_owned(), Value::Object(extras.clone()));
                    }
                }
                ready.push((index, found));
            }
        }
        for (index, found) in ready.into_iter().rev() {
            let pending = self.pending.remove(index);
            self.write_plan(pending, found);
        }
        let waiting: Vec<&str> = self
            .pending
            .iter()
            .flat_map(|p| {
                SPECIALISTS
                    .iter()
                    .map(|s| s.id())
                    .filter(|id| !p.reported.contains(id))
            })
            .collect();
        let writing = self.status.get("status").and_then(Value::as_str) == Some("writing");
        if !waiting.is_empty() {
            self.set_status(
                "waiting",
                Some(format!("Waiting for {}", waiting.join(", "))),
            );
        } else if !writing && self.status.get("status").and_then(Value::as_str) != Some("idle") {
            self.set_status("idle", None);
        }
    }

    /// Streams the combined plan in its own task.
    fn write_plan(&mut self, pending: Pending, parts: Map<String, Value>) {
        let Some(channel) = self.channel.clone() else {
            return;
        };
        self.set_status("writing", Some("Writing the combined plan".into()));
        let interval = interval(self.ctx.tokens_per_second);
        let idle =
            json!({"role": "agent", "agent": "planner", "name": "Planner", "status": "idle"});
        self.status = idle.clone();
        tokio::spawn(async move {
            let text = plan_text(&pending.trip, &parts);
            let created = channel
                .publish(NewMessage {
                    id: Some(format!("plan-{}", pending.request)),
                    name: Some("plan".into()),
                    data: "".into(),
                    extras: object(json!({
                        "role": "agent", "agent": "planner", "request": pending.request,
                        "stream": "streaming",
                    })),
                })
                .await;
            if let Ok(created) = created {
                stream_text(&channel, created.serial, &text, interval).await;
                drop(channel.update(
                    created.serial,
                    UpdateOp {
                        extras: object(json!({"stream": "complete"})),
                        ..UpdateOp::default()
                    },
                ));
            }
            drop(channel.presence().enter(idle));
        });
    }
}
