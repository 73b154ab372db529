//! The engine knows nothing of HTTP, WebSocket or a wire format, and never
//! of the server (ARCHITECTURE.md). Checked on the manifest, so a
//! dependency added for convenience fails here instead of in review.

#[test]
fn depends_on_no_http_websocket_or_server() {
    let manifest = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"))
        .expect("manifest readable");
    let deps: Vec<&str> = manifest
        .lines()
        .skip_while(|line| line.trim() != "[dependencies]")
        .skip(1)
        .take_while(|line| !line.trim_start().starts_with('['))
        .filter_map(|line| line.split(['=', '.']).next())
        .map(str::trim)
        .filter(|name| !name.is_empty() && !name.starts_with('#'))
        .collect();
    assert!(deps.contains(&"tether-store"), "parsed the list: {deps:?}");
    for banned in [
        "axum",
        "hyper",
        "hyper-util",
        "tower",
        "tower-http",
        "tokio-tungstenite",
        "tungstenite",
        "reqwest",
        "tether-protocol",
        "tether-server",
        "tether-client",
        "fjall",
        "clap",
    ] {
        assert!(
            !deps.contains(&banned),
            "tether-engine must not depend on {banned}"
        );
    }
    // The store's trait only: the embedded implementation is the
    // server's choice (feature `fjall`), so a Redis build need not link it.
    let store = manifest
        .lines()
        .find(|line| line.trim_start().starts_with("tether-store"))
        .expect("a tether-store line");
    assert!(
        !store.contains("fjall"),
        "the engine takes the LogStore trait, not fjall: {store}"
    );
}
