//! What the authorization hardening tests share: a secured server (an
//! operator key and an app key), REST callers with a credential, tokens.
#![allow(dead_code)]

use std::collections::HashMap;

use base64::Engine as _;
use reqwest::Method;
use serde_json::{Value, json};
use tether_core::Capabilities;
use tether_server::Config;
use tether_server::auth::KeyConfig;

use crate::support::{TestServer, Ws};

pub const ADMIN_SECRET: &str = "admin-secret-0123456789";
pub const APP_SECRET: &str = "app-secret-0123456789";
pub const CHANNEL: &str = "conversation:user-1";

/// Keys of a secured server: `admin` may do everything (operators act
/// through it); `app` may do everything on conversations except operate.
pub fn secure(c: &mut Config) {
    c.dev = false;
    c.cors_origins.clear();
    let app_caps: Capabilities = serde_json::from_value(json!({
        "conversation:*": ["subscribe", "publish", "history", "presence",
            "message-update-own", "message-update-any",
            "message-delete-own", "message-delete-any"]
    }))
    .expect("caps");
    c.keys = HashMap::from([
        (
            "admin".to_owned(),
            KeyConfig {
                secret: ADMIN_SECRET.into(),
                capabilities: Capabilities::all(),
            },
        ),
        (
            "app".to_owned(),
            KeyConfig {
                secret: APP_SECRET.into(),
                capabilities: app_caps,
            },
        ),
    ]);
}

pub async fn secured(adjust: impl FnOnce(&mut Config)) -> TestServer {
    TestServer::start_with(|c| {
        secure(c);
        adjust(c);
    })
    .await
}

/// A REST caller: a credential (or none) and the client it acts as.
#[derive(Clone)]
pub struct Api {
    base: String,
    pub authorization: Option<String>,
    client_id: Option<String>,
    http: reqwest::Client,
}

impl Api {
    pub fn new(base: &str) -> Api {
        Api {
            base: base.to_owned(),
            authorization: None,
            client_id: None,
            http: reqwest::Client::new(),
        }
    }

    pub fn key(base: &str, name: &str, secret: &str) -> Api {
        let pair = base64::engine::general_purpose::STANDARD.encode(format!("{name}:{secret}"));
        Api {
            authorization: Some(format!("Basic {pair}")),
            ..Api::new(base)
        }
    }

    pub fn admin(server: &TestServer) -> Api {
        Api::key(&server.base, "admin", ADMIN_SECRET)
    }

    pub fn app(server: &TestServer) -> Api {
        Api::key(&server.base, "app", APP_SECRET)
    }

    pub fn token(base: &str, token: &str) -> Api {
        Api {
            authorization: Some(format!("Bearer {token}")),
            ..Api::new(base)
        }
    }

    pub fn acting_as(&self, client_id: &str) -> Api {
        Api {
            client_id: Some(client_id.to_owned()),
            ..self.clone()
        }
    }

    pub async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(auth) = &self.authorization {
            request = request.header("authorization", auth);
        }
        if let Some(client) = &self.client_id {
            request = request.header("x-tether-client-id", client);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.call(Method::POST, path, Some(body)).await
    }

    pub async fn patch(&self, path: &str, body: Value) -> (u16, Value) {
        self.call(Method::PATCH, path, Some(body)).await
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.call(Method::GET, path, None).await
    }

    /// Publishes one message; returns its serial.
    pub async fn publish(&self, channel: &str, message: Value) -> String {
        let (status, body) = self
            .post(&format!("/channels/{channel}/messages"), message)
            .await;
        assert_eq!(status, 201, "{body}");
        body["serial"].as_str().expect("serial").to_owned()
    }

    pub async fn history(&self, channel: &str) -> Vec<Value> {
        let (status, body) = self
            .get(&format!(
                "/channels/{channel}/messages?direction=forwards&limit=1000"
            ))
            .await;
        assert_eq!(status, 200, "{body}");
        body["messages"].as_array().cloned().unwrap_or_default()
    }
}

/// Mints a token of the `app` key for `client_id` with `caps`.
pub async fn mint(server: &TestServer, client_id: &str, caps: Value) -> String {
    let (status, body) = Api::app(server)
        .post(
            "/keys/app/tokens",
            json!({"client_id": client_id, "capabilities": caps, "ttl_secs": 600}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    body["token"].as_str().expect("token").to_owned()
}

/// A user of their own conversation: may publish and change their own
/// messages, not operate.
pub async fn user_token(server: &TestServer) -> String {
    mint(
        server,
        "user-1",
        json!({CHANNEL: ["subscribe", "publish", "history",
            "message-update-own", "message-delete-own"]}),
    )
    .await
}

pub fn code(body: &Value) -> Option<u64> {
    body["error"]["code"].as_u64()
}

/// Sends a frame and returns its reply.
pub async fn ws_call(ws: &mut Ws, frame: Value) -> Value {
    let req = ws.request(frame).await;
    ws.reply(req).await
}
