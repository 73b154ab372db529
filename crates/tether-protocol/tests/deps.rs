//! The protocol crate stays pure: wire types and JSON, nothing that does
//! I/O or belongs to the server. Checked on the manifest, so a dependency
//! added for convenience fails here before it spreads to every client.

#[test]
fn depends_on_no_runtime_server_or_store() {
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
    assert!(deps.contains(&"tether-core"), "parsed the list: {deps:?}");
    for banned in [
        "tokio",
        "axum",
        "hyper",
        "tower",
        "tether-store",
        "tether-server",
        "tether-client",
        "fjall",
        "reqwest",
        "tokio-tungstenite",
    ] {
        assert!(
            !deps.contains(&banned),
            "tether-protocol must not depend on {banned}"
        );
    }
    let allowed = ["tether-core", "serde", "serde_json", "thiserror"];
    for dep in &deps {
        assert!(
            allowed.contains(dep),
            "new dependency {dep}: the protocol crate takes serde and tether-core only"
        );
    }
}
