//! Append roll-up (conflation) on the way out, per subscriber.
//!
//! A model streaming 150 tokens per second should not become 150 frames per
//! second per client. For each message, the first fragment goes out at
//! once; fragments that follow within the window are concatenated into one
//! delivery sent when the window closes. Anything else (an update, a
//! delete, another message's event, presence) flushes what is pending first,
//! so deliveries keep their order and positions stay exact. What a client
//! folds is identical with or without roll-up; only the number of frames
//! changes.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tether_core::{Action, Serial};
use tokio::time::Instant;

use super::subscription::{Delivery, EventRef};

/// A pending run of fragments of one message.
struct Pending {
    event: tether_core::Message,
    position: Option<Serial>,
    due: Instant,
}

/// Roll-up state of one subscriber on one channel.
pub struct Rollup {
    window: Duration,
    pending: Option<Pending>,
    /// The message whose fragment went out last, and when.
    last_sent: Option<(Serial, Instant)>,
}

impl Rollup {
    /// A roll-up with `window` (zero: every fragment goes out at once).
    pub fn new(window: Duration) -> Rollup {
        Rollup {
            window,
            pending: None,
            last_sent: None,
        }
    }

    /// When the pending run must be flushed, if there is one.
    pub fn deadline(&self) -> Option<Instant> {
        self.pending.as_ref().map(|p| p.due)
    }

    /// Takes a delivery; returns what to send now, in order.
    pub fn push(&mut self, delivery: Delivery, now: Instant) -> Vec<Delivery> {
        let Delivery::Event { event, position } = &delivery else {
            return self.flush_then(delivery);
        };
        let message = event.message();
        if self.window.is_zero() || message.action != Action::Append {
            return self.flush_then(delivery);
        }
        if let Some(pending) = self
            .pending
            .as_mut()
            .filter(|p| p.event.serial == message.serial)
        {
            merge(&mut pending.event, message);
            pending.position = *position;
            return Vec::new();
        }
        let mut out: Vec<Delivery> = self.flush().into_iter().collect();
        let recent = self
            .last_sent
            .filter(|(serial, at)| *serial == message.serial && now < *at + self.window);
        match recent {
            Some((_, at)) => {
                self.pending = Some(Pending {
                    event: message.clone(),
                    position: *position,
                    due: at + self.window,
                });
            }
            None => {
                self.last_sent = Some((message.serial, now));
                out.push(delivery);
            }
        }
        out
    }

    /// The pending run as one delivery (at its deadline).
    pub fn flush(&mut self) -> Option<Delivery> {
        let pending = self.pending.take()?;
        self.last_sent = Some((pending.event.serial, pending.due));
        Some(Delivery::Event {
            event: EventRef::Stored(Arc::new(pending.event)),
            position: pending.position,
        })
    }

    fn flush_then(&mut self, delivery: Delivery) -> Vec<Delivery> {
        let mut out: Vec<Delivery> = self.flush().into_iter().collect();
        out.push(delivery);
        out
    }
}

/// Folds fragment `next` into the run `into`: data concatenated, the newer
/// name/extras and version win, exactly as a client would fold them.
fn merge(into: &mut tether_core::Message, next: &tether_core::Message) {
    let fragment = next.data.as_str().unwrap_or_default();
    match &mut into.data {
        Value::String(s) => s.push_str(fragment),
        other => *other = Value::String(fragment.to_owned()),
    }
    if next.name.is_some() {
        into.name.clone_from(&next.name);
    }
    if next.extras.is_some() {
        into.extras.clone_from(&next.extras);
    }
    into.version = next.version.clone();
}

#[cfg(test)]
mod tests {
    use super::*;
    use tether_core::{Message, Version, View};

    fn fragment(seq: u64, data: &str) -> Delivery {
        let serial = Serial::new(1, seq).expect("serial");
        let message = Message {
            serial: Serial::new(1, 1).expect("serial"),
            id: "m".into(),
            name: None,
            data: Value::from(data),
            extras: None,
            client_id: None,
            connection_id: None,
            timestamp: 0,
            action: Action::Append,
            version: Version {
                serial,
                timestamp: 0,
                client_id: None,
                description: None,
                metadata: None,
            },
        };
        Delivery::Event {
            event: EventRef::Stored(Arc::new(message)),
            position: Some(serial),
        }
    }

    fn create() -> Delivery {
        let Delivery::Event { event, .. } = fragment(1, "") else {
            unreachable!()
        };
        let mut message = event.message().clone();
        message.action = Action::Create;
        Delivery::Event {
            event: EventRef::Stored(Arc::new(message)),
            position: Some(Serial::new(1, 1).expect("serial")),
        }
    }

    fn fold(view: &mut View, out: &[Delivery]) -> usize {
        for d in out {
            if let Delivery::Event { event, .. } = d {
                view.apply(event.message());
            }
        }
        out.len()
    }

    #[test]
    fn first_fragment_at_once_then_one_per_window_and_same_result() {
        let start = Instant::now();
        for window_ms in [0u64, 40, 500] {
            let mut rollup = Rollup::new(Duration::from_millis(window_ms));
            let mut view = View::new();
            let mut frames = fold(&mut view, &rollup.push(create(), start));
            // 150 fragments over one second.
            for i in 0..150u64 {
                let now = start + Duration::from_micros(i * 6_667);
                if rollup.deadline().is_some_and(|d| d <= now) {
                    frames += fold(&mut view, &rollup.flush().into_iter().collect::<Vec<_>>());
                }
                frames += fold(&mut view, &rollup.push(fragment(i + 2, "x"), now));
            }
            frames += fold(&mut view, &rollup.flush().into_iter().collect::<Vec<_>>());
            let data = view
                .messages()
                .next()
                .and_then(|m| m.data.as_str().map(str::len));
            assert_eq!(data, Some(150), "window {window_ms}: same final state");
            let fragments = frames - 1;
            match window_ms {
                0 => assert_eq!(fragments, 150),
                40 => assert!((24..=27).contains(&fragments), "{fragments}"),
                _ => assert!((2..=4).contains(&fragments), "{fragments}"),
            }
        }
    }

    #[test]
    fn other_deliveries_flush_first() {
        let start = Instant::now();
        let mut rollup = Rollup::new(Duration::from_millis(40));
        assert_eq!(rollup.push(fragment(2, "a"), start).len(), 1);
        assert!(rollup.push(fragment(3, "b"), start).is_empty());
        let out = rollup.push(Delivery::Synced { position: None }, start);
        assert_eq!(out.len(), 2, "pending run, then the other delivery");
        assert!(matches!(out[1], Delivery::Synced { .. }));
        assert!(rollup.deadline().is_none());
    }
}
