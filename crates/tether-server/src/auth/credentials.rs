//! Reading a credential from an HTTP request or WebSocket upgrade.

use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use base64::Engine;
use tether_core::{ErrorCode, ErrorInfo};

/// A credential as presented, not yet verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credentials {
    /// Nothing was presented.
    None,
    /// An API key.
    Key {
        /// The key's name.
        name: String,
        /// The key's secret.
        secret: String,
    },
    /// A JWT.
    Token(String),
}

impl Credentials {
    /// From `Authorization: Bearer <jwt>` / `Basic <base64 name:secret>`,
    /// else from the `token` or `key` query parameters (browsers cannot set
    /// headers on WebSockets or EventSource).
    pub fn from_request(
        headers: &HeaderMap,
        token: Option<&str>,
        key: Option<&str>,
    ) -> Result<Credentials, ErrorInfo> {
        if let Some(value) = headers.get(AUTHORIZATION) {
            let value = value
                .to_str()
                .map_err(|_| malformed("Authorization header"))?;
            let (scheme, rest) = value
                .split_once(' ')
                .ok_or_else(|| malformed("Authorization header"))?;
            return match scheme.to_ascii_lowercase().as_str() {
                "bearer" => Ok(Credentials::Token(rest.trim().to_owned())),
                "basic" => {
                    let decoded = base64::engine::general_purpose::STANDARD
                        .decode(rest.trim())
                        .map_err(|_| malformed("Basic credential"))?;
                    let text =
                        String::from_utf8(decoded).map_err(|_| malformed("Basic credential"))?;
                    Credentials::key(&text)
                }
                _ => Err(malformed("Authorization scheme (use Bearer or Basic)")),
            };
        }
        match (token, key) {
            (Some(token), _) => Ok(Credentials::Token(token.to_owned())),
            (None, Some(key)) => Credentials::key(key),
            (None, None) => Ok(Credentials::None),
        }
    }

    /// Parses `name:secret`.
    pub fn key(text: &str) -> Result<Credentials, ErrorInfo> {
        let (name, secret) = text
            .split_once(':')
            .ok_or_else(|| malformed("API key (expected name:secret)"))?;
        Ok(Credentials::Key {
            name: name.to_owned(),
            secret: secret.to_owned(),
        })
    }
}

fn malformed(what: &str) -> ErrorInfo {
    ErrorInfo::new(ErrorCode::Unauthorized, format!("malformed {what}"))
}
