//! The message conventions Tether gives meaning to: interrupting a streamed
//! response and handing a conversation to a human. One definition here, used
//! by the server, the LLM bridge and the SDKs.
//!
//! - **cancel**: a message named [`CANCEL`] whose `extras.target` (or string
//!   `data`) is the serial of a streamed response asks its producer to stop.
//! - **handoff**: a message named [`HANDOFF`] with `extras.action` `claim` or
//!   `release`; publishing one needs the `operator` capability.

use serde_json::{Map, Value};

use crate::serial::Serial;

/// Name of a cancel request.
pub const CANCEL: &str = "cancel";

/// Name of a steer request (same targeting as cancel; a convention only).
pub const STEER: &str = "steer";

/// Name of a handoff message (claim / release).
pub const HANDOFF: &str = "handoff";

/// The serial text a cancel request targets, from its name, extras and data;
/// `None` if it is not a cancel request.
pub fn cancel_target<'a>(
    name: Option<&str>,
    extras: Option<&'a Map<String, Value>>,
    data: &'a Value,
) -> Option<&'a str> {
    if name != Some(CANCEL) {
        return None;
    }
    extras
        .and_then(|e| e.get("target"))
        .and_then(Value::as_str)
        .or_else(|| data.as_str())
}

/// The response serial a cancel request targets, parsed.
pub fn cancel_serial(
    name: Option<&str>,
    extras: Option<&Map<String, Value>>,
    data: &Value,
) -> Option<Serial> {
    cancel_target(name, extras, data)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn extras(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    #[test]
    fn targets() {
        let s = "1764151200000-0000000000000042";
        let e = extras(json!({"target": s}));
        assert_eq!(
            cancel_target(Some("cancel"), Some(&e), &Value::Null),
            Some(s)
        );
        assert_eq!(cancel_target(Some("cancel"), None, &json!(s)), Some(s));
        assert_eq!(cancel_target(Some("steer"), Some(&e), &Value::Null), None);
        assert_eq!(cancel_target(None, Some(&e), &Value::Null), None);
        assert!(cancel_serial(Some("cancel"), Some(&e), &Value::Null).is_some());
        assert!(cancel_serial(Some("cancel"), None, &json!("nope")).is_none());
    }
}
