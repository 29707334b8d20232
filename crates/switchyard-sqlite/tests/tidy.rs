//! Rules for the sources of both store crates (this one and `switchyard-postgres`), checked by
//! reading them: SQL lives in `.sql` files, never built with `format!`; every `.sql` file is
//! used; the modules of a crate import each other one way only.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // Tests fail loudly.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The `src` folders of the store crates.
fn store_sources() -> Vec<PathBuf> {
    let crates = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    ["switchyard-sqlite", "switchyard-postgres"]
        .iter()
        .map(|name| crates.join(name).join("src"))
        .collect()
}

/// Every file under `dir` (none if it does not exist) whose name ends with `extension`, sorted.
fn files(dir: &Path, extension: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending: Vec<PathBuf> = dir.exists().then(|| dir.to_owned()).into_iter().collect();
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|found| found == extension) {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

/// Macros that build a string from a template.
const FORMATTING_MACROS: &[&str] = &["format!", "format_args!", "write!", "writeln!", "concat!"];

/// Words that start or shape a statement, written in capitals as this project writes SQL.
const SQL_KEYWORDS: &[&str] = &[
    "SELECT",
    "INSERT",
    "UPDATE",
    "DELETE",
    "CREATE",
    "DROP",
    "ALTER",
    "PRAGMA",
    "BEGIN",
    "COMMIT",
    "ROLLBACK",
    "FROM",
    "WHERE",
    "VALUES",
    "RETURNING",
];

/// The string literals inside the formatting macro calls of `source` that hold an SQL keyword,
/// with their line numbers.
fn sql_built_by_macros(source: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    for name in FORMATTING_MACROS {
        let mut from = 0;
        while let Some(at) = source[from..].find(name) {
            let start = from + at;
            from = start + name.len();
            // `format!` in `my_format!` or `eformat!` is another macro.
            if source[..start]
                .chars()
                .next_back()
                .is_some_and(|before| before.is_alphanumeric() || before == '_')
            {
                continue;
            }
            let rest = source[from..].trim_start();
            if !rest.starts_with(['(', '[', '{']) {
                continue;
            }
            for literal in literals_of_call(rest) {
                if SQL_KEYWORDS
                    .iter()
                    .any(|keyword| has_word(&literal, keyword))
                {
                    let line = source[..start].lines().count().max(1);
                    found.push((line, literal));
                }
            }
        }
    }
    found
}

/// The string literals (plain or raw) of a macro call whose text starts at its opening
/// delimiter, up to its matching closing one.
fn literals_of_call(call: &str) -> Vec<String> {
    let mut literals = Vec::new();
    let mut depth = 0_usize;
    let mut chars = call.char_indices().peekable();
    while let Some((at, c)) = chars.next() {
        match c {
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' => {
                depth -= 1;
                if depth == 0 {
                    break;
                }
            }
            '"' => {
                let mut literal = String::new();
                while let Some((_, c)) = chars.next() {
                    match c {
                        '\\' => {
                            chars.next();
                        }
                        '"' => break,
                        other => literal.push(other),
                    }
                }
                literals.push(literal);
            }
            'r' if call[at + 1..].starts_with(['"', '#']) => {
                let hashes = call[at + 1..].chars().take_while(|c| *c == '#').count();
                let open = at + 1 + hashes;
                if !call[open..].starts_with('"') {
                    continue;
                }
                let close = format!("\"{}", "#".repeat(hashes));
                let body = &call[open + 1..];
                let end = body.find(&close).unwrap_or(body.len());
                literals.push(body[..end].to_owned());
                let skip_to = open + 1 + end + close.len();
                while chars.peek().is_some_and(|(next, _)| *next < skip_to) {
                    chars.next();
                }
            }
            _ => {}
        }
    }
    literals
}

/// Whether `text` holds `word` with no letter, digit or underscore on either side.
fn has_word(text: &str, word: &str) -> bool {
    let is_word_char = |c: char| c.is_alphanumeric() || c == '_';
    text.match_indices(word).any(|(at, _)| {
        !text[..at].chars().next_back().is_some_and(is_word_char)
            && !text[at + word.len()..]
                .chars()
                .next()
                .is_some_and(is_word_char)
    })
}

#[test]
fn the_check_finds_sql_built_by_macros_and_nothing_else() {
    let check = |source: &str, expected: usize| {
        assert_eq!(
            sql_built_by_macros(source).len(),
            expected,
            "in {source:?}: {:?}",
            sql_built_by_macros(source)
        );
    };
    check(r#"conn.prepare(&format!("SELECT x FROM {table}"))"#, 1);
    check(
        "let sql = format!(\n    \"DELETE FROM {t}\\n WHERE a = 1\",\n);",
        1,
    );
    check(r##"format!(r#"INSERT INTO {t} VALUES ("a")"#)"##, 1);
    check(r#"write!(out, "UPDATE {table} SET x = 1")"#, 1);
    check(
        r#"format!("the state of `{stream}` kept changing, {n} attempts")"#,
        0,
    );
    check(
        r#"format!("{column} is not UTF-8"); let s = "SELECT 1";"#,
        0,
    );
    check(r#"format!("selected from the table where it was")"#, 0);
    check(r#"myformat!("SELECT {x}")"#, 0);
}

#[test]
fn no_sql_is_built_with_format() {
    let mut offenders = Vec::new();
    for src in store_sources() {
        for path in files(&src, "rs") {
            let source = std::fs::read_to_string(&path).unwrap();
            for (line, literal) in sql_built_by_macros(&source) {
                offenders.push(format!("{}:{line}: {literal:?}", path.display()));
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "SQL built with a formatting macro; put each statement in a `.sql` file loaded with \
         `include_str!` (one file per variant):\n{}",
        offenders.join("\n")
    );
}

#[test]
fn every_sql_file_is_loaded() {
    let mut unused = Vec::new();
    for src in store_sources() {
        let sources: String = files(&src, "rs")
            .iter()
            .map(|path| std::fs::read_to_string(path).unwrap())
            .collect();
        for path in files(&src.join("sql"), "sql") {
            let name = path.file_name().unwrap().to_str().unwrap();
            if !sources.contains(&format!("sql/{name}\")")) {
                unused.push(path.display().to_string());
            }
        }
    }
    assert!(
        unused.is_empty(),
        "`.sql` files nothing loads:\n{}",
        unused.join("\n")
    );
}

/// The crate's top-level modules each top-level module names through `crate::`, from the
/// files under `src` (a folder's files count as its module's).
fn module_imports(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let module_of = |path: &Path| {
        let relative = path.strip_prefix(src).unwrap();
        let first = relative.components().next().unwrap().as_os_str();
        Path::new(first)
            .file_stem()
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned()
    };
    let paths = files(src, "rs");
    let modules: BTreeSet<String> = paths.iter().map(|path| module_of(path)).collect();
    let mut imports: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for path in &paths {
        let from = module_of(path);
        if from == "lib" {
            continue;
        }
        let source = std::fs::read_to_string(path).unwrap();
        for (at, _) in source.match_indices("crate::") {
            let rest = &source[at + "crate::".len()..];
            let names: Vec<&str> = match rest.strip_prefix('{') {
                Some(group) => group[..group.find('}').unwrap_or(group.len())]
                    .split(',')
                    .map(|item| item.trim().split("::").next().unwrap_or_default())
                    .collect(),
                None => vec![
                    rest.split(|c: char| !c.is_alphanumeric() && c != '_')
                        .next()
                        .unwrap(),
                ],
            };
            for name in names {
                if modules.contains(name) && name != from {
                    imports
                        .entry(from.clone())
                        .or_default()
                        .insert(name.to_owned());
                }
            }
        }
    }
    imports
}

/// A loop in `imports`, as the modules along it, if there is one.
fn import_loop(imports: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        module: &str,
        imports: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(start) = path.iter().position(|seen| seen == module) {
            let mut found = path[start..].to_vec();
            found.push(module.to_owned());
            return Some(found);
        }
        if done.contains(module) {
            return None;
        }
        path.push(module.to_owned());
        for next in imports.get(module).into_iter().flatten() {
            if let Some(found) = visit(next, imports, path, done) {
                return Some(found);
            }
        }
        path.pop();
        done.insert(module.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    imports
        .keys()
        .find_map(|module| visit(module, imports, &mut Vec::new(), &mut done))
}

#[test]
fn the_loop_check_finds_a_loop_and_passes_a_chain() {
    let graph = |edges: &[(&str, &str)]| {
        let mut imports: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (from, to) in edges {
            imports
                .entry((*from).to_owned())
                .or_default()
                .insert((*to).to_owned());
        }
        imports
    };
    assert_eq!(
        import_loop(&graph(&[
            ("store", "append"),
            ("append", "db"),
            ("db", "store")
        ])),
        Some(vec![
            "append".into(),
            "db".into(),
            "store".into(),
            "append".into()
        ])
    );
    assert_eq!(
        import_loop(&graph(&[
            ("store", "append"),
            ("append", "db"),
            ("store", "db")
        ])),
        None
    );
}

#[test]
fn the_modules_of_each_store_crate_import_one_way() {
    for src in store_sources() {
        let imports = module_imports(&src);
        assert!(
            !imports.is_empty(),
            "no imports found under {}",
            src.display()
        );
        if let Some(found) = import_loop(&imports) {
            panic!(
                "modules of {} import each other in a loop: {}",
                src.display(),
                found.join(" -> ")
            );
        }
    }
}
