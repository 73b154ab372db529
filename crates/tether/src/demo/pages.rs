//! The demo's web side: the built pages (served from a directory, `demo/dist`
//! by default) and the small "app back end" every real deployment has:
//! `POST /demo/api/session` mints a short-lived token for a browser, with
//! only the capabilities its role needs, and announces the conversation so
//! an agent joins it.

use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::{Path as UrlPath, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};
use tether_core::Capabilities;
use tokio::sync::{mpsc, oneshot};

use tether_server::auth::KeyConfig;
use tether_server::auth::token::{TokenRequest, mint};

/// How long a browser token lives; the SDK renews it before then.
const TOKEN_TTL_SECS: u64 = 3600;

/// What kind of agent a channel needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A conversation with the chat agent (`conversation:...`).
    Chat,
    /// A trip-planner conversation (`trip:...`).
    Trip,
}

/// A browser is about to use `channel`: make sure an agent watches it.
pub struct Announce {
    /// The channel.
    pub channel: String,
    /// Which agent it needs.
    pub kind: Kind,
    /// The user it belongs to.
    pub user: String,
    /// Answered once the agent is on its way.
    pub done: oneshot::Sender<()>,
}

/// State of the pages and the session endpoint.
pub struct Pages {
    /// Where the built pages are.
    pub assets: PathBuf,
    /// The demo's API key (name, config) that signs browser tokens.
    pub key_name: String,
    /// Its secret and capabilities.
    pub key: KeyConfig,
    /// To the agents' supervisor.
    pub announce: mpsc::Sender<Announce>,
}

/// `/` (redirects to the demo), `/demo/...` (the pages) and
/// `/demo/api/session`.
pub fn routes(pages: Arc<Pages>) -> Router {
    Router::new()
        .route("/", get(|| async { Redirect::temporary("/demo/") }))
        .route("/demo", get(|| async { Redirect::temporary("/demo/") }))
        .route("/demo/api/session", post(session))
        .route("/demo/", get(index))
        .route("/demo/{*path}", get(asset))
        .with_state(pages)
}

#[derive(Debug, Deserialize)]
struct SessionRequest {
    role: String,
    #[serde(default)]
    client_id: Option<String>,
    #[serde(default)]
    channel: Option<String>,
}

fn bad_request(message: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({"error": {"code": 40000, "message": message}})),
    )
        .into_response()
}

/// `POST /demo/api/session` `{role: "user" | "operator", client_id?, channel?}`
/// → `{client_id, token, expires_at}`. A user keeps the `client_id` it was
/// given (in `localStorage`), so its tabs are one user on several devices.
async fn session(State(pages): State<Arc<Pages>>, body: Option<Json<SessionRequest>>) -> Response {
    let Some(Json(request)) = body else {
        return bad_request("expected a JSON body {role, client_id?, channel?}");
    };
    let user_ops = [
        "subscribe",
        "publish",
        "history",
        "presence",
        "presence-subscribe",
        "message-update-own",
        "message-delete-own",
    ];
    let (client_id, capabilities) = match request.role.as_str() {
        "user" => {
            let id = request
                .client_id
                .filter(|id| valid_id(id, "u-", 8))
                .unwrap_or_else(|| new_id("u-", 8));
            let mut caps = serde_json::Map::new();
            for namespace in ["conversation", "trip"] {
                caps.insert(format!("{namespace}:{id}"), json!(user_ops));
                caps.insert(format!("{namespace}:{id}~*"), json!(user_ops));
            }
            if let Some(channel) = request.channel {
                let Some(kind) = channel_kind(&channel, &id) else {
                    return bad_request(
                        "channel must be conversation:<client_id>[~<id>] or trip:<client_id>[~<id>]",
                    );
                };
                let (done, ready) = oneshot::channel();
                let announce = Announce {
                    channel,
                    kind,
                    user: id.clone(),
                    done,
                };
                if pages.announce.send(announce).await.is_ok() {
                    let _ = ready.await;
                }
            }
            (id, Value::Object(caps))
        }
        "operator" => {
            let id = request
                .client_id
                .filter(|id| valid_id(id, "op-", 4))
                .unwrap_or_else(|| new_id("op-", 4));
            let caps = json!({
                "conversation:*": ["subscribe", "publish", "history", "presence", "presence-subscribe",
                                   "message-update-own", "message-delete-own", "operator"],
                "demo:conversations": ["subscribe", "history"],
            });
            (id, caps)
        }
        _ => return bad_request("role must be user or operator"),
    };
    let capabilities: Capabilities = match serde_json::from_value(capabilities) {
        Ok(caps) => caps,
        Err(err) => return bad_request(&err.to_string()),
    };
    let minted = mint(
        &pages.key_name,
        &pages.key,
        TokenRequest {
            client_id: Some(client_id.clone()),
            capabilities: Some(capabilities),
            ttl_secs: Some(TOKEN_TTL_SECS),
        },
    );
    match minted {
        Ok((token, expires_at)) => Json(json!({
            "client_id": client_id,
            "token": token,
            "expires_at": expires_at,
        }))
        .into_response(),
        Err(err) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({"error": {"code": err.code, "message": err.message}})),
        )
            .into_response(),
    }
}

/// `prefix` followed by exactly `len` lowercase hex digits.
fn valid_id(id: &str, prefix: &str, len: usize) -> bool {
    id.strip_prefix(prefix).is_some_and(|rest| {
        rest.len() == len
            && rest
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

fn new_id(prefix: &str, len: usize) -> String {
    let hex = format!("{:016x}", rand::random::<u64>());
    format!("{prefix}{}", &hex[..len])
}

/// Which agent `channel` needs, if it is one of `user`'s.
fn channel_kind(channel: &str, user: &str) -> Option<Kind> {
    let (kind, rest) = if let Some(rest) = channel.strip_prefix("conversation:") {
        (Kind::Chat, rest)
    } else if let Some(rest) = channel.strip_prefix("trip:") {
        (Kind::Trip, rest)
    } else {
        return None;
    };
    let rest = rest.strip_prefix(user)?;
    if rest.is_empty() {
        return Some(kind);
    }
    let suffix = rest.strip_prefix('~')?;
    let valid = (1..=16).contains(&suffix.len())
        && suffix
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    valid.then_some(kind)
}

async fn index(State(pages): State<Arc<Pages>>) -> Response {
    serve(&pages.assets, "index.html").await
}

async fn asset(State(pages): State<Arc<Pages>>, UrlPath(path): UrlPath<String>) -> Response {
    serve(&pages.assets, &path).await
}

/// Serves `path` from `root`: `chat` finds `chat.html`; nothing outside
/// `root` is reachable.
async fn serve(root: &Path, path: &str) -> Response {
    let path = path.trim_start_matches('/');
    let relative = Path::new(if path.is_empty() { "index.html" } else { path });
    if relative
        .components()
        .any(|c| !matches!(c, Component::Normal(_)))
    {
        return not_found();
    }
    let mut file = root.join(relative);
    if file.extension().is_none() {
        file.set_extension("html");
    }
    match tokio::fs::read(&file).await {
        Ok(bytes) => (
            [
                (header::CONTENT_TYPE, content_type(&file)),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            Body::from(bytes),
        )
            .into_response(),
        Err(_) if !root.join("index.html").exists() => not_built(root),
        Err(_) => not_found(),
    }
}

fn content_type(file: &Path) -> &'static str {
    match file
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or_default()
    {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" | "map" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "not found").into_response()
}

fn not_built(root: &Path) -> Response {
    let html = format!(
        "<!doctype html><meta charset=utf-8><title>Tether demo</title>\
         <body style=\"font:16px system-ui;max-width:40em;margin:4em auto\">\
         <h1>The demo pages are not built</h1>\
         <p>No <code>index.html</code> in <code>{}</code>. Build them once (needs Node.js 20+):</p>\
         <pre>cd demo &amp;&amp; npm ci &amp;&amp; npm run build</pre>\
         <p>then reload this page, or point <code>tether demo --assets DIR</code> at a built copy.</p>",
        html_escape(&root.display().to_string())
    );
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        html,
    )
        .into_response()
}

fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_channels_are_checked() {
        assert!(valid_id("u-0123abcd", "u-", 8));
        assert!(!valid_id("u-0123ABCD", "u-", 8));
        assert!(!valid_id("u-0123abc", "u-", 8));
        assert!(valid_id(&new_id("op-", 4), "op-", 4));
        let user = "u-0123abcd";
        assert_eq!(
            channel_kind("conversation:u-0123abcd", user),
            Some(Kind::Chat)
        );
        assert_eq!(channel_kind("trip:u-0123abcd~x1", user), Some(Kind::Trip));
        assert_eq!(channel_kind("conversation:u-0123abcdx", user), None);
        assert_eq!(channel_kind("conversation:u-99999999", user), None);
        assert_eq!(channel_kind("conversation:u-0123abcd~A", user), None);
        assert_eq!(channel_kind("other:u-0123abcd", user), None);
    }

    #[tokio::test]
    async fn files_outside_the_root_are_unreachable() {
        let dir = std::env::temp_dir();
        let response = serve(&dir, "../etc/passwd").await;
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
    }
}
