//! The server library takes no client-side or binary-only dependency: the
//! CLI, the demo and the fake LLM live in the `tether` binary crate
//! (ARCHITECTURE.md). Checked on the manifest, so a convenience import of
//! the SDK or clap fails here.

#[test]
fn the_server_library_depends_on_no_client_cli_or_demo_crate() {
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
    assert!(deps.contains(&"tether-engine"), "parsed the list: {deps:?}");
    for banned in [
        "tether-client",
        "tether-fake-llm",
        "clap",
        "tokio-tungstenite",
        "tether",
    ] {
        assert!(
            !deps.contains(&banned),
            "tether-server must not depend on {banned}: it belongs to the binary crate or the tests"
        );
    }
}
