//! The coordinator: dispatches a trip request to the specialists and
//! writes the combined plan once every part has ended.

use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};
use tether_core::fold::ended;
use tether_core::{Action, Message, View};

use super::*;
use crate::demo::Ctx;
use crate::demo::chat::now_ms;
use crate::demo::link::{Incoming, Link, LinkError};

/// Watches one trip channel until the task is aborted.
pub async fn coordinator(ctx: Ctx, channel: String) {
    let mut agent = Coordinator {
        ctx,
        channel,
        view: View::new(),
        position: None,
        live: false,
        link: None,
        pending: Vec::new(),
        status: json!({"role": "agent", "agent": "planner", "name": "Planner", "status": "idle"}),
    };
    loop {
        if let Err(err) = agent.session().await {
            tracing::debug!(channel = %agent.channel, error = %err, "planner: reconnecting");
        }
        agent.link = None;
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
    channel: String,
    view: View,
    position: Option<String>,
    live: bool,
    link: Option<Link>,
    pending: Vec<Pending>,
    status: Value,
}

impl Coordinator {
    async fn session(&mut self) -> Result<(), LinkError> {
        let (link, mut events) =
            Link::connect(&self.ctx.url, &self.ctx.key, COORDINATOR_ID).await?;
        link.attach(&self.channel, self.position.as_deref(), 200)
            .wait()
            .await?;
        link.presence(&self.channel, self.status.clone())
            .wait()
            .await?;
        self.link = Some(link);
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        loop {
            tokio::select! {
                event = events.recv() => match event {
                    Some(Incoming::Message { message, position, .. }) => {
                        if let Some(position) = position {
                            self.position = Some(position);
                        }
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
                    Some(Incoming::Synced { position, .. }) => {
                        if let Some(position) = position {
                            self.position = Some(position);
                        }
                        if !self.live {
                            self.live = true;
                            self.catch_up().await;
                        }
                    }
                    None => break,
                },
                _ = tick.tick() => self.check(),
            }
        }
        Err(LinkError {
            code: 0,
            message: "connection closed".into(),
        })
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
        if let Some(link) = &self.link {
            drop(link.presence(&self.channel, data));
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
        let Some(link) = self.link.clone() else {
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
        let dispatch = link.publish(
            &self.channel,
            json!({
                "id": format!("dispatch-{request}"),
                "name": "dispatch",
                "data": note,
                "extras": {"role": "agent", "agent": "planner", "request": request,
                           "agents": SPECIALISTS.map(Specialist::id)},
            }),
        );
        for specialist in SPECIALISTS {
            drop(link.publish(
                &specialist.task_channel(),
                json!({
                    "id": format!("task-{}-{request}", specialist.id()),
                    "name": "task",
                    "data": {
                        "channel": self.channel, "request": request, "text": text,
                        "destination": trip.destination, "origin": trip.origin,
                        "days": trip.days, "month": trip.month,
                    },
                }),
            ));
        }
        if let Err(err) = dispatch.wait().await {
            tracing::warn!(channel = %self.channel, error = %err, "planner: dispatch failed");
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
        let Some(link) = self.link.clone() else {
            return;
        };
        self.set_status("writing", Some("Writing the combined plan".into()));
        let channel = self.channel.clone();
        let interval = interval(self.ctx.tokens_per_second);
        let idle =
            json!({"role": "agent", "agent": "planner", "name": "Planner", "status": "idle"});
        self.status = idle.clone();
        tokio::spawn(async move {
            let text = plan_text(&pending.trip, &parts);
            let created = link
                .publish(
                    &channel,
                    json!({
                        "id": format!("plan-{}", pending.request),
                        "name": "plan",
                        "data": "",
                        "extras": {"role": "agent", "agent": "planner", "request": pending.request, "stream": "streaming"},
                    }),
                )
                .serial()
                .await;
            if let Ok(serial) = created {
                stream_text(&link, &channel, &serial, &text, interval).await;
                drop(link.update(&channel, &serial, json!({"extras": {"stream": "complete"}})));
            }
            drop(link.presence(&channel, idle));
        });
    }
}
