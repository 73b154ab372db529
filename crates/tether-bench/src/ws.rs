//! WebSocket client helpers with small buffers (thousands of connections
//! live in the generator at once).

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::{Result, err, wire};

/// One client connection.
pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How long connecting and each setup step may take.
pub const SETUP_WAIT: Duration = Duration::from_secs(20);

/// Connects with small buffers.
pub async fn connect(url: &str) -> Result<Ws> {
    let config = WebSocketConfig::default()
        .read_buffer_size(4 * 1024)
        .write_buffer_size(0);
    let connecting = tokio_tungstenite::connect_async_with_config(url, Some(config), true);
    let (ws, _) = tokio::time::timeout(SETUP_WAIT, connecting)
        .await
        .map_err(|_| err(format!("connecting to {url} timed out")))??;
    Ok(ws)
}

/// Connects to a Tether `/ws` URL and waits for the `connected` frame.
pub async fn connect_tether(url: &str) -> Result<Ws> {
    let mut ws = connect(url).await?;
    expect(&mut ws, |_, ty| ty == "connected", SETUP_WAIT).await?;
    Ok(ws)
}

/// Sends one text frame.
pub async fn send(ws: &mut Ws, text: String) -> Result<()> {
    ws.send(Message::text(text)).await?;
    Ok(())
}

/// The next text frame; `None` when the connection closed.
pub async fn next_text(ws: &mut Ws) -> Result<Option<String>> {
    while let Some(msg) = ws.next().await {
        match msg? {
            Message::Text(text) => return Ok(Some(text.as_str().to_owned())),
            Message::Close(_) => return Ok(None),
            _ => {}
        }
    }
    Ok(None)
}

/// Reads frames until `wanted(text, type)` holds; returns that frame. An
/// `error` frame that answers nothing wanted ends the wait with an error.
pub async fn expect(
    ws: &mut Ws,
    wanted: impl Fn(&str, &str) -> bool,
    wait: Duration,
) -> Result<String> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let text = tokio::time::timeout_at(deadline, next_text(ws))
            .await
            .map_err(|_| err("timed out waiting for a frame"))??
            .ok_or_else(|| err("connection closed while waiting for a frame"))?;
        let ty = wire::frame_type(&text).unwrap_or_default();
        if wanted(&text, ty) {
            return Ok(text);
        }
        if ty == "error" {
            return Err(err(format!("server error: {text}")));
        }
    }
}

/// Attaches `channel` (resuming after `from`) and waits for `attached`.
pub async fn attach(ws: &mut Ws, req: u64, channel: &str, from: Option<&str>) -> Result<()> {
    send(ws, wire::attach(req, channel, from)).await?;
    expect(ws, |_, ty| ty == "attached", SETUP_WAIT).await?;
    Ok(())
}

/// Publishes a message and returns its serial.
pub async fn publish(ws: &mut Ws, req: u64, channel: &str, data: &str) -> Result<String> {
    send(ws, wire::publish(req, channel, data)).await?;
    let ack = expect(
        ws,
        |t, ty| ty == "ack" && wire::req(t) == Some(req),
        SETUP_WAIT,
    )
    .await?;
    wire::serial(&ack)
        .map(str::to_owned)
        .ok_or_else(|| err(format!("ack without serial: {ack}")))
}
