//! The multi-agent trip planner.
//!
//! - The **coordinator** watches one trip channel (`trip:...`). On a
//!   `trip-request` it posts a visible `dispatch` note, then one `task`
//!   message on each specialist's task channel (`tasks:flights`,
//!   `tasks:hotels`, `tasks:weather`). It never relays the specialists'
//!   tokens: it watches the trip channel until every `part` for the request
//!   has ended, then streams the combined `plan`.
//! - Each **specialist** watches its task channel. For a task it enters
//!   presence on the trip channel with its progress (`{status: "working",
//!   progress, step}`), streams its `part` (fake data) straight into the trip
//!   channel, ends it `complete` with a `summary` and `facts` for the
//!   coordinator, reports `done` and leaves.
//!
//! Every agent is an ordinary WebSocket client ([`Link`]); a refreshed page
//! loses nothing because everything but the progress bars is in the log.

use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};
use tether_core::fold::ended;
use tether_core::{Action, Message, View};

use super::Ctx;
use super::chat::now_ms;
use super::link::{Incoming, Link, LinkError};
use super::model::tokenize;

/// The coordinator's identity on the wire.
pub const COORDINATOR_ID: &str = "planner";
/// The specialists, in the order their parts are shown.
pub const SPECIALISTS: [Specialist; 3] =
    [Specialist::Flights, Specialist::Hotels, Specialist::Weather];
/// A plan is written with whatever parts arrived after this long.
const PARTS_TIMEOUT: Duration = Duration::from_secs(90);
const ANSWER_WITHIN_MS: u64 = 120_000;

/// One kind of specialist agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Specialist {
    /// Finds flights.
    Flights,
    /// Finds hotels.
    Hotels,
    /// Looks up the weather.
    Weather,
}

impl Specialist {
    /// Its short name (`flights`), used in `extras.agent`.
    pub fn id(self) -> &'static str {
        match self {
            Specialist::Flights => "flights",
            Specialist::Hotels => "hotels",
            Specialist::Weather => "weather",
        }
    }

    fn client_id(self) -> String {
        format!("{}-agent", self.id())
    }

    fn title(self) -> &'static str {
        match self {
            Specialist::Flights => "Flights",
            Specialist::Hotels => "Hotels",
            Specialist::Weather => "Weather",
        }
    }

    fn task_channel(self) -> String {
        format!("tasks:{}", self.id())
    }

    /// Relative speed, so the three finish at different times.
    fn pace(self) -> f64 {
        match self {
            Specialist::Flights => 0.8,
            Specialist::Hotels => 1.0,
            Specialist::Weather => 1.4,
        }
    }

    /// What the progress bar says before streaming starts.
    fn warmup(self) -> &'static [&'static str] {
        match self {
            Specialist::Flights => &["Searching 14 airlines", "Comparing fares"],
            Specialist::Hotels => &["Checking availability", "Reading reviews"],
            Specialist::Weather => &["Loading climate data"],
        }
    }
}

/// A parsed trip request.
#[derive(Debug, Clone, PartialEq)]
pub struct Trip {
    /// Where to.
    pub destination: String,
    /// Where from.
    pub origin: String,
    /// How many days.
    pub days: u32,
    /// Which month (English name).
    pub month: String,
}

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

const CITIES: [&str; 24] = [
    "Lisbon",
    "Porto",
    "Paris",
    "Rome",
    "Barcelona",
    "Madrid",
    "Tokyo",
    "Kyoto",
    "New York",
    "London",
    "Berlin",
    "Amsterdam",
    "Prague",
    "Vienna",
    "Istanbul",
    "Athens",
    "Edinburgh",
    "Copenhagen",
    "Reykjavik",
    "Marrakesh",
    "Sydney",
    "Seville",
    "Florence",
    "Dublin",
];

impl Trip {
    /// Reads destination, origin, length and month out of free text, with
    /// sensible defaults for what it does not say.
    pub fn parse(text: &str) -> Trip {
        let lower = text.to_lowercase();
        let words: Vec<&str> = text
            .split(|c: char| !(c.is_alphanumeric() || c == '-'))
            .filter(|w| !w.is_empty())
            .collect();
        let is_month = |w: &str| MONTHS.iter().any(|m| m.eq_ignore_ascii_case(w));
        let capitalized_after = |keys: &[&str]| {
            words.windows(2).find_map(|pair| {
                let (key, word) = (pair[0], pair[1]);
                (keys.iter().any(|k| k.eq_ignore_ascii_case(key))
                    && word.chars().next().is_some_and(char::is_uppercase)
                    && !is_month(word))
                .then(|| word.to_owned())
            })
        };
        let origin = capitalized_after(&["from"]).unwrap_or_else(|| "London".into());
        let destination = CITIES
            .iter()
            .find(|c| lower.contains(&c.to_lowercase()) && !c.eq_ignore_ascii_case(&origin))
            .map(|c| (*c).to_owned())
            .or_else(|| capitalized_after(&["to", "in", "visit", "around"]))
            .unwrap_or_else(|| "Lisbon".into());
        let mut days = None;
        for pair in words.windows(2) {
            let unit = pair[1].to_lowercase();
            if unit.starts_with("day") || unit.starts_with("night") {
                days = pair[0].parse::<u32>().ok().or_else(|| number_word(pair[0]));
                if days.is_some() {
                    break;
                }
            }
        }
        if days.is_none() && lower.contains("weekend") {
            days = Some(2);
        }
        if days.is_none() && lower.contains("week") {
            days = Some(7);
        }
        let month = MONTHS
            .iter()
            .find(|m| words.iter().any(|w| w.eq_ignore_ascii_case(m)))
            .map(|m| (*m).to_owned())
            .unwrap_or_else(|| {
                // Next month (months since 1970, to the day or so).
                let days = now_ms() / 86_400_000;
                let month_index = (days as f64 / 30.436_875) as usize % 12;
                MONTHS[(month_index + 1) % 12].to_owned()
            });
        Trip {
            destination,
            origin,
            days: days.unwrap_or(3).clamp(1, 10),
            month,
        }
    }

    fn month_index(&self) -> usize {
        MONTHS.iter().position(|m| *m == self.month).unwrap_or(5)
    }

    fn seed(&self) -> u64 {
        // FNV-1a: the same trip always gets the same fake data.
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for byte in format!("{}|{}|{}", self.destination, self.origin, self.month).bytes() {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        hash
    }
}

fn number_word(word: &str) -> Option<u32> {
    let words = [
        "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
    ];
    words
        .iter()
        .position(|w| w.eq_ignore_ascii_case(word))
        .map(|i| i as u32 + 1)
}

/// A small deterministic generator for fake data.
struct Dice(u64);

impl Dice {
    fn roll(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.roll(items.len() as u64) as usize]
    }
}

/// A specialist's part: its text, a one-line summary and facts for the plan.
pub struct Part {
    /// Streamed into the trip channel.
    pub text: String,
    /// One line for the plan.
    pub summary: String,
    /// Numbers and names the plan uses.
    pub facts: Value,
}

/// The fake findings of `specialist` for `trip`.
pub fn findings(specialist: Specialist, trip: &Trip) -> Part {
    let mut dice = Dice(trip.seed() ^ (specialist as u64 + 1).wrapping_mul(0x9e37_79b9));
    let (dest, origin, month, days) = (&trip.destination, &trip.origin, &trip.month, trip.days);
    match specialist {
        Specialist::Flights => {
            let airlines = [
                ("TAP Air Portugal", "TP"),
                ("Iberia", "IB"),
                ("Air France", "AF"),
                ("KLM", "KL"),
                ("Lufthansa", "LH"),
                ("easyJet", "U2"),
                ("British Airways", "BA"),
                ("Vueling", "VY"),
            ];
            let (airline, code) = airlines[dice.roll(airlines.len() as u64) as usize];
            let (alt, _) = airlines[dice.roll(airlines.len() as u64) as usize];
            let number = 100 + dice.roll(1800);
            let price = 90 + dice.roll(380);
            let alt_price = price.saturating_sub(20 + dice.roll(40)).max(60);
            let hub = dice.pick(&["Madrid", "Paris", "Amsterdam", "Frankfurt", "Zurich"]);
            let depart = format!("{:02}:{:02}", 6 + dice.roll(5), dice.roll(12) * 5);
            let back = format!("{:02}:{:02}", 15 + dice.roll(6), dice.roll(12) * 5);
            let text = format!(
                "Searched 14 airlines from {origin} to {dest} in {month}.\n\
                 Best value: {airline} {code} {number}, nonstop, leaving {origin} at {depart}.\n\
                 Return flight on day {days}, leaving {dest} at {back}.\n\
                 Price: €{price} return per person, cabin bag included.\n\
                 Cheaper but slower: {alt} at €{alt_price}, one stop via {hub}."
            );
            Part {
                summary: format!("{airline} {code} {number}, nonstop, €{price} return"),
                facts: json!({"airline": airline, "flight": format!("{code} {number}"), "price": price, "depart": depart, "back": back}),
                text,
            }
        }
        Specialist::Hotels => {
            let area = dice.pick(&[
                "the old town",
                "the riverside district",
                "the harbour district",
                "the garden district",
                "the arts quarter",
            ]);
            let name = format!(
                "{} {}",
                dice.pick(&["Casa", "Hotel", "Maison", "The"]),
                dice.pick(&["Aurora", "Lumen", "Azul", "Verde", "Marés", "Solace"])
            );
            let budget = format!(
                "{} {}",
                dice.pick(&["Hostel", "Pension", "Inn"]),
                dice.pick(&["Central", "Alegria", "Norte", "Sol"])
            );
            let nightly = 80 + dice.roll(140);
            let budget_nightly = 35 + dice.roll(40);
            let rating = 40 + dice.roll(10);
            let reviews = 300 + dice.roll(3000);
            let nights = days.saturating_sub(1).max(1);
            let text = format!(
                "Checked 38 hotels in {dest} for {nights} night{s}.\n\
                 Top pick: {name} in {area}, rated {r1}.{r2} by {reviews} guests, €{nightly} a night with breakfast.\n\
                 Budget option: {budget}, €{budget_nightly} a night, ten minutes from the centre.\n\
                 Both have free cancellation until a week before arrival.",
                s = if nights == 1 { "" } else { "s" },
                r1 = rating / 10,
                r2 = rating % 10,
            );
            Part {
                summary: format!("{name} in {area}, €{nightly} a night"),
                facts: json!({"hotel": name, "area": area, "nightly": nightly, "nights": nights}),
                text,
            }
        }
        Specialist::Weather => {
            const HIGHS: [i64; 12] = [14, 15, 18, 20, 23, 27, 29, 29, 27, 23, 18, 15];
            let high = HIGHS[trip.month_index()] + dice.roll(5) as i64 - 2;
            let low = high - 7 - dice.roll(3) as i64;
            let mut forecast = Vec::new();
            let mut rainy = Vec::new();
            for day in 1..=days {
                let sky = dice.pick(&["sunny", "sunny", "partly cloudy", "cloudy", "light rain"]);
                if sky == "light rain" {
                    rainy.push(day);
                }
                let t = high + dice.roll(5) as i64 - 2;
                forecast.push(format!("Day {day}: {sky}, {t}°C"));
            }
            let text = format!(
                "Typical {month} weather in {dest}: highs around {high}°C, lows around {low}°C.\n\
                 {forecast}.\n\
                 {advice}",
                forecast = forecast.join(". "),
                advice = if rainy.is_empty() {
                    "No rain expected: bring sunscreen and comfortable shoes.".to_owned()
                } else {
                    format!(
                        "Rain is likely on day {}: pack a light jacket and keep a museum for then.",
                        rainy
                            .iter()
                            .map(u32::to_string)
                            .collect::<Vec<_>>()
                            .join(" and ")
                    )
                },
            );
            Part {
                summary: format!(
                    "highs around {high}°C, {}",
                    match rainy.len() {
                        0 => "no rain expected".to_owned(),
                        1 => "one rainy day".to_owned(),
                        n => format!("{n} rainy days"),
                    }
                ),
                facts: json!({"high": high, "low": low, "rainy_days": rainy}),
                text,
            }
        }
    }
}

/// The combined plan from the parts that arrived (by specialist id).
pub fn plan_text(trip: &Trip, parts: &Map<String, Value>) -> String {
    let summary = |id: &str| {
        parts
            .get(id)
            .and_then(|p| p.get("summary"))
            .and_then(Value::as_str)
            .map_or_else(|| "no answer in time".to_owned(), str::to_owned)
    };
    let fact = |id: &str, key: &str| {
        parts
            .get(id)
            .and_then(|p| p.pointer(&format!("/facts/{key}")))
            .cloned()
    };
    let rainy: Vec<u64> = fact("weather", "rainy_days")
        .and_then(|v| serde_json::from_value(v).ok())
        .unwrap_or_default();
    let hotel = fact("hotels", "hotel")
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| "your hotel".into());
    let mut dice = Dice(trip.seed() ^ 0x5151);
    let outdoor = [
        "a walking tour of the old town",
        "the food market, then the viewpoint at sunset",
        "a bike ride along the water",
        "a day trip to the coast",
        "the botanical garden and a long lunch",
        "the castle and the streets around it",
    ];
    let indoor = [
        "the national museum and a cooking class",
        "the modern art museum and a café afternoon",
        "the covered market and a wine tasting",
    ];
    // Each activity once, in an order fixed by the trip.
    let mut outdoor = outdoor.to_vec();
    let mut indoor = indoor.to_vec();
    let mut days = Vec::new();
    for day in 1..=trip.days {
        let rain = rainy.contains(&u64::from(day));
        let pool = if rain && !indoor.is_empty() || outdoor.is_empty() {
            &mut indoor
        } else {
            &mut outdoor
        };
        let activity = if pool.is_empty() {
            "a free day to wander"
        } else {
            pool.remove(dice.roll(pool.len() as u64) as usize)
        };
        let line = if day == 1 && trip.days > 1 {
            format!("Day 1: arrive, check in at {hotel}, then {activity}.")
        } else if day == trip.days && trip.days > 1 {
            format!("Day {day}: {activity}, then the flight home.")
        } else {
            format!("Day {day}: {activity}.")
        };
        days.push(line);
    }
    let price = fact("flights", "price")
        .and_then(|v| v.as_u64())
        .unwrap_or(0);
    let nightly = fact("hotels", "nightly")
        .and_then(|v| v.as_u64())
        .unwrap_or(0);
    let nights = fact("hotels", "nights")
        .and_then(|v| v.as_u64())
        .unwrap_or(0);
    let total = price + nightly * nights + 60 * u64::from(trip.days);
    format!(
        "Your {days}-day trip to {dest} in {month}\n\
         Getting there: {flights}.\n\
         Where to stay: {hotels}.\n\
         Weather: {weather}.\n\
         {itinerary}\n\
         Estimated budget: about €{total} per person, with €60 a day for food and tickets.",
        days = trip.days,
        dest = trip.destination,
        month = trip.month,
        flights = summary("flights"),
        hotels = summary("hotels"),
        weather = summary("weather"),
        itinerary = days.join("\n"),
    )
}

// ---- the coordinator ------------------------------------------------------

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

/// Appends `text` to `serial` token by token at `interval`. Stops early if
/// the message was ended by someone else (an append is refused).
async fn stream_text(link: &Link, channel: &str, serial: &str, text: &str, interval: Duration) {
    stream_with_progress(link, channel, serial, text, interval, |_| {}).await;
}

async fn stream_with_progress(
    link: &Link,
    channel: &str,
    serial: &str,
    text: &str,
    interval: Duration,
    mut progress: impl FnMut(f64),
) -> bool {
    let tokens = tokenize(text);
    let start = tokio::time::Instant::now();
    let mut last = None;
    for (i, token) in tokens.iter().enumerate() {
        tokio::time::sleep_until(start + interval * i as u32).await;
        let reply = link.append(channel, serial, token);
        if i % 8 == 7 {
            // Check the previous batch: a refused append means the message
            // was cancelled or deleted.
            if let Some(previous) = last.take() {
                let previous: super::link::Reply = previous;
                if previous.wait().await.is_err() {
                    return false;
                }
            }
            last = Some(reply);
            progress(i as f64 / tokens.len() as f64);
        }
    }
    match last {
        Some(reply) => reply.wait().await.is_ok(),
        None => true,
    }
}

fn interval(tokens_per_second: f64) -> Duration {
    if tokens_per_second > 0.0 {
        Duration::from_secs_f64(1.0 / tokens_per_second)
    } else {
        Duration::ZERO
    }
}

fn request_of(message: &Message) -> Option<&str> {
    message.extras.as_ref()?.get("request")?.as_str()
}

fn agent_of(message: &Message) -> Option<&str> {
    message.extras.as_ref()?.get("agent")?.as_str()
}

// ---- the specialists ------------------------------------------------------

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trips_parse() {
        let trip = Trip::parse("4 days in Lisbon in May, from Berlin");
        assert_eq!(trip.destination, "Lisbon");
        assert_eq!(trip.origin, "Berlin");
        assert_eq!(trip.days, 4);
        assert_eq!(trip.month, "May");
        let trip = Trip::parse("a weekend to Ghent in october");
        assert_eq!(trip.destination, "Ghent");
        assert_eq!(trip.days, 2);
        assert_eq!(trip.month, "October");
        assert_eq!(Trip::parse("three nights in Kyoto").days, 3);
    }

    #[test]
    fn findings_and_plan_are_deterministic() {
        let trip = Trip::parse("5 days in Rome in April");
        let mut parts = Map::new();
        for s in SPECIALISTS {
            let part = findings(s, &trip);
            assert_eq!(part.text, findings(s, &trip).text);
            parts.insert(
                s.id().into(),
                json!({"summary": part.summary, "facts": part.facts}),
            );
        }
        let plan = plan_text(&trip, &parts);
        assert!(plan.contains("Day 5"), "{plan}");
        assert!(plan.starts_with("Your 5-day trip to Rome in April"));
        assert!(!plan.contains("no answer in time"));
    }
}
