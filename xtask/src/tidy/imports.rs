//! No two modules of a crate import each other, directly or around a loop: checked for every
//! crate under `crates/` by parsing the files of its `src` folder with `syn`.
//!
//! # The rule
//!
//! Every module is a node of a tree (`lib.rs` is the root; `foo.rs` or `foo/mod.rs` is `foo`;
//! `foo/bar.rs` and an inline `mod bar { … }` in `foo.rs` are `foo::bar`). A reference from
//! module `S` to module `T` is any path that names `T` or an item of it: `use` trees (nested
//! groups, `self`, `super`, renames), paths in code (`crate::x::y::f()`, `super::Z`), paths in
//! macro calls. Doc links are not imports (a type's docs may point at the code that uses it),
//! so they make no edge. A name re-exported by a module (`pub use store::Store;` in
//! `lib.rs`) resolves to the module that defines it, so `crate::Store` counts as `store`.
//!
//! A reference between a module and one of its ancestors is the normal layout (a parent
//! declares and uses its children; a child, such as its `tests`, uses its parent) and is not
//! an edge. Any other reference goes from `S`'s subtree to `T`'s subtree below their closest
//! common ancestor `P`: it is an edge between two children of `P`, each standing for its whole
//! subtree (so `store/memory.rs` naming `crate::events` is the edge `store → events` among
//! the crate root's children). For every module, the edges among its children must have no
//! cycle. At the crate root this is the strict rule the cluster crate was first held to: the
//! top-level modules, each with everything under it, import one way only.
//!
//! Edges that close an existing cycle that needs a bigger recut are listed in [`ALLOWED`], so
//! the check still runs on the rest of the crate and no new edge can join them unnoticed.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use proc_macro2::{TokenStream, TokenTree};
use syn::visit::{self, Visit};

use crate::run::root;

/// Existing edges that close a cycle, by crate, importing module and imported module (both
/// written from the crate root), each with why it stays for now. The check fails on a cycle
/// through any other edge, and on an entry here whose edge is gone (so the list only shrinks).
const ALLOWED: &[(&str, &str, &str)] = &[
    // A handler is called with a `Ctx`; a `Ctx` reaches the node and the router policy, which
    // keep the erased handlers (ctx -> node -> handler -> ctx, ctx -> router -> handler -> ctx).
    // Breaking it means the erased handler taking a context type `handler` owns, or `Ctx`
    // reaching the node through a trait: a recut of the dispatch path, to be measured with
    // `cargo xtask bench`.
    ("switchyard-messaging", "handler", "ctx"),
    // Same loop: the erased handler is called with the node it runs on (node -> handler -> node).
    ("switchyard-messaging", "handler", "node"),
    // And with the router policy that authorizes it (router -> handler -> router).
    ("switchyard-messaging", "handler", "router"),
    // The node asks a router's policy to choose a node, and the router names `Node` to run a
    // handler on one (node -> router -> node).
    ("switchyard-messaging", "router", "node"),
];

/// A module's path from the crate root (`[]` is the root).
type ModulePath = Vec<String>;

/// A path as written in a module, before it is resolved: its segments, the first of which may
/// be `crate`, `self` or `super`.
#[derive(Debug, Clone)]
struct Written {
    /// The module the path is written in.
    module: ModulePath,
    /// Its segments.
    segments: Vec<String>,
    /// The file it is written in, to name it in a failure.
    file: String,
}

/// What the check learns of one crate from its sources.
#[derive(Debug, Default)]
struct Sources {
    /// Every module: one per file, inline module and `mod name;` declaration.
    modules: BTreeSet<ModulePath>,
    /// The names each module brings in with `use`, each with the path it stands for.
    bindings: BTreeMap<ModulePath, BTreeMap<String, Written>>,
    /// Every path that may name another module of the crate.
    references: Vec<Written>,
}

/// The module a file under `src` defines, from its path relative to `src`.
fn module_of_file(relative: &Path) -> ModulePath {
    let mut segments: ModulePath = relative
        .iter()
        .map(|part| part.to_string_lossy().into_owned())
        .collect();
    if let Some(last) = segments.pop() {
        let stem = last.strip_suffix(".rs").unwrap_or(&last);
        if stem != "lib" && stem != "mod" {
            segments.push(stem.to_owned());
        }
    }
    segments
}

/// Reads one file into `sources`, as module `module`.
fn read_file(
    sources: &mut Sources,
    file: &str,
    module: ModulePath,
    text: &str,
) -> Result<(), String> {
    let parsed = syn::parse_file(text).map_err(|error| format!("{file}: {error}"))?;
    sources.modules.insert(module.clone());
    let mut reader = FileReader {
        sources,
        file,
        module,
    };
    reader.visit_file(&parsed);
    Ok(())
}

/// Walks one file, keeping track of the module each item is in.
struct FileReader<'a> {
    sources: &'a mut Sources,
    file: &'a str,
    module: ModulePath,
}

impl FileReader<'_> {
    fn written(&self, segments: Vec<String>) -> Written {
        Written {
            module: self.module.clone(),
            segments,
            file: self.file.to_owned(),
        }
    }

    /// Records a path if it starts from the crate, this module or its parent; a path starting
    /// with a child's name is recorded too (it is resolved once every module is known).
    fn reference(&mut self, segments: Vec<String>) {
        if segments.len() > 1 || matches!(segments.first().map(String::as_str), Some("super")) {
            let written = self.written(segments);
            self.sources.references.push(written);
        }
    }

    /// Records every path of a `use` tree, and the names it binds.
    fn use_tree(&mut self, prefix: &mut Vec<String>, tree: &syn::UseTree) {
        match tree {
            syn::UseTree::Path(path) => {
                prefix.push(path.ident.to_string());
                self.use_tree(prefix, &path.tree);
                prefix.pop();
            }
            syn::UseTree::Group(group) => {
                for item in &group.items {
                    self.use_tree(prefix, item);
                }
            }
            syn::UseTree::Name(name) => {
                let ident = name.ident.to_string();
                self.bind(prefix, &ident, &ident);
            }
            syn::UseTree::Rename(rename) => {
                self.bind(
                    prefix,
                    &rename.ident.to_string(),
                    &rename.rename.to_string(),
                );
            }
            syn::UseTree::Glob(_) => self.reference(prefix.clone()),
        }
    }

    /// `use prefix::name as binding;` (`name` may be `self`: `use a::b::{self}` binds `b`).
    fn bind(&mut self, prefix: &[String], name: &str, binding: &str) {
        let mut segments = prefix.to_vec();
        if name != "self" {
            segments.push(name.to_owned());
        }
        let binding = if binding == "self" {
            segments.last().cloned().unwrap_or_default()
        } else {
            binding.to_owned()
        };
        let written = self.written(segments.clone());
        self.sources
            .bindings
            .entry(self.module.clone())
            .or_default()
            .insert(binding, written);
        self.reference(segments);
    }

    /// Records the paths in a macro call's tokens, which `syn` does not parse.
    fn paths_in_tokens(&mut self, tokens: TokenStream) {
        let tokens: Vec<TokenTree> = tokens.into_iter().collect();
        let mut at = 0;
        while at < tokens.len() {
            match &tokens[at] {
                TokenTree::Group(group) => self.paths_in_tokens(group.stream()),
                TokenTree::Ident(ident)
                    if ["crate", "super", "self"].contains(&ident.to_string().as_str()) =>
                {
                    let mut segments = vec![ident.to_string()];
                    while let (
                        Some(TokenTree::Punct(first)),
                        Some(TokenTree::Punct(second)),
                        Some(TokenTree::Ident(next)),
                    ) = (tokens.get(at + 1), tokens.get(at + 2), tokens.get(at + 3))
                    {
                        if first.as_char() != ':' || second.as_char() != ':' {
                            break;
                        }
                        segments.push(next.to_string());
                        at += 3;
                    }
                    self.reference(segments);
                }
                _ => {}
            }
            at += 1;
        }
    }
}

impl<'ast> Visit<'ast> for FileReader<'_> {
    fn visit_item_mod(&mut self, item: &'ast syn::ItemMod) {
        self.module.push(item.ident.to_string());
        self.sources.modules.insert(self.module.clone());
        if let Some((_, items)) = &item.content {
            for item in items {
                self.visit_item(item);
            }
        }
        self.module.pop();
    }

    fn visit_item_use(&mut self, item: &'ast syn::ItemUse) {
        self.use_tree(&mut Vec::new(), &item.tree);
    }

    fn visit_path(&mut self, path: &'ast syn::Path) {
        let segments = path
            .segments
            .iter()
            .map(|segment| segment.ident.to_string())
            .collect();
        self.reference(segments);
        visit::visit_path(self, path);
    }

    fn visit_macro(&mut self, mac: &'ast syn::Macro) {
        self.paths_in_tokens(mac.tokens.clone());
        visit::visit_macro(self, mac);
    }
}

impl Sources {
    /// The absolute segments of `written`, or `None` if it starts outside the crate (another
    /// crate, a local name, a primitive).
    fn absolute(&self, written: &Written) -> Option<Vec<String>> {
        let mut segments = written.segments.iter().peekable();
        let mut module = match segments.peek().map(|first| first.as_str()) {
            Some("crate") => {
                segments.next();
                Vec::new()
            }
            Some("self") => {
                segments.next();
                written.module.clone()
            }
            Some("super") => {
                let mut module = written.module.clone();
                while segments.next_if(|segment| *segment == "super").is_some() {
                    module.pop();
                }
                module
            }
            Some(first) => {
                let mut child = written.module.clone();
                child.push((*first).to_owned());
                if !self.modules.contains(&child) {
                    return None;
                }
                written.module.clone()
            }
            None => return None,
        };
        module.extend(segments.cloned());
        Some(module)
    }

    /// The module that defines what `absolute` names: the deepest module along it, through the
    /// names modules re-export.
    fn defining_module(&self, absolute: &[String], hops: usize) -> ModulePath {
        let mut module = Vec::new();
        for (at, segment) in absolute.iter().enumerate() {
            let mut child = module.clone();
            child.push(segment.clone());
            if self.modules.contains(&child) {
                module = child;
                continue;
            }
            // A name `module` brings in with `use`: follow it (a bounded number of times, in
            // case two modules re-export a name from each other, which rustc refuses anyway).
            if hops < 8
                && let Some(target) = self.bindings.get(&module).and_then(|b| b.get(segment))
                && let Some(mut target) = self.absolute(target)
            {
                target.extend(absolute[at + 1..].iter().cloned());
                return self.defining_module(&target, hops + 1);
            }
            break;
        }
        module
    }

    /// The edges among the children of each module, keyed by that parent; each edge keeps the
    /// first file and path that makes it.
    fn edges(&self) -> BTreeMap<ModulePath, BTreeMap<(String, String), String>> {
        let mut edges: BTreeMap<ModulePath, BTreeMap<(String, String), String>> = BTreeMap::new();
        for written in &self.references {
            let Some(absolute) = self.absolute(written) else {
                continue;
            };
            let from = &written.module;
            let to = self.defining_module(&absolute, 0);
            let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
            if common == from.len() || common == to.len() {
                continue; // One is the other's ancestor (or the same module).
            }
            let witness = format!("{} names `{}`", written.file, written.segments.join("::"));
            edges
                .entry(from[..common].to_vec())
                .or_default()
                .entry((from[common].clone(), to[common].clone()))
                .or_insert(witness);
        }
        edges
    }
}

/// A cycle in `edges`, if there is one, as the modules around it (the first one repeated last).
fn cycle(edges: &BTreeSet<(String, String)>) -> Option<Vec<String>> {
    fn visit(
        module: &str,
        edges: &BTreeSet<(String, String)>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(start) = path.iter().position(|seen| seen == module) {
            let mut around = path[start..].to_vec();
            around.push(module.to_owned());
            return Some(around);
        }
        if !done.insert(module.to_owned()) {
            return None;
        }
        path.push(module.to_owned());
        for (_, next) in edges.iter().filter(|(from, _)| from == module) {
            if let Some(found) = visit(next, edges, path, done) {
                return Some(found);
            }
        }
        path.pop();
        None
    }
    let mut done = BTreeSet::new();
    edges
        .iter()
        .find_map(|(from, _)| visit(from, edges, &mut Vec::new(), &mut done))
}

/// Joins a parent module's path and a child's name as written from the crate root.
fn full_name(parent: &[String], child: &str) -> String {
    parent
        .iter()
        .map(String::as_str)
        .chain([child])
        .collect::<Vec<_>>()
        .join("::")
}

/// The problems of one crate's sources, given as (path relative to `src`, text) pairs: each
/// cycle with the file and path behind each of its edges, and each entry of `allowed` (pairs
/// of modules from the crate root) whose edge is gone.
fn problems(files: &[(String, String)], allowed: &[(&str, &str)]) -> Vec<String> {
    let mut sources = Sources::default();
    let mut problems = Vec::new();
    for (relative, text) in files {
        let module = module_of_file(Path::new(relative));
        if let Err(error) = read_file(&mut sources, relative, module, text) {
            problems.push(error);
        }
    }
    let mut unused: BTreeSet<(String, String)> = allowed
        .iter()
        .map(|(from, to)| ((*from).to_owned(), (*to).to_owned()))
        .collect();
    for (parent, edges) in sources.edges() {
        let mut kept = BTreeSet::new();
        for (from, to) in edges.keys() {
            let pair = (full_name(&parent, from), full_name(&parent, to));
            if unused.remove(&pair) {
                continue;
            }
            kept.insert((from.clone(), to.clone()));
        }
        if let Some(around) = cycle(&kept) {
            let because: Vec<String> = around
                .windows(2)
                .map(|pair| {
                    let witness = &edges[&(pair[0].clone(), pair[1].clone())];
                    format!(
                        "  {} -> {}: {witness}",
                        full_name(&parent, &pair[0]),
                        full_name(&parent, &pair[1])
                    )
                })
                .collect();
            let names: Vec<String> = around.iter().map(|name| full_name(&parent, name)).collect();
            problems.push(format!(
                "modules import each other: {}\n{}",
                names.join(" -> "),
                because.join("\n")
            ));
        }
    }
    for (from, to) in unused {
        problems.push(format!(
            "allowed edge {from} -> {to} is gone: remove it from ALLOWED"
        ));
    }
    problems
}

/// The `.rs` files under `src`, each as its path relative to `src` and its text.
fn crate_sources(src: &Path) -> Vec<(String, String)> {
    super::sources_under(src)
        .map(|(path, text)| {
            let relative = path.strip_prefix(src).unwrap_or(path).display().to_string();
            (relative, text.clone())
        })
        .collect()
}

#[test]
fn the_modules_of_every_crate_import_one_way() {
    let crates = super::library_crates();
    let mut found = Vec::new();
    for name in &crates {
        let files = crate_sources(&root().join("crates").join(name).join("src"));
        let allowed: Vec<(&str, &str)> = ALLOWED
            .iter()
            .filter(|(crate_name, _, _)| crate_name == name)
            .map(|(_, from, to)| (*from, *to))
            .collect();
        found.extend(
            problems(&files, &allowed)
                .into_iter()
                .map(|problem| format!("{name}: {problem}")),
        );
    }
    for (crate_name, _, _) in ALLOWED {
        assert!(
            crates.iter().any(|name| name == crate_name),
            "ALLOWED names no crate {crate_name}"
        );
    }
    assert!(found.is_empty(), "\n{}\n", found.join("\n"));
}

mod checks {
    use super::*;

    fn files(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(path, text)| ((*path).to_owned(), (*text).to_owned()))
            .collect()
    }

    #[test]
    fn a_cycle_through_a_nested_group_and_a_re_export_is_found_and_printed() {
        let sources = files(&[
            (
                "lib.rs",
                "mod events; mod store; mod rows; pub use store::Store;",
            ),
            // `rows` comes after a nested group: a parser cutting at the first `}` misses it.
            ("events.rs", "use crate::{store::{self as s}, rows};"),
            ("rows.rs", "pub struct Row;"),
            // Through the re-export in lib.rs: `crate::Store` is `store`'s.
            (
                "store.rs",
                "pub struct Store; fn f() { let _ = crate::events::read(); }",
            ),
        ]);
        let found = problems(&sources, &[]);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0].starts_with("modules import each other: events -> store -> events"),
            "{}",
            found[0]
        );
        assert!(
            found[0].contains("store.rs names `crate::events::read`"),
            "{}",
            found[0]
        );

        let sources = files(&[
            (
                "lib.rs",
                "mod events; mod store; mod rows; pub use store::Store;",
            ),
            ("events.rs", "use crate::{store::{X}, rows};"),
            ("rows.rs", "use crate::Store;"),
            ("store.rs", "pub struct Store;"),
        ]);
        assert!(problems(&sources, &[]).is_empty());
        let sources = files(&[
            (
                "lib.rs",
                "mod events; mod store; mod rows; pub use store::Store;",
            ),
            ("events.rs", "use crate::{store::{X}, rows};"),
            (
                "rows.rs",
                "/// Made by [`crate::events::read`].\npub struct Row;",
            ),
            ("store.rs", "pub struct Store;"),
        ]);
        // A doc link is no import.
        assert!(problems(&sources, &[]).is_empty());
    }

    #[test]
    fn paths_in_macros_super_and_self_make_edges_and_a_child_may_use_its_parent() {
        let base = [
            ("lib.rs", "mod a; mod b;"),
            (
                "a.rs",
                "mod inner; #[cfg(test)] mod tests { use super::*; }",
            ),
            // A child using its parent, and its parent's sibling through `super::super`.
            (
                "a/inner.rs",
                "use super::Thing; fn f() { super::super::b::g(); }",
            ),
        ];
        let mut sources = files(&base);
        sources.push(("b.rs".into(), "fn g() {}".into()));
        assert!(
            problems(&sources, &[]).is_empty(),
            "{:?}",
            problems(&sources, &[])
        );
        let mut looped = files(&base);
        looped.push((
            "b.rs".into(),
            r#"fn g() { println!("{}", crate::a::inner::X); }"#.into(),
        ));
        let found = problems(&looped, &[]);
        assert!(found[0].contains("a -> b -> a"), "{found:?}");
        // Two children of `a` importing each other (one through `self::` in `a`'s inline module).
        let nested = files(&[
            ("lib.rs", "mod a;"),
            ("a.rs", "mod x; mod y { use super::x::X; pub struct Y; }"),
            ("a/x.rs", "pub struct X(crate::a::y::Y);"),
        ]);
        let found = problems(&nested, &[]);
        assert!(found[0].contains("a::x -> a::y -> a::x"), "{found:?}");
    }

    #[test]
    fn an_allowed_edge_silences_its_cycle_only_while_it_exists() {
        let looped = files(&[
            ("lib.rs", "mod a; mod b;"),
            ("a.rs", "use crate::b::B;"),
            ("b.rs", "use crate::a::A;"),
        ]);
        assert!(problems(&looped, &[("b", "a")]).is_empty());
        let straight = files(&[("lib.rs", "mod a; mod b;"), ("a.rs", "use crate::b::B;")]);
        let found = problems(&straight, &[("b", "a")]);
        assert_eq!(
            found,
            ["allowed edge b -> a is gone: remove it from ALLOWED"]
        );
    }
}
