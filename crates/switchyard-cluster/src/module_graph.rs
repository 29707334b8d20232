//! The crate's modules import one another one way only: the graph of `crate::` paths between
//! them (in `use` lines, inline paths and doc links) has no cycle. `lib.rs` is left out: it
//! declares the modules and re-exports the public items.

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};

/// Each module's name and source, its unit-test files included (they count as the module).
const SOURCES: &[(&str, &str)] = &[
    ("cluster", include_str!("cluster.rs")),
    ("cluster", include_str!("cluster/tests.rs")),
    ("config", include_str!("config.rs")),
    ("connection", include_str!("connection.rs")),
    ("connection", include_str!("connection/tests.rs")),
    ("error", include_str!("error.rs")),
    ("forwarded", include_str!("forwarded.rs")),
    ("frame", include_str!("frame.rs")),
    ("fuzzing", include_str!("fuzzing.rs")),
    ("handshake", include_str!("handshake.rs")),
    ("membership", include_str!("membership.rs")),
    ("peers", include_str!("peers.rs")),
    ("pending", include_str!("pending.rs")),
    ("placement", include_str!("placement.rs")),
    ("remote", include_str!("remote.rs")),
    ("seal", include_str!("seal.rs")),
    ("serve", include_str!("serve.rs")),
    ("sync", include_str!("sync.rs")),
    ("tls", include_str!("tls.rs")),
    ("transport", include_str!("transport.rs")),
];

/// The modules `source` names through `crate::`, as `crate::module`, or as
/// `crate::{module, ...}` / `crate::{module::...}`. A root item (`crate::Name`, a re-export)
/// is refused: it would hide which module is imported.
fn imports(source: &str) -> Result<BTreeSet<String>, String> {
    let mut found = BTreeSet::new();
    for (at, _) in source.match_indices("crate::") {
        let rest = &source[at + "crate::".len()..];
        let names: Vec<&str> = match rest.strip_prefix('{') {
            Some(group) => {
                let group = &group[..group.find('}').unwrap_or(group.len())];
                group
                    .split(',')
                    .map(|item| item.trim().split("::").next().unwrap_or(""))
                    .collect()
            }
            None => vec![
                rest.split(|c: char| !c.is_alphanumeric() && c != '_')
                    .next()
                    .unwrap_or(""),
            ],
        };
        for name in names.into_iter().filter(|name| !name.is_empty()) {
            if name.starts_with(|c: char| c.is_uppercase()) {
                return Err(format!("`crate::{name}`: import it from its module"));
            }
            found.insert(name.to_owned());
        }
    }
    Ok(found)
}

/// The modules `lib.rs` declares, other than this test.
fn declared() -> BTreeSet<String> {
    include_str!("lib.rs")
        .lines()
        .filter_map(|line| {
            let line = line.trim().strip_prefix("pub ").unwrap_or(line.trim());
            line.strip_prefix("mod ")?
                .strip_suffix(';')
                .map(str::to_owned)
        })
        .filter(|name| name != "module_graph")
        .collect()
}

/// A cycle in `graph`, if there is one, as the modules around it.
fn cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        module: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(start) = path.iter().position(|m| m == module) {
            let mut around = path[start..].to_vec();
            around.push(module.to_owned());
            return Some(around);
        }
        if done.contains(module) {
            return None;
        }
        path.push(module.to_owned());
        for next in graph.get(module).into_iter().flatten() {
            if let Some(found) = visit(next, graph, path, done) {
                return Some(found);
            }
        }
        path.pop();
        done.insert(module.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|module| visit(module, graph, &mut Vec::new(), &mut done))
}

fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (module, source) in SOURCES {
        let imported = imports(source).unwrap_or_else(|error| panic!("{module}: {error}"));
        let edges = graph.entry((*module).to_owned()).or_default();
        edges.extend(imported.into_iter().filter(|name| name != module));
    }
    graph
}

#[test]
fn no_two_modules_import_each_other_directly_or_around_a_loop() {
    let graph = graph();
    let checked: BTreeSet<String> = graph.keys().cloned().collect();
    assert_eq!(checked, declared(), "every module of lib.rs is checked");
    for (module, edges) in &graph {
        for edge in edges {
            assert!(
                checked.contains(edge),
                "{module} imports `crate::{edge}`, not a module"
            );
        }
    }
    if let Some(around) = cycle(&graph) {
        panic!("modules import each other: {}", around.join(" -> "));
    }
}

#[test]
fn the_check_finds_cycles_and_root_imports() {
    let edges = |list: &[(&str, &[&str])]| -> BTreeMap<String, BTreeSet<String>> {
        list.iter()
            .map(|(m, to)| {
                (
                    (*m).to_owned(),
                    to.iter().map(|t| (*t).to_owned()).collect(),
                )
            })
            .collect()
    };
    let looped = edges(&[("a", &["b"]), ("b", &["c"]), ("c", &["a"])]);
    assert_eq!(cycle(&looped).unwrap(), ["a", "b", "c", "a"]);
    let straight = edges(&[("a", &["b", "c"]), ("b", &["c"]), ("c", &[])]);
    assert_eq!(cycle(&straight), None);
    let found = imports("use crate::peers::Peers;\nuse crate::{frame::Frame, seal};\n/// [`crate::placement::owner`]").unwrap();
    assert_eq!(
        found.into_iter().collect::<Vec<_>>(),
        ["frame", "peers", "placement", "seal"]
    );
    assert!(imports("use crate::{ClusterConfig, ClusterError};").is_err());
    assert!(imports("use crate::ClusterError;").is_err());
}
