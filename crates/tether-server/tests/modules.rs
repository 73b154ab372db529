//! The server's module graph stays a one-way street (ARCHITECTURE.md):
//! no two top-level modules reach each other, and nothing below the
//! router reaches into a front door. Read from the source, so a new `use`
//! that closes a cycle fails here instead of in review.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Every `.rs` file under `dir`.
fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file belongs to (`doors/ws/mod.rs` → `doors`).
fn module_of(src: &Path, file: &Path) -> String {
    let relative = file.strip_prefix(src).expect("under src");
    let first = relative.components().next().expect("a component");
    first
        .as_os_str()
        .to_string_lossy()
        .trim_end_matches(".rs")
        .to_owned()
}

/// The `crate::NAME` paths a file uses, outside comments.
fn references(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            let after = &rest[at + "crate::".len()..];
            let name: String = after
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                .collect();
            if !name.is_empty() {
                found.insert(name);
            }
            rest = after;
        }
    }
    found
}

/// Top-level module → the top-level modules it uses.
fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in &files {
        let module = module_of(&src, file);
        // The crate roots and the binary's own modules sit on top.
        if matches!(module.as_str(), "lib" | "main" | "cli") {
            continue;
        }
        let text = std::fs::read_to_string(file).expect("read source");
        let uses = graph.entry(module.clone()).or_default();
        uses.extend(references(&text).into_iter().filter(|r| *r != module));
    }
    let modules: BTreeSet<String> = graph.keys().cloned().collect();
    for uses in graph.values_mut() {
        uses.retain(|m| modules.contains(m));
    }
    graph
}

fn reachable(graph: &BTreeMap<String, BTreeSet<String>>, from: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut stack = vec![from.to_owned()];
    while let Some(module) = stack.pop() {
        for next in graph.get(&module).into_iter().flatten() {
            if seen.insert(next.clone()) {
                stack.push(next.clone());
            }
        }
    }
    seen
}

#[test]
fn no_module_cycles() {
    let graph = graph();
    assert!(graph.contains_key("doors"), "the scan found the doors");
    let cyclic: Vec<&String> = graph
        .keys()
        .filter(|m| reachable(&graph, m).contains(*m))
        .collect();
    assert!(
        cyclic.is_empty(),
        "modules in a cycle: {cyclic:?}\n{graph:#?}"
    );
}

#[test]
fn only_the_router_and_the_assembly_know_the_doors() {
    let graph = graph();
    let users: Vec<&String> = graph
        .iter()
        .filter(|(_, uses)| uses.contains("doors"))
        .map(|(m, _)| m)
        .collect();
    for user in &users {
        assert!(
            matches!(user.as_str(), "router" | "app"),
            "{user} reaches into a front door; doors sit on top of the server"
        );
    }
    assert!(
        users.iter().any(|u| *u == "router"),
        "the router mounts the doors"
    );
}

#[test]
fn the_scan_sees_uses() {
    let found =
        references("use crate::state::App; // crate::comment\nlet x = crate::runtime::now_ms();");
    assert_eq!(
        found,
        BTreeSet::from(["state".to_owned(), "runtime".to_owned()])
    );
}
