//! What the demo's built-in model says: readable, canned explanations
//! chosen by keywords of the question, split into word-piece tokens. The
//! model itself is the one fake OpenAI-compatible server
//! ([`tether_fake_llm`]), started in-process on a loopback port so the demo
//! runs offline; the LLM bridge talks to it exactly as to a real model.
//!
//! `[[tokens:N]]` answers `Counting: t1 t2 ... tN`, one token each, so a
//! browser test spots a duplicated or missing token at once.

use std::time::Duration;

use tether_fake_llm::{Answers, FakeLlm, FakeOptions, Prompt, tokenize};

/// Starts the demo's model on a free loopback port; it stops when dropped.
pub async fn start(tokens_per_second: f64, first_token: Duration) -> std::io::Result<FakeLlm> {
    let options = FakeOptions {
        tokens_per_second,
        first_token,
        model: "tether-demo".into(),
        answers: Answers::new(answer_tokens),
        ..FakeOptions::default()
    };
    tether_fake_llm::serve(([127, 0, 0, 1], 0).into(), options).await
}

/// Most numbered tokens a visitor may ask for.
const MAX_TOKENS: usize = 20_000;

/// The answer to `prompt`, as the tokens the model streams.
fn answer_tokens(prompt: &Prompt<'_>) -> Vec<String> {
    if prompt.tokens_asked {
        let mut tokens = vec!["Counting:".to_owned()];
        tokens.extend((1..=prompt.tokens.min(MAX_TOKENS)).map(|i| format!(" t{i}")));
        return tokens;
    }
    tokenize(&answer_text(prompt.text))
}

fn answer_text(prompt: &str) -> String {
    let lower = prompt.to_lowercase();
    let has = |words: &[&str]| words.iter().any(|w| lower.contains(w));
    let quoted: String = {
        let clean = prompt.split_whitespace().collect::<Vec<_>>().join(" ");
        if clean.chars().count() > 60 {
            format!("{}…", clean.chars().take(60).collect::<String>())
        } else {
            clean
        }
    };
    if has(&[
        "refresh",
        "resume",
        "reconnect",
        "drop",
        "offline",
        "network",
        "reload",
    ]) {
        return RESUME.into();
    }
    if has(&["stop", "cancel", "interrupt", "abort"]) {
        return CANCEL.into();
    }
    if has(&[
        "human", "operator", "person", "handoff", "hand off", "support",
    ]) {
        return HANDOFF.into();
    }
    if has(&["presence", "who is", "online", "device", "tab"]) {
        return PRESENCE.into();
    }
    if has(&["agent", "planner", "trip", "travel", "multi"]) {
        return AGENTS.into();
    }
    let greeting = lower
        .split(|c: char| !c.is_alphanumeric())
        .next()
        .is_some_and(|w| ["hi", "hello", "hey", "hallo", "bonjour"].contains(&w));
    if greeting {
        return HELLO.into();
    }
    format!("You asked: “{quoted}”. {GENERIC}")
}

const RESUME: &str = "Good question. When your connection drops, nothing is lost. Every channel in Tether is a durable, ordered log, and your browser remembers the last position it saw. When it reconnects, it sends that position back, and the server replays exactly what you missed before switching to the live stream: no gap, no duplicate.\n\nA page refresh works the same way. The SDK keeps the conversation and its position in session storage, so the page shows the answer so far at once and fetches only the rest. Try it now: press refresh while I am still typing, or use the “Simulate network drop” button, and watch this very message carry on where it was.";

const CANCEL: &str = "You can interrupt me at any time. The Stop button publishes a small cancel message on this conversation that points at my response. The server marks the response as cancelled right away, so even if the model keeps producing text, no further token is written, and everybody, including a tab you open later, sees the same final state.\n\nCancelling is just another message in the log, so it works the same over WebSocket, over plain HTTP, or from a script with curl.";

const HANDOFF: &str = "If you would rather talk to a person, an operator can take over this conversation from the Operator page. When they claim it, I stop answering and my status changes to handed-off, so you always know who you are talking to. The operator sees the whole history, writes to you in this same conversation, and hands it back to me when they are done.\n\nClaiming needs the operator capability, so a regular user cannot pretend to be an operator.";

const PRESENCE: &str = "Presence tells you who is here right now. Each open tab or device is one member, so if you open this conversation twice you will see yourself twice in the list, and you will see me with my current status: thinking, streaming or idle. Presence is live state rather than history, and it stays consistent when connections drop and come back.";

const AGENTS: &str = "Several agents can work on one conversation at once. On the Planner page, a coordinator splits a trip request into tasks for a flights agent, a hotels agent and a weather agent. Each of them streams its own part straight into the conversation and reports its progress through presence, so no central process relays their tokens. When all three are done, the coordinator writes the combined plan.";

const HELLO: &str = "Hello! I am the demo assistant. My answers come from a small built-in fake language model, so everything here runs offline, but they travel through Tether exactly like a real model's would: one message that grows token by token. Ask me about resuming after a refresh, stopping an answer, talking to a human, or who is online.";

const GENERIC: &str = "Here is how your question travels. Your message was published to this conversation's channel and stored durably. I saw it, asked the language model for an answer, and the model's tokens are being appended to one single message, which every open tab receives live.\n\nBecause the channel is an ordered log, a tab that joins late, or a page that refreshes in the middle of an answer, first receives the whole answer so far and then the rest as it is written. Nothing is duplicated and nothing goes missing. You can test it right now: refresh the page, open a second tab, or press Stop.";

#[cfg(test)]
mod tests {
    use super::*;

    fn prompt(text: &str) -> Prompt<'_> {
        let asked = tether_fake_llm::directive(text, "tokens");
        Prompt {
            text,
            tokens: asked.map_or(0, |n| n as usize),
            tokens_asked: asked.is_some(),
        }
    }

    #[test]
    fn numbered_tokens_on_request() {
        assert_eq!(
            answer_tokens(&prompt("go [[tokens:3]]")).concat(),
            "Counting: t1 t2 t3"
        );
    }

    #[test]
    fn answers_are_long_and_join_back_to_the_text() {
        for text in ["hello", "what if I refresh?", "anything", "talk to a human"] {
            let tokens = answer_tokens(&prompt(text));
            assert!(tokens.len() > 40, "{text}: {}", tokens.len());
            assert_eq!(tokens.concat(), answer_text(text));
        }
    }
}
