//! A specialist: works on the tasks of its channel, streaming its part
//! straight into the trip channel.

use std::time::Duration;

use serde_json::{Value, json};
use tether_core::Action;

use super::*;
use crate::demo::Ctx;
use crate::demo::link::{Incoming, Link, LinkError};

/// Watches `specialist`'s task channel and works on every new task, until
/// the task is aborted.
pub async fn specialist(ctx: Ctx, specialist: Specialist) {
    let mut position: Option<String> = None;
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
    position: &mut Option<String>,
) -> Result<(), LinkError> {
    let (link, mut events) = Link::connect(&ctx.url, &ctx.key, &specialist.client_id()).await?;
    // Fresh: only tasks from now on. After a drop: exactly the missed ones.
    link.attach(&specialist.task_channel(), position.as_deref(), 0)
        .wait()
        .await?;
    let mut seen = std::collections::HashSet::new();
    while let Some(event) = events.recv().await {
        match event {
            Incoming::Message {
                message,
                position: at,
                ..
            } => {
                if let Some(at) = at {
                    *position = Some(at);
                }
                if message.name.as_deref() == Some("task")
                    && message.action == Action::Create
                    && seen.insert(message.serial)
                {
                    let (ctx, link) = (ctx.clone(), link.clone());
                    let task = message.data.clone();
                    tokio::spawn(async move { work(ctx, link, specialist, task).await });
                }
            }
            Incoming::Synced { position: at, .. } => {
                if let Some(at) = at {
                    *position = Some(at);
                }
            }
        }
    }
    Err(LinkError {
        code: 0,
        message: "connection closed".into(),
    })
}

/// One task: progress through presence, the part streamed into the trip
/// channel, then `complete` with the summary and facts.
async fn work(ctx: Ctx, link: Link, specialist: Specialist, task: Value) {
    let field = |key: &str| {
        task.get(key)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let (channel, request) = (field("channel"), field("request"));
    if channel.is_empty() || request.is_empty() {
        return;
    }
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
    let warmup = specialist.warmup();
    let pace = ctx.tokens_per_second * specialist.pace();
    // Warm-up steps take about as long as 20 tokens each.
    let step_time = interval(pace) * 20;
    for (i, step) in warmup.iter().enumerate() {
        drop(link.presence(&channel, presence("working", 0.05 * (i as f64 + 1.0), step)));
        tokio::time::sleep(step_time).await;
    }
    let part = findings(specialist, &trip);
    let created = link
        .publish(
            &channel,
            json!({
                "id": format!("part-{}-{request}", specialist.id()),
                "name": "part",
                "data": "",
                "extras": {"role": "agent", "agent": specialist.id(), "title": specialist.title(),
                           "request": request, "stream": "streaming"},
            }),
        )
        .serial()
        .await;
    let Ok(serial) = created else {
        drop(link.leave(&channel));
        return;
    };
    let writing = match specialist {
        Specialist::Flights => "Writing up the best fares",
        Specialist::Hotels => "Writing up the shortlist",
        Specialist::Weather => "Writing the forecast",
    };
    let base = 0.05 * (warmup.len() as f64 + 1.0);
    let link_for_progress = link.clone();
    let channel_for_progress = channel.clone();
    let finished = stream_with_progress(
        &link,
        &channel,
        &serial,
        &part.text,
        interval(pace),
        |fraction| {
            drop(link_for_progress.presence(
                &channel_for_progress,
                presence("working", base + (1.0 - base) * fraction, writing),
            ));
        },
    )
    .await;
    if finished {
        drop(link.update(
            &channel,
            &serial,
            json!({"extras": {"stream": "complete", "summary": part.summary, "facts": part.facts}}),
        ));
        drop(link.presence(&channel, presence("done", 1.0, "Done")));
    } else {
        drop(link.presence(&channel, presence("stopped", 1.0, "Stopped")));
    }
    // The part's status in the log says "done" from now on; presence is
    // for live progress only.
    tokio::time::sleep(Duration::from_secs(3)).await;
    drop(link.leave(&channel));
}
