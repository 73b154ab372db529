//! User-facing wording for decode errors.
//!
//! serde and axum describe a failure in terms of the Rust types it was
//! decoded into (`expected struct PublishBody`, `data did not match any
//! variant of untagged enum PublishBody`, `Failed to deserialize the JSON
//! body into the target type`). Those names are internal, change with
//! refactors and mean nothing to a client. Everything here rewrites only
//! the message; the error code is chosen by the caller and never changes.

/// How serde named the type it expected.
#[derive(Clone, Copy)]
enum Kind {
    Untagged,
    Tagged,
    Struct,
    Enum,
}

/// Phrases serde puts before a type name, longest first so that
/// `tuple struct X` is not read as `struct X`.
const PHRASES: [(&str, Kind); 8] = [
    (
        "data did not match any variant of untagged enum ",
        Kind::Untagged,
    ),
    ("internally tagged enum ", Kind::Tagged),
    ("adjacently tagged enum ", Kind::Tagged),
    ("struct variant ", Kind::Struct),
    ("tuple struct ", Kind::Struct),
    ("unit struct ", Kind::Struct),
    ("struct ", Kind::Struct),
    ("enum ", Kind::Enum),
];

/// What a type is, in the words of the protocol docs.
fn describe(name: &str, kind: Kind) -> &'static str {
    match name {
        "PublishBody" => "a message object or an array of message objects",
        "ClientFrame" => "a frame object with a \"type\" field",
        "NewMessage" => "a message object",
        "TokenRequest" => "a token request object",
        _ => match kind {
            Kind::Untagged => "a value of one of the documented shapes",
            Kind::Tagged | Kind::Struct => "a JSON object",
            Kind::Enum => "one of the documented values",
        },
    }
}

/// Rewrites serde's type names in `text` into protocol terms.
pub fn user_facing(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    loop {
        // The earliest phrase followed by a Rust type name.
        let found = PHRASES
            .iter()
            .filter_map(|(phrase, kind)| {
                let mut from = 0;
                while let Some(at) = rest[from..].find(phrase) {
                    let start = from + at;
                    let name_at = start + phrase.len();
                    let name_len = rest[name_at..]
                        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
                        .unwrap_or(rest.len() - name_at);
                    let name = &rest[name_at..name_at + name_len];
                    if name.starts_with(|c: char| c.is_ascii_uppercase()) {
                        return Some((start, phrase.len(), name, *kind));
                    }
                    from = name_at;
                }
                None
            })
            .min_by_key(|(start, len, _, _)| (*start, usize::MAX - len));
        let Some((start, len, name, kind)) = found else {
            out.push_str(rest);
            return out;
        };
        out.push_str(&rest[..start]);
        if matches!(kind, Kind::Untagged) {
            out.push_str("expected ");
        }
        out.push_str(describe(name, kind));
        rest = &rest[start + len + name.len()..];
    }
}

/// Prefixes axum puts on its rejection texts, and ours.
const AXUM_PREFIXES: [(&str, &str); 4] = [
    (
        "Failed to deserialize the JSON body into the target type: ",
        "invalid body: ",
    ),
    (
        "Failed to parse the request body as JSON: ",
        "the body is not valid JSON: ",
    ),
    ("Failed to deserialize query string: ", "invalid query: "),
    (
        "Expected request with `Content-Type: application/json`",
        "send the body as JSON with Content-Type: application/json",
    ),
];

/// The message for an axum JSON or query rejection.
pub fn rejection(text: &str) -> String {
    for (prefix, ours) in AXUM_PREFIXES {
        if let Some(rest) = text.strip_prefix(prefix) {
            return format!("{ours}{}", user_facing(rest));
        }
    }
    if text.starts_with("Failed to buffer the request body") {
        return if text.contains("length limit") {
            "the request body is larger than max_frame_bytes".to_owned()
        } else {
            "the request body could not be read".to_owned()
        };
    }
    user_facing(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rust_type_names_become_protocol_terms() {
        assert_eq!(
            user_facing("data did not match any variant of untagged enum PublishBody"),
            "expected a message object or an array of message objects"
        );
        assert_eq!(
            user_facing("invalid type: integer `1`, expected internally tagged enum ClientFrame"),
            "invalid type: integer `1`, expected a frame object with a \"type\" field"
        );
        assert_eq!(
            user_facing("invalid type: string \"x\", expected struct AppendOp at line 1"),
            "invalid type: string \"x\", expected a JSON object at line 1"
        );
        // Lower-case words after "struct"/"enum" are prose, left alone.
        assert_eq!(user_facing("an enum value"), "an enum value");
        assert_eq!(
            rejection(
                "Failed to deserialize the JSON body into the target type: missing field `data`"
            ),
            "invalid body: missing field `data`"
        );
    }
}
