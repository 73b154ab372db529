//! The trip request and the specialists' fake findings: pure, deterministic.

use serde_json::{Map, Value, json};

use crate::demo::chat::now_ms;

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

    pub(super) fn client_id(self) -> String {
        format!("{}-agent", self.id())
    }

    pub(super) fn title(self) -> &'static str {
        match self {
            Specialist::Flights => "Flights",
            Specialist::Hotels => "Hotels",
            Specialist::Weather => "Weather",
        }
    }

    pub(super) fn task_channel(self) -> String {
        format!("tasks:{}", self.id())
    }

    /// Relative speed, so the three finish at different times.
    pub(super) fn pace(self) -> f64 {
        match self {
            Specialist::Flights => 0.8,
            Specialist::Hotels => 1.0,
            Specialist::Weather => 1.4,
        }
    }

    /// What the progress bar says before streaming starts.
    pub(super) fn warmup(self) -> &'static [&'static str] {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::demo::planner::SPECIALISTS;

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
