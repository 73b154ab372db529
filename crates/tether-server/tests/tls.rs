//! HTTPS and WSS with a real certificate (self-signed for the test).

mod support;

use std::sync::Arc;

use futures::StreamExt;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use support::TestServer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_https_and_wss() {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("cert");
    let dir = tempfile::tempdir().expect("dir");
    let cert_path = dir.path().join("cert.pem");
    let key_path = dir.path().join("key.pem");
    std::fs::write(&cert_path, cert.cert.pem()).expect("write cert");
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).expect("write key");
    let server = TestServer::start_with(|c| {
        c.tls_cert = Some(cert_path.clone());
        c.tls_key = Some(key_path.clone());
    })
    .await;
    let running = server.server.as_ref().expect("server");
    assert!(running.url().starts_with("https://"));
    let addr = running.addr();

    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(cert.cert.pem().as_bytes()).expect("pem"))
        .expect("root");
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = TlsConnector::from(Arc::new(config));
    let name = ServerName::try_from("localhost").expect("name");

    // HTTPS.
    let tcp = TcpStream::connect(addr).await.expect("tcp");
    let mut tls = connector
        .connect(name.clone(), tcp)
        .await
        .expect("handshake");
    tls.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut response = String::new();
    tls.read_to_string(&mut response).await.expect("read");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.ends_with("ok"));

    // WSS.
    let tcp = TcpStream::connect(addr).await.expect("tcp");
    let tls = connector.connect(name, tcp).await.expect("handshake");
    let (mut ws, _) = tokio_tungstenite::client_async("wss://localhost/ws", tls)
        .await
        .expect("websocket over TLS");
    let first = ws.next().await.expect("frame").expect("ok");
    let first: serde_json::Value =
        serde_json::from_str(first.to_text().expect("text")).expect("json");
    assert_eq!(first["type"], "connected");

    // Plain HTTP to a TLS port gets no answer, and the server keeps serving.
    let mut plain = TcpStream::connect(addr).await.expect("tcp");
    plain
        .write_all(b"GET /healthz HTTP/1.1\r\n\r\n")
        .await
        .expect("write");
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(std::time::Duration::from_secs(2), plain.read(&mut buf)).await;
    assert!(!matches!(read, Ok(Ok(n)) if n > 0 && buf.starts_with(b"HTTP/1.1 200")));
    server.stop().await;
}
