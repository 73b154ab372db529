//! Hardening of the HTTP front door (issue 12): read timeouts and the
//! connection cap against slowloris, CORS, the SSE gauge, `--help` not
//! leaking secrets, and user-facing error wording (token lifetimes are in
//! `hardening_tokens.rs`). All over real loopback sockets against a real
//! server.

mod support;

use std::time::Duration;

use support::TestServer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Opens a raw TCP connection to the test server.
async fn connect(server: &TestServer) -> TcpStream {
    let addr = server.base.trim_start_matches("http://");
    TcpStream::connect(addr).await.expect("tcp connect")
}

/// Reads until the peer closes or `wait` passes; returns what arrived and
/// whether the connection was closed by then.
async fn read_until_closed(stream: &mut TcpStream, wait: Duration) -> (String, bool) {
    let deadline = tokio::time::Instant::now() + wait;
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return (String::from_utf8_lossy(&out).into_owned(), false),
            Ok(Ok(0)) | Ok(Err(_)) => return (String::from_utf8_lossy(&out).into_owned(), true),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
}

/// Reads one complete HTTP response head plus `Content-Length` body, or
/// `None` if it does not arrive within `wait`.
async fn read_response(stream: &mut TcpStream, wait: Duration) -> Option<String> {
    let deadline = tokio::time::Instant::now() + wait;
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&out).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let length = text[..end]
                .lines()
                .find_map(|l| {
                    let (name, value) = l.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            if out.len() >= end + 4 + length {
                return Some(text);
            }
        }
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) | Ok(Ok(0)) | Ok(Err(_)) => return None,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
}

const HEALTHZ: &[u8] = b"GET /healthz HTTP/1.1\r\nhost: test\r\n\r\n";

// ---------------------------------------------------------------------
// 1. Slowloris: header/body read timeouts, connection cap
// ---------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_sent_requests_are_closed_and_a_legitimate_request_is_served() {
    // The cap is below the number of attackers: only the header timeout
    // freeing sockets lets the legitimate request in.
    let server = TestServer::start_with(|c| {
        c.header_read_timeout_ms = 400;
        c.max_http_connections = 100;
    })
    .await;
    let mut attackers = Vec::new();
    for _ in 0..200 {
        let mut stream = connect(&server).await;
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nhost: test\r\nx-slow: ")
            .await
            .expect("half a request");
        attackers.push(stream);
    }
    let mut legit = connect(&server).await;
    legit.write_all(HEALTHZ).await.expect("request");
    let response = read_response(&mut legit, Duration::from_secs(8))
        .await
        .expect("the legitimate request is answered despite 200 half-sent requests");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.ends_with("ok"), "{response}");

    // Every half-sent request is closed by the server (none is answered),
    // all within one deadline so a failure is quick too.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let mut closed = 0;
    for stream in &mut attackers {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let (text, was_closed) = read_until_closed(stream, left).await;
        assert!(!text.contains(" 200 "), "a half-sent request got {text}");
        closed += usize::from(was_closed);
    }
    assert_eq!(closed, 200, "half-sent connections left open");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connection_is_closed_after_the_header_timeout() {
    let server = TestServer::start_with(|c| c.header_read_timeout_ms = 300).await;
    let mut stream = connect(&server).await;
    let started = std::time::Instant::now();
    let (_, closed) = read_until_closed(&mut stream, Duration::from_secs(5)).await;
    assert!(closed, "a silent connection stays open");
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "closed too early: {:?}",
        started.elapsed()
    );
    // A keep-alive connection that answered one request is idle again:
    // the timer applies to the next request's head too.
    let mut stream = connect(&server).await;
    stream.write_all(HEALTHZ).await.expect("request");
    let response = read_response(&mut stream, Duration::from_secs(5)).await;
    assert!(response.is_some_and(|r| r.starts_with("HTTP/1.1 200")));
    let (_, closed) = read_until_closed(&mut stream, Duration::from_secs(5)).await;
    assert!(closed, "an idle keep-alive connection stays open");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_body_gets_40802() {
    let server = TestServer::start_with(|c| c.body_read_timeout_ms = 400).await;
    let mut stream = connect(&server).await;
    stream
        .write_all(
            b"POST /channels/conversation:slow/messages HTTP/1.1\r\nhost: test\r\n\
              content-type: application/json\r\ncontent-length: 64\r\n\r\n{\"data\":",
        )
        .await
        .expect("head and part of the body");
    let started = std::time::Instant::now();
    let response = read_response(&mut stream, Duration::from_secs(5))
        .await
        .expect("a response to the stalled body");
    assert!(response.starts_with("HTTP/1.1 408"), "{response}");
    assert!(response.contains("40802"), "{response}");
    assert!(started.elapsed() >= Duration::from_millis(350));
    // Nothing was published.
    let history = server.http().history("conversation:slow").await;
    assert!(history.is_empty(), "{history:?}");

    // A body that arrives in time is unaffected.
    let (status, body) = server
        .http()
        .post(
            "/channels/conversation:slow/messages",
            serde_json::json!({"data": "fine"}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_cap_holds_until_a_connection_closes() {
    let server = TestServer::start_with(|c| c.max_http_connections = 10).await;
    let mut open = Vec::new();
    for _ in 0..10 {
        let mut stream = connect(&server).await;
        stream.write_all(HEALTHZ).await.expect("request");
        let response = read_response(&mut stream, Duration::from_secs(5)).await;
        assert!(response.is_some_and(|r| r.starts_with("HTTP/1.1 200")));
        open.push(stream);
    }
    // The 11th connection waits in the backlog: no answer.
    let mut waiting = connect(&server).await;
    waiting.write_all(HEALTHZ).await.expect("request");
    assert!(
        read_response(&mut waiting, Duration::from_millis(800))
            .await
            .is_none(),
        "served beyond max_http_connections"
    );
    // One closes; the waiting one is accepted and served.
    drop(open.pop());
    let response = read_response(&mut waiting, Duration::from_secs(5))
        .await
        .expect("served once a connection closed");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    server.stop().await;
}

// ---------------------------------------------------------------------
// 3. CORS, the SSE gauge, --help, error wording
// ---------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_preflight_lists_authorization_explicitly() {
    let server =
        TestServer::start_with(|c| c.cors_origins = vec!["https://app.example".into()]).await;
    let response = reqwest::Client::new()
        .request(
            reqwest::Method::OPTIONS,
            format!("{}/channels/conversation:cors/messages", server.base),
        )
        .header("origin", "https://app.example")
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization, content-type, x-tether-client-id",
        )
        .send()
        .await
        .expect("preflight");
    assert!(response.status().is_success(), "{}", response.status());
    let allowed = response
        .headers()
        .get("access-control-allow-headers")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    // A wildcard never covers Authorization in browsers.
    assert!(!allowed.contains('*'), "{allowed}");
    for header in [
        "authorization",
        "content-type",
        "x-tether-client-id",
        "last-event-id",
    ] {
        assert!(allowed.contains(header), "{header} missing from {allowed}");
    }
    server.stop().await;
}

/// The current value of `tether_sse_streams` from `GET /metrics`.
async fn sse_gauge(server: &TestServer) -> f64 {
    let text = reqwest::get(format!("{}/metrics", server.base))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text");
    text.lines()
        .find_map(|l| l.strip_prefix("tether_sse_streams "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_gauge_returns_to_its_level_after_clients_disconnect() {
    // The only test of this file (process) that opens SSE streams, so the
    // process-wide gauge moves for it alone.
    let server = TestServer::start_with(|c| {
        c.heartbeat_ms = 100;
        c.idle_timeout_ms = 1_000;
    })
    .await;
    let before = sse_gauge(&server).await;
    let mut streams = Vec::new();
    for _ in 0..3 {
        let mut sse =
            support::Sse::connect(&server.base, "/channels/conversation:gauge/stream", None).await;
        sse.next_of("attached").await;
        streams.push(sse);
    }
    assert_eq!(sse_gauge(&server).await, before + 3.0);
    // The clients go away without the stream ending on the server's side.
    drop(streams);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let now = sse_gauge(&server).await;
        if now == before {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "tether_sse_streams stuck at {now}, was {before} before the streams"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    server.stop().await;
}

#[test]
fn serve_help_does_not_print_secrets_from_the_environment() {
    let secret = "help-secret-0123456789-do-not-print";
    let output = std::process::Command::new(support::bin::tether_bin())
        .args(["serve", "--help"])
        .env("TETHER_KEY", format!("app:{secret}"))
        .env("TETHER_CONFIG", "/tmp/tether-help-test.toml")
        .output()
        .expect("run tether serve --help");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{text}");
    assert!(
        text.contains("TETHER_KEY"),
        "the variable is still documented: {text}"
    );
    assert!(!text.contains(secret), "--help printed the secret: {text}");
    // The other client commands' credentials too.
    for command in ["publish", "subscribe", "history", "stream", "token"] {
        let output = std::process::Command::new(support::bin::tether_bin())
            .args([command, "--help"])
            .env("TETHER_KEY", format!("app:{secret}"))
            .env("TETHER_TOKEN", secret)
            .output()
            .expect("run --help");
        let text = String::from_utf8_lossy(&output.stdout);
        assert!(
            !text.contains(secret),
            "{command} --help printed a secret: {text}"
        );
    }
}

/// Words that name Rust types or serde internals, not the protocol.
const INTERNAL: [&str; 8] = [
    "PublishBody",
    "ClientFrame",
    "NewMessage",
    "AppendOp",
    "untagged",
    "struct ",
    "target type",
    "enum ",
];

fn assert_user_facing(message: &str) {
    for word in INTERNAL {
        assert!(!message.contains(word), "{word:?} in {message:?}");
    }
    assert!(!message.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decode_errors_use_protocol_words_and_keep_their_codes() {
    let server = TestServer::start().await;
    let http = server.http();
    let path = "/channels/conversation:words/messages";
    for body in [
        serde_json::json!(5),
        serde_json::json!({"data": "x", "bogus": 1}),
        serde_json::json!([{"data": "x"}, 7]),
    ] {
        let (status, reply) = http.post(path, body.clone()).await;
        assert_eq!(status, 400, "{body} -> {reply}");
        assert_eq!(reply["error"]["code"], 40000, "{body} -> {reply}");
        assert_user_facing(reply["error"]["message"].as_str().unwrap_or_default());
    }
    let (status, reply) = http
        .post(
            &format!("{path}/0000000000-0000000000000001/append"),
            serde_json::json!({"data": 5}),
        )
        .await;
    assert_eq!(status, 400, "{reply}");
    assert_user_facing(reply["error"]["message"].as_str().unwrap_or_default());

    let mut ws = server.ws().await;
    for frame in [
        "[1]",
        r#"{"type":"publish","channel":"conversation:words","message":5}"#,
        r#"{"type":"append","channel":"conversation:words","serial":"x","data":5}"#,
    ] {
        ws.send_raw(frame).await;
        let reply = ws.recv_type("error").await;
        assert_eq!(reply["code"], 40000, "{frame} -> {reply}");
        assert_user_facing(reply["message"].as_str().unwrap_or_default());
    }
    ws.send_raw(r#"{"type":"bogus"}"#).await;
    let reply = ws.recv_type("error").await;
    assert_eq!(reply["code"], 40001, "{reply}");
    assert_user_facing(reply["message"].as_str().unwrap_or_default());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgraded_websockets_count_toward_the_connection_cap() {
    let server = TestServer::start_with(|c| c.max_http_connections = 2).await;
    let first = server.ws().await;
    let second = server.ws().await;
    let mut waiting = connect(&server).await;
    waiting.write_all(HEALTHZ).await.expect("request");
    assert!(
        read_response(&mut waiting, Duration::from_millis(800))
            .await
            .is_none(),
        "served beyond max_http_connections while two WebSockets are open"
    );
    drop(first);
    let response = read_response(&mut waiting, Duration::from_secs(5))
        .await
        .expect("served once a WebSocket closed");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    drop(second);
    server.stop().await;
}

// ---------------------------------------------------------------------
// 1 (cont.). Out of file descriptors: the accept loop carries on
// ---------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_out_of_file_descriptors_recovers_once_connections_close() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().expect("temp dir");
    // The real binary with a small descriptor limit, so EMFILE comes fast.
    let mut child = std::process::Command::new("sh")
        .arg("-c")
        .arg("ulimit -n 128 && exec \"$0\" \"$@\"")
        .arg(support::bin::tether_bin())
        .args(["serve", "--dev", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("data"))
        .env("TETHER_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn tether");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("read address");
    let addr = line
        .trim()
        .strip_prefix("listening on http://")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_owned();

    // More idle connections than the process has descriptors.
    let mut hogs = Vec::new();
    for _ in 0..200 {
        match TcpStream::connect(&addr).await {
            Ok(stream) => hogs.push(stream),
            Err(_) => break,
        }
    }
    assert!(hogs.len() > 128, "only {} connections", hogs.len());
    // Let the server run into the limit.
    tokio::time::sleep(Duration::from_millis(500)).await;
    drop(hogs);

    // It serves again once they are gone.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let served = loop {
        let attempt = async {
            let mut stream = TcpStream::connect(&addr).await.ok()?;
            stream.write_all(HEALTHZ).await.ok()?;
            read_response(&mut stream, Duration::from_secs(2)).await
        };
        if let Some(response) = attempt.await {
            break response;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the server stopped serving after EMFILE"
        );
    };
    assert!(served.starts_with("HTTP/1.1 200"), "{served}");
    let _ = child.kill();
    let _ = child.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_body_nobody_reads_does_not_hold_the_connection() {
    let server = TestServer::start_with(|c| {
        c.body_read_timeout_ms = 400;
        c.header_read_timeout_ms = 400;
    })
    .await;
    let mut stream = connect(&server).await;
    // A route that answers without reading the body.
    stream
        .write_all(b"POST /no-such-route HTTP/1.1\r\nhost: test\r\ncontent-length: 100\r\n\r\n{")
        .await
        .expect("request");
    let (text, closed) = read_until_closed(&mut stream, Duration::from_secs(5)).await;
    assert!(text.starts_with("HTTP/1.1 404"), "{text}");
    assert!(
        closed,
        "the connection waits for a body nobody reads: {text}"
    );
    server.stop().await;
}
