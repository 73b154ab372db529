//! Test harness: a real server on 127.0.0.1:0 with its own data directory,
//! and small WebSocket / HTTP / SSE clients that speak the wire protocol.
//!
//! Frames are handed to tests as JSON values (tests assert on exact JSON),
//! but every frame the server sends is also decoded into
//! `tether_protocol::ServerFrame` (every SSE event into `SseEvent`), so
//! every end-to-end test checks that the server speaks the protocol types;
//! the helpers build their requests from `tether_protocol::ClientFrame`.
#![allow(dead_code)]

pub mod bin;
pub mod process;

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tether_protocol::rest::{AppendOp, NewMessage};
use tether_protocol::{ClientFrame, ServerFrame};
use tether_server::{Config, Server};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How long a test waits for any single expected frame.
pub const WAIT: Duration = Duration::from_secs(10);

/// A server running in this process.
pub struct TestServer {
    pub server: Option<Server>,
    pub dir: tempfile::TempDir,
    pub base: String,
}

impl TestServer {
    /// Starts a server in dev mode with a fresh data directory.
    pub async fn start() -> TestServer {
        TestServer::start_with(|_| {}).await
    }

    /// Starts the fake OpenAI-compatible model with `options` and a server
    /// whose LLM bridge points at it (model `fake-1`), after letting the
    /// test adjust the config. Keep the `FakeLlm` alive as long as the
    /// server.
    pub async fn with_fake_llm(
        options: tether_fake_llm::FakeOptions,
        adjust: impl FnOnce(&mut Config),
    ) -> (TestServer, tether_fake_llm::FakeLlm) {
        let fake = tether_fake_llm::serve("127.0.0.1:0".parse().expect("addr"), options)
            .await
            .expect("fake LLM starts");
        let base_url = fake.base_url();
        let server = TestServer::start_with(|c| {
            c.llm.base_url = Some(base_url);
            c.llm.model = Some("fake-1".into());
            adjust(c);
        })
        .await;
        (server, fake)
    }

    /// Starts a server after letting the test adjust the config.
    pub async fn start_with(adjust: impl FnOnce(&mut Config)) -> TestServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = Config {
            listen: "127.0.0.1:0".parse().expect("addr"),
            data_dir: dir.path().join("data"),
            dev: true,
            ..Config::default()
        };
        adjust(&mut config);
        let server = Server::start(config).await.expect("server starts");
        let base = format!("http://{}", server.addr());
        TestServer {
            server: Some(server),
            dir,
            base,
        }
    }

    pub fn ws_url(&self) -> String {
        format!("{}/ws", self.base.replace("http://", "ws://"))
    }

    /// A raw client that receives every fragment (roll-up off), so tests
    /// can count frames exactly.
    pub async fn ws(&self) -> Ws {
        Ws::connect(&format!("{}?rollup_ms=0", self.ws_url())).await
    }

    pub fn http(&self) -> Http {
        Http {
            base: self.base.clone(),
            client: reqwest::Client::new(),
        }
    }

    pub async fn stop(mut self) {
        if let Some(server) = self.server.take() {
            server.shutdown().await;
        }
    }
}

/// A raw protocol client over a real WebSocket.
pub struct Ws {
    pub socket: WebSocketStream<MaybeTlsStream<TcpStream>>,
    pub connected: Value,
    next_req: u64,
    /// Frames set aside while waiting for a reply, delivered by `recv` first.
    backlog: std::collections::VecDeque<Value>,
    /// `message` frames decoded into the protocol type so far.
    checked_messages: usize,
}

/// How many `message` frames per connection the harness decodes into the
/// protocol type (all other frames are always decoded).
const CHECKED_MESSAGES: usize = 2_000;

impl Ws {
    pub async fn connect(url: &str) -> Ws {
        let (socket, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("websocket connects");
        let mut ws = Ws {
            socket,
            connected: Value::Null,
            next_req: 1,
            backlog: std::collections::VecDeque::new(),
            checked_messages: 0,
        };
        ws.connected = ws.recv_type("connected").await;
        ws
    }

    pub async fn send(&mut self, frame: Value) {
        self.socket
            .send(WsMessage::Text(frame.to_string().into()))
            .await
            .expect("send frame");
    }

    pub async fn send_raw(&mut self, text: &str) {
        self.socket
            .send(WsMessage::Text(text.to_owned().into()))
            .await
            .expect("send frame");
    }

    /// Sends a frame with a fresh `req` and returns the req.
    pub async fn request(&mut self, mut frame: Value) -> u64 {
        let req = self.next_req;
        self.next_req += 1;
        frame["req"] = json!(req);
        self.send(frame).await;
        req
    }

    /// The next JSON frame, skipping heartbeats. Panics on timeout/close.
    pub async fn recv(&mut self) -> Value {
        self.try_recv(WAIT).await.expect("a frame before timeout")
    }

    /// The next JSON frame within `wait`, skipping heartbeats; `None` on
    /// timeout or close.
    pub async fn try_recv(&mut self, wait: Duration) -> Option<Value> {
        if let Some(frame) = self.backlog.pop_front() {
            return Some(frame);
        }
        self.read_socket(wait).await
    }

    async fn read_socket(&mut self, wait: Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let msg = tokio::time::timeout_at(deadline, self.socket.next())
                .await
                .ok()??
                .ok()?;
            match msg {
                WsMessage::Text(text) => {
                    let value: Value = serde_json::from_str(&text).expect("server sends JSON");
                    self.check_frame(&value, &text);
                    if value["type"] != "heartbeat" {
                        return Some(value);
                    }
                }
                WsMessage::Close(_) => return None,
                _ => {}
            }
        }
    }

    /// Panics unless `value` decodes into `tether_protocol::ServerFrame`.
    /// Every frame is checked except `message` frames past the first
    /// [`CHECKED_MESSAGES`] of a connection: firehose tests read 100k of
    /// them in a debug build, where decoding each twice would make the
    /// test's own reader the slow consumer the server disconnects.
    fn check_frame(&mut self, value: &Value, text: &str) {
        if value["type"] == "message" {
            if self.checked_messages >= CHECKED_MESSAGES {
                return;
            }
            self.checked_messages += 1;
        }
        if let Err(err) = ServerFrame::decode(text) {
            panic!("the server sent {text}, not a protocol frame: {err}");
        }
    }

    /// The first frame of `kind`; frames of other kinds are set aside.
    pub async fn recv_type(&mut self, kind: &str) -> Value {
        self.recv_matching(|f| f["type"] == kind).await
    }

    /// The reply to `req`; other frames are set aside.
    pub async fn reply(&mut self, req: u64) -> Value {
        self.recv_matching(|f| f["req"] == json!(req)).await
    }

    async fn recv_matching(&mut self, wanted: impl Fn(&Value) -> bool) -> Value {
        if let Some(frame) = self
            .backlog
            .iter()
            .position(&wanted)
            .and_then(|i| self.backlog.remove(i))
        {
            return frame;
        }
        loop {
            let frame = self
                .read_socket(WAIT)
                .await
                .expect("a frame before timeout");
            if wanted(&frame) {
                return frame;
            }
            self.backlog.push_back(frame);
        }
    }

    /// Sends a typed frame with a fresh `req` and returns the req.
    pub async fn request_frame(&mut self, frame: &ClientFrame) -> u64 {
        self.request(serde_json::to_value(frame).expect("frame encodes"))
            .await
    }

    /// Publishes `message` (`{id?, name?, data?, extras?}`) and returns the reply.
    pub async fn publish(&mut self, channel: &str, message: Value) -> Value {
        let message: NewMessage = serde_json::from_value(message).expect("a new message");
        let req = self
            .request_frame(&ClientFrame::Publish {
                req: None,
                seq: None,
                channel: channel.to_owned(),
                message,
                ephemeral: false,
            })
            .await;
        self.reply(req).await
    }

    pub async fn append(&mut self, channel: &str, serial: &str, data: &str) -> Value {
        let req = self
            .request_frame(&ClientFrame::Append {
                req: None,
                seq: None,
                channel: channel.to_owned(),
                serial: serial.to_owned(),
                append: AppendOp {
                    data: data.to_owned(),
                    name: None,
                    extras: None,
                },
            })
            .await;
        self.reply(req).await
    }

    /// Attaches with the options in `extra` (`from`, `rewind`, `presence`)
    /// and returns the `attached` frame.
    pub async fn attach(&mut self, channel: &str, extra: Value) -> Value {
        let mut frame = json!({"type": "attach", "channel": channel});
        if let (Some(obj), Some(extra)) = (frame.as_object_mut(), extra.as_object()) {
            obj.extend(extra.clone());
        }
        let frame: ClientFrame = serde_json::from_value(frame).expect("attach options");
        let req = self.request_frame(&frame).await;
        let reply = self.reply(req).await;
        assert_eq!(reply["type"], "attached", "attach failed: {reply}");
        reply
    }
}

/// A JSON HTTP client.
pub struct Http {
    pub base: String,
    pub client: reqwest::Client,
}

impl Http {
    pub async fn get(&self, path: &str) -> (u16, Value) {
        let resp = self
            .client
            .get(format!("{}{}", self.base, path))
            .send()
            .await
            .expect("GET");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    pub async fn send(&self, method: reqwest::Method, path: &str, body: Value) -> (u16, Value) {
        let resp = self
            .client
            .request(method, format!("{}{}", self.base, path))
            .json(&body)
            .send()
            .await
            .expect("request");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.send(reqwest::Method::POST, path, body).await
    }

    /// All current messages of a channel, oldest first.
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

/// An `authorization` header value for HTTP Basic auth with `pair`
/// (`key:secret`).
pub fn basic(pair: &str) -> String {
    use base64::Engine;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair)
    )
}

/// Folds `message` frames' events the way clients do: `tether_core::View`.
pub fn fold(view: &mut tether_core::View, frame: &Value) -> bool {
    let event: tether_core::Message =
        serde_json::from_value(frame["message"].clone()).expect("event parses");
    view.apply(&event)
}

/// The view as JSON, to compare with history.
pub fn view_json(view: &tether_core::View) -> Vec<Value> {
    view.messages()
        .map(|m| serde_json::to_value(m).expect("serializes"))
        .collect()
}

/// One Server-Sent Event.
#[derive(Debug, Clone, Default)]
pub struct SseEvent {
    pub id: Option<String>,
    pub event: String,
    pub data: Value,
}

/// A minimal SSE reader over a real HTTP response.
pub struct Sse {
    response: reqwest::Response,
    buffer: String,
}

impl Sse {
    /// Opens `GET {base}{path}`, optionally with `Last-Event-ID`.
    pub async fn connect(base: &str, path: &str, last_event_id: Option<&str>) -> Sse {
        let mut request = reqwest::Client::new().get(format!("{base}{path}"));
        if let Some(id) = last_event_id {
            request = request.header("Last-Event-ID", id);
        }
        let response = request.send().await.expect("SSE request");
        assert_eq!(response.status().as_u16(), 200, "SSE status");
        assert_eq!(
            response.headers()["content-type"],
            "text/event-stream",
            "SSE content type"
        );
        Sse {
            response,
            buffer: String::new(),
        }
    }

    /// The next event (comments skipped). Panics on timeout or end.
    pub async fn next(&mut self) -> SseEvent {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let Some(raw) = tether_protocol::sse::parse(&block) else {
                    continue; // a keep-alive comment
                };
                if let Err(err) = tether_protocol::SseEvent::decode(raw.name, raw.id, &raw.data) {
                    panic!("the server sent {block:?}, not a protocol SSE event: {err}");
                }
                return SseEvent {
                    id: raw.id.map(str::to_owned),
                    event: raw.name.to_owned(),
                    data: serde_json::from_str(&raw.data).expect("SSE data is JSON"),
                };
            }
            let chunk = tokio::time::timeout_at(deadline, self.response.chunk())
                .await
                .expect("SSE event before timeout")
                .expect("SSE body")
                .expect("SSE stream still open");
            self.buffer
                .push_str(std::str::from_utf8(&chunk).expect("UTF-8"));
        }
    }

    /// The next event named `kind`.
    pub async fn next_of(&mut self, kind: &str) -> SseEvent {
        loop {
            let event = self.next().await;
            if event.event == kind {
                return event;
            }
        }
    }
}
