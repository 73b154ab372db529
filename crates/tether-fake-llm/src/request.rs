//! Reading a chat completions request: the parts of it the fake acts on.

use serde::Deserialize;
use serde_json::Value;

/// The request body, as far as the fake reads it.
#[derive(Debug, Deserialize)]
pub(crate) struct Request {
    #[serde(default)]
    pub(crate) model: Option<String>,
    pub(crate) messages: Vec<RequestMessage>,
    #[serde(default)]
    pub(crate) stream: bool,
    #[serde(default)]
    pub(crate) max_tokens: Option<usize>,
    #[serde(default)]
    pub(crate) stream_options: Option<StreamOptions>,
}

/// One chat message of the request.
#[derive(Debug, Deserialize)]
pub(crate) struct RequestMessage {
    pub(crate) role: String,
    #[serde(default)]
    pub(crate) content: Value,
}

/// `stream_options` of a request.
#[derive(Debug, Deserialize)]
pub(crate) struct StreamOptions {
    #[serde(default)]
    pub(crate) include_usage: bool,
}

impl Request {
    /// The text of the last user message (content parts joined).
    pub(crate) fn last_user_text(&self) -> String {
        self.messages
            .iter()
            .rev()
            .find(|m| m.role == "user")
            .map(|m| text_of(&m.content))
            .unwrap_or_default()
    }

    /// Whitespace-separated words over every message, as a stand-in for
    /// the prompt's token count.
    pub(crate) fn prompt_words(&self) -> usize {
        self.messages
            .iter()
            .map(|m| text_of(&m.content).split_whitespace().count())
            .sum()
    }
}

/// A message's content as text: a string, or the `text` of its parts.
fn text_of(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    }
}

/// The number in `[[name:N]]`, if the prompt has one.
pub fn directive(prompt: &str, name: &str) -> Option<u64> {
    let start = prompt.find(&format!("[[{name}:"))? + name.len() + 3;
    let len = prompt[start..].find("]]")?;
    prompt[start..start + len].trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directives_parse() {
        assert_eq!(directive("a [[tokens:12]] b", "tokens"), Some(12));
        assert_eq!(directive("[[tps: 0 ]]", "tps"), Some(0));
        assert_eq!(directive("[[tokens:x]]", "tokens"), None);
        assert_eq!(directive("[[tokens:5", "tokens"), None);
        assert_eq!(directive("nothing", "fail"), None);
    }

    #[test]
    fn the_last_user_message_is_the_prompt() {
        let request: Request = serde_json::from_value(serde_json::json!({
            "messages": [
                {"role": "user", "content": "first"},
                {"role": "assistant", "content": "reply"},
                {"role": "user", "content": [{"type": "text", "text": "a"}, {"text": "b"}]},
            ]
        }))
        .expect("request");
        assert_eq!(request.last_user_text(), "a b");
        assert_eq!(request.prompt_words(), 4);
    }
}
