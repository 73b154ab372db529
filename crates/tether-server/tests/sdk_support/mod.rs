//! Harness for the SDK and CLI tests: a real server in this process, with
//! its own data directory, that can be restarted on the same address (so
//! clients reconnect to it) without losing its data.
#![allow(dead_code)]

#[path = "../support/bin.rs"]
mod bin;
#[allow(unused_imports)]
pub use bin::tether_bin;

use std::net::SocketAddr;
use std::time::Duration;

use tether_client::{
    Client, ClientOptions, ConnectionState, Direction, HistoryQuery, Message, NewMessage, Rest,
};
use tether_server::{Config, Server};

/// How long a test waits for anything it expects.
pub const WAIT: Duration = Duration::from_secs(20);

/// A server running in this process.
pub struct Harness {
    server: Option<Server>,
    dir: tempfile::TempDir,
    addr: SocketAddr,
    adjust: fn(&mut Config),
}

impl Harness {
    /// Starts a development-mode server on a free port.
    pub async fn start() -> Harness {
        Harness::start_with(|_| {}).await
    }

    /// Starts a server whose configuration `adjust` changes (on every
    /// restart too).
    pub async fn start_with(adjust: fn(&mut Config)) -> Harness {
        let dir = tempfile::tempdir().expect("temp dir");
        let server = start_server(&dir, "127.0.0.1:0".parse().expect("addr"), adjust).await;
        Harness {
            addr: server.addr(),
            server: Some(server),
            dir,
            adjust,
        }
    }

    /// The URL clients use.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A REST client for assertions.
    pub fn rest(&self) -> Rest {
        Rest::new(&self.url(), &ClientOptions::default()).expect("valid url")
    }

    /// A REST client with other credentials.
    pub fn rest_with(&self, options: ClientOptions) -> Rest {
        Rest::new(&self.url(), &options).expect("valid url")
    }

    /// Shuts the server down (clients see the connection drop).
    pub async fn stop(&mut self) {
        if let Some(server) = self.server.take() {
            server.shutdown().await;
        }
    }

    /// Starts it again on the same address and data directory.
    pub async fn resume(&mut self) {
        assert!(self.server.is_none(), "stop before resuming");
        self.server = Some(start_server(&self.dir, self.addr, self.adjust).await);
    }

    /// Stops and starts again.
    pub async fn restart(&mut self) {
        self.stop().await;
        self.resume().await;
    }
}

async fn start_server(
    dir: &tempfile::TempDir,
    listen: SocketAddr,
    adjust: fn(&mut Config),
) -> Server {
    let mut config = Config {
        listen,
        data_dir: dir.path().join("data"),
        dev: true,
        ..Config::default()
    };
    adjust(&mut config);
    // The port of a server that just stopped can take a moment to free.
    let mut tries = 0;
    loop {
        match Server::start(config.clone()).await {
            Ok(server) => return server,
            Err(err) if tries < 50 => {
                tries += 1;
                eprintln!("restart: {err}; retrying");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(err) => panic!("server does not start: {err}"),
        }
    }
}

/// Client options that retry quickly, so restarts do not slow tests down.
pub fn fast_options() -> ClientOptions {
    ClientOptions::default()
        .initial_backoff(Duration::from_millis(20))
        .max_backoff(Duration::from_millis(250))
}

/// A message whose data is `data`.
pub fn text(data: &str) -> NewMessage {
    NewMessage {
        data: serde_json::Value::String(data.to_owned()),
        ..NewMessage::default()
    }
}

/// The client's connection id, while connected.
pub fn connection_id(client: &Client) -> Option<String> {
    match &*client.state().borrow() {
        ConnectionState::Connected { connection_id } => Some(connection_id.clone()),
        _ => None,
    }
}

/// Every current message of a channel, oldest first.
pub async fn history(rest: &Rest, channel: &str) -> Vec<Message> {
    let mut all = Vec::new();
    let mut query = HistoryQuery::default()
        .direction(Direction::Forwards)
        .limit(1000);
    loop {
        let page = rest.history(channel, &query).await.expect("history");
        all.extend(page.messages);
        match page.next {
            Some(next) => query = query.cursor(next),
            None => return all,
        }
    }
}

/// Waits until `check` holds, polling; panics with `what` after [`WAIT`].
pub async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !check() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A TCP proxy in front of a server whose connections can be cut at once,
/// both ways, like a network failure: whatever was in flight is lost.
pub struct Proxy {
    pub addr: SocketAddr,
    cut: tokio::sync::watch::Sender<u64>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// Forwards a free local port to `upstream`.
    pub async fn start(upstream: SocketAddr) -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("proxy binds");
        let addr = listener.local_addr().expect("proxy addr");
        let (cut, cuts) = tokio::sync::watch::channel(0u64);
        let task = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let mut cuts = cuts.clone();
                // Only cuts from now on concern this connection.
                cuts.borrow_and_update();
                tokio::spawn(async move {
                    let Ok(mut server) = tokio::net::TcpStream::connect(upstream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = cuts.changed() => {}
                    }
                    // A zero linger makes the drop reset both ends (RST)
                    // instead of a goodbye; with zero it never blocks, which
                    // is what the deprecation warns about.
                    #[allow(deprecated)]
                    {
                        let _ = client.set_linger(Some(Duration::ZERO));
                        let _ = server.set_linger(Some(Duration::ZERO));
                    }
                });
            }
        });
        Proxy { addr, cut, task }
    }

    /// The URL that goes through the proxy.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Cuts every connection open right now.
    pub fn cut(&self) {
        self.cut.send_modify(|n| *n += 1);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Harness {
    /// The server's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}
