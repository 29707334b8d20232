//! SQL lives in `.sql` files, loaded with `include_str!`, never built with a formatting macro;
//! every `.sql` file is loaded. Checked for every crate under `crates/` by reading its sources.

use std::path::PathBuf;

use crate::run::root;

/// The `src` folder of each crate under `crates/`.
fn crate_sources() -> Vec<PathBuf> {
    super::library_crates()
        .iter()
        .map(|name| root().join("crates").join(name).join("src"))
        .collect()
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
    for src in crate_sources() {
        for (path, text) in super::sources_under(&src) {
            for (line, literal) in sql_built_by_macros(text) {
                offenders.push(format!("{}:{line}: {literal:?}", super::relative(path)));
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
    for src in crate_sources() {
        let sources: String = super::sources_under(&src)
            .map(|(_, text)| text.as_str())
            .collect();
        let sql_files = std::fs::read_dir(src.join("sql"))
            .into_iter()
            .flatten()
            .flatten();
        for entry in sql_files {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".sql") && !sources.contains(&format!("sql/{name}\")")) {
                unused.push(super::relative(&entry.path()));
            }
        }
    }
    assert!(
        unused.is_empty(),
        "`.sql` files nothing loads:\n{}",
        unused.join("\n")
    );
}
