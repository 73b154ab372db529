//! The protocol crate stays pure: wire types and JSON, nothing that does
//! I/O or belongs to the server. Checked on the manifest, so a dependency
//! added for convenience fails here before it spreads to every client.

#[test]
fn depends_on_no_runtime_server_or_store() {
    let manifest = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"))
        .expect("manifest readable");
    let lines: Vec<&str> = manifest
        .lines()
        .skip_while(|line| line.trim() != "[dependencies]")
        .skip(1)
        .take_while(|line| !line.trim_start().starts_with('['))
        .filter(|line| !line.trim().is_empty() && !line.trim_start().starts_with('#'))
        .collect();
    // What every user of the crate compiles.
    let deps: Vec<&str> = lines
        .iter()
        .filter(|line| !line.contains("optional = true"))
        .filter_map(|line| line.split(['=', '.']).next().map(str::trim))
        .collect();
    let optional: Vec<&str> = lines
        .iter()
        .filter(|line| line.contains("optional = true"))
        .filter_map(|line| line.split(['=', '.']).next().map(str::trim))
        .collect();
    // utoipa, optional behind the `openapi` feature: only the server turns
    // it on to describe its REST API (`/openapi.json`); clients and the
    // SDKs never compile it. A schema derive is data about the types, not
    // I/O, so it may sit next to them, but never by default.
    for dep in &optional {
        assert!(
            *dep == "utoipa",
            "new optional dependency {dep}: only utoipa (feature openapi) may be optional here"
        );
    }
    assert!(
        manifest.contains("openapi = [\"dep:utoipa\"]"),
        "utoipa is reachable only through the `openapi` feature"
    );
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
