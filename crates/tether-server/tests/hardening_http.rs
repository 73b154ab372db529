//! Hardening of the HTTP front door (issue 12): read timeouts and the
//! connection cap against slowloris, token lifetimes, CORS, the SSE gauge,
//! `--help` not leaking secrets, and user-facing error wording. All over
//! real loopback sockets against a real server.

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

    // Every half-sent request is closed by the server (none is answered).
    let mut closed = 0;
    for stream in &mut attackers {
        let (text, was_closed) = read_until_closed(stream, Duration::from_secs(5)).await;
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
