//! Which crate may depend on which (ARCHITECTURE.md, "Crate
//! dependencies"), checked on the manifests, so a dependency added for
//! convenience fails here instead of in review. The rules are kept
//! together, in the crate that sits on top of all the others.

use std::path::Path;

/// A crate's `[dependencies]` lines (no comments, no blanks) and the whole
/// manifest.
fn manifest(name: &str) -> (Vec<String>, String) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(name)
        .join("Cargo.toml");
    let text = std::fs::read_to_string(&path).expect("manifest readable");
    let lines = text
        .lines()
        .skip_while(|line| line.trim() != "[dependencies]")
        .skip(1)
        .take_while(|line| !line.trim_start().starts_with('['))
        .filter(|line| !line.trim().is_empty() && !line.trim_start().starts_with('#'))
        .map(str::to_owned)
        .collect();
    (lines, text)
}

/// The name a dependency line declares.
fn name(line: &str) -> &str {
    line.split(['=', '.']).next().map_or("", str::trim)
}

/// What every user of `krate` compiles: its non-optional dependencies.
fn required(krate: &str) -> Vec<String> {
    let (lines, _) = manifest(krate);
    let names: Vec<String> = lines
        .iter()
        .filter(|line| !line.contains("optional = true"))
        .map(|line| name(line).to_owned())
        .collect();
    assert!(!names.is_empty(), "parsed no dependencies of {krate}");
    names
}

fn refuse(krate: &str, deps: &[String], banned: &[&str], why: &str) {
    for dep in banned {
        assert!(
            !deps.iter().any(|d| d == dep),
            "{krate} must not depend on {dep}: {why}"
        );
    }
}

#[test]
fn the_protocol_takes_serde_and_core_only() {
    let deps = required("tether-protocol");
    let allowed = ["tether-core", "serde", "serde_json", "thiserror"];
    for dep in &deps {
        assert!(
            allowed.contains(&dep.as_str()),
            "new dependency {dep}: the protocol crate takes serde and tether-core only, so every client can use it without a runtime or the server"
        );
    }
    // utoipa, optional behind the `openapi` feature: only the server turns
    // it on to describe its REST API (`/openapi.json`); clients and the
    // SDKs never compile it. A schema derive is data about the types, not
    // I/O, so it may sit next to them, but never by default.
    let (lines, text) = manifest("tether-protocol");
    for line in lines.iter().filter(|l| l.contains("optional = true")) {
        assert_eq!(
            name(line),
            "utoipa",
            "only utoipa (feature openapi) may be optional here"
        );
    }
    assert!(
        text.contains("openapi = [\"dep:utoipa\"]"),
        "utoipa is reachable only through the `openapi` feature"
    );
}

#[test]
fn the_engine_knows_no_http_websocket_wire_format_or_server() {
    let deps = required("tether-engine");
    assert!(deps.iter().any(|d| d == "tether-store"));
    refuse(
        "tether-engine",
        &deps,
        &[
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
        ],
        "the engine sits below every front door",
    );
    // The store's trait only: the embedded implementation is the server's
    // choice (feature `fjall`), so a Redis build need not link it.
    let (lines, _) = manifest("tether-engine");
    let store = lines
        .iter()
        .find(|line| name(line) == "tether-store")
        .expect("a tether-store line");
    assert!(
        !store.contains("fjall"),
        "the engine takes the LogStore trait, not fjall: {store}"
    );
}

#[test]
fn the_server_library_takes_no_client_cli_or_demo_crate() {
    let deps = required("tether-server");
    assert!(deps.iter().any(|d| d == "tether-engine"));
    refuse(
        "tether-server",
        &deps,
        &[
            "tether-client",
            "tether-fake-llm",
            "clap",
            "tokio-tungstenite",
            "tether",
        ],
        "it belongs to the binary crate or the tests",
    );
}
