//! A specialist: works on the tasks of its channel, streaming its part
//! straight into the trip channel.

use std::time::Duration;

use futures::StreamExt;
use serde_json::{Value, json};
use tether_client::{Client, Event, NewMessage, SubscribeOptions, UpdateOp};
use tether_core::Action;

use super::*;
use crate::demo::{Ctx, object};

/// Watches `specialist`'s task channel and works on every new task, until
/// the task is aborted.
pub async fn specialist(ctx: Ctx, specialist: Specialist) {
    let mut position: Option<Serial> = None;
    loop {
        if let Err(err) = specialist_session(&ctx, specialist, &mut position).await {
            tracing::debug!(agent = specialist.id(), error = %err, "specialist: reconnecting");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn specialist_session(
    ctx: &Ctx,
    specialist: Specialist,
    position: &mut Option<Serial>,
) -> Result<(), tether_client::Error> {
    let client = ctx.connect(&specialist.client_id()).await?;
    let tasks = client.channel(&specialist.task_channel())?;
    // Fresh: only tasks from now on. With a new client after an old one
    // gave up: exactly the missed ones.
    let mut options = SubscribeOptions::default();
    if let Some(position) = *position {
        options = options.from(position);
    }
    let mut events = tasks.subscribe_with(options).await?;
    let mut seen = std::collections::HashSet::new();
    while let Some(event) = events.next().await {
        let Event::Message(message) = event else {
            continue;
        };
        if message.name.as_deref() == Some("task")
            && message.action == Action::Create
            && seen.insert(message.serial)
        {
            let (ctx, client) = (ctx.clone(), client.clone());
            let task = message.data.clone();
            tokio::spawn(async move { work(ctx, client, specialist, task).await });
        }
    }
    *position = tasks.position().or(*position);
    client.close().await;
    Err(tether_client::Error::Closed)
}

/// One task: progress through presence, the part streamed into the trip
/// channel, then `complete` with the summary and facts.
async fn work(ctx: Ctx, client: Client, specialist: Specialist, task: Value) {
    let field = |key: &str| {
        task.get(key)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let (name, request) = (field("channel"), field("request"));
    if name.is_empty() || request.is_empty() {
        return;
    }
    let Ok(channel) = client.channel(&name) else {
        return;
    };
    let trip = Trip {
        destination: field("destination"),
        origin: field("origin"),
        days: task
            .get("days")
            .and_then(Value::as_u64)
            .and_then(|d| u32::try_from(d).ok())
            .unwrap_or(3),
        month: field("month"),
    };
    let presence = |status: &str, progress: f64, step: &str| {
        json!({"role": "agent", "agent": specialist.id(), "name": format!("{} agent", specialist.title()),
               "status": status, "progress": (progress * 100.0).round() / 100.0, "step": step,
               "request": request})
    };
    // Presence requests are queued in call order and not awaited: only the
    // latest state matters, and the SDK enters again with it after a
    // connection it could not resume.
    let members = channel.presence();
    let warmup = specialist.warmup();
    let pace = ctx.tokens_per_second * specialist.pace();
    // Warm-up steps take about as long as 20 tokens each.
    let step_time = interval(pace) * 20;
    for (i, step) in warmup.iter().enumerate() {
        drop(members.enter(presence("working", 0.05 * (i as f64 + 1.0), step)));
        tokio::time::sleep(step_time).await;
    }
    let part = findings(specialist, &trip);
    let created = channel
        .publish(NewMessage {
            id: Some(format!("part-{}-{request}", specialist.id())),
            name: Some("part".into()),
            data: "".into(),
            extras: object(json!({
                "role": "agent", "agent": specialist.id(), "title": specialist.title(),
                "request": request, "stream": "streaming",
            })),
        })
        .await;
    let Ok(created) = created else {
        drop(members.leave());
        return;
    };
    let writing = match specialist {
        Specialist::Flights => "Writing up the best fares",
        Specialist::Hotels => "Writing up the shortlist",
        Specialist::Weather => "Writing the forecast",
    };
    let base = 0.05 * (warmup.len() as f64 + 1.0);
    let finished = stream_with_progress(
        &channel,
        created.serial,
        &part.text,
        interval(pace),
        |fraction| {
            drop(members.enter(presence("working", base + (1.0 - base) * fraction, writing)));
        },
    )
    .await;
    if finished {
        drop(channel.update(
            created.serial,
            UpdateOp {
                extras: object(json!({
                    "stream": "complete", "summary": part.summary, "facts": part.facts,
                })),
                ..UpdateOp::default()
            },
        ));
        drop(members.enter(presence("done", 1.0, "Done")));
    } else {
        drop(members.enter(presence("stopped", 1.0, "Stopped")));
    }
    // The part's status in the log says "done" from now on; presence is
    // for live progress only.
    tokio::time::sleep(Duration::from_secs(3)).await;
    drop(members.leave());
}
