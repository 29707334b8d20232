//! What the README promises a new user, read from it and checked: each `[dependencies]` table of
//! its "Using the crates" section builds the program that follows it there (a `rust` block right
//! after the `toml` one), or, with none, the program of its "A first service" section.
//!
//! `cargo xtask test` (or `cargo xtask readme`) builds each table as a throwaway package outside
//! the workspace, with our crates' `version` replaced by their path in this checkout, the
//! workspace's `Cargo.lock` (the same dependency versions) and `--offline` (nothing resolved
//! anew or downloaded), into the workspace's target directory (the dependencies already
//! compiled).

use std::path::Path;
use std::process::Command;

use crate::run::{self, Result, StepFailed, cargo, root};

/// The README section holding one `[dependencies]` table per layer, as `toml` blocks.
pub(crate) const USING_THE_CRATES: &str = "Using the crates";

/// The README section whose first `rust` block is the program each table must build.
pub(crate) const FIRST_SERVICE: &str = "A first service";

/// The README's text.
pub(crate) fn read() -> Result<String> {
    let path = root().join("README.md");
    std::fs::read_to_string(&path).map_err(|error| StepFailed {
        step: "read the README".into(),
        detail: format!("{}: {error}", path.display()),
    })
}

/// The text under the heading `title` (at any level), up to the next heading of the same or a
/// higher level; `None` when there is no such heading. Lines in code blocks are no headings.
pub(crate) fn section<'a>(markdown: &'a str, title: &str) -> Option<&'a str> {
    let mut offset = 0;
    let mut start = None;
    let mut in_code = false;
    for line in markdown.split_inclusive('\n') {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
        }
        let level = if in_code { 0 } else { heading_level(line) };
        match start {
            None if level > 0 && line[level..].trim() == title => {
                start = Some((offset + line.len(), level));
            }
            Some((from, own)) if level > 0 && level <= own => return Some(&markdown[from..offset]),
            _ => {}
        }
        offset += line.len();
    }
    start.map(|(from, _)| &markdown[from..])
}

/// How many `#` open `line` when it is a Markdown heading, else 0.
fn heading_level(line: &str) -> usize {
    let level = line.chars().take_while(|&c| c == '#').count();
    if level > 0 && line[level..].starts_with(' ') {
        level
    } else {
        0
    }
}

/// The fenced code blocks of `markdown`, each as its info string and its contents.
fn all_fenced_blocks(markdown: &str) -> Vec<(String, String)> {
    let mut blocks = Vec::new();
    // Inside a block: its info string and its lines so far.
    let mut open: Option<(String, String)> = None;
    for line in markdown.lines() {
        let fence = line.trim_start().strip_prefix("```");
        match (open.take(), fence) {
            (None, Some(info)) => open = Some((info.trim().to_owned(), String::new())),
            (None, None) => {}
            (Some(block), Some(_)) => blocks.push(block),
            (Some((info, mut body)), None) => {
                body.push_str(line);
                body.push('\n');
                open = Some((info, body));
            }
        }
    }
    blocks
}

/// The contents of the fenced code blocks of `markdown` whose info string is `language`.
pub(crate) fn fenced_blocks(markdown: &str, language: &str) -> Vec<String> {
    all_fenced_blocks(markdown)
        .into_iter()
        .filter(|(info, _)| info == language)
        .map(|(_, body)| body)
        .collect()
}

/// Whether a block's info string marks Rust (`rust`, `rust,no_run`, ...).
fn is_rust(info: &str) -> bool {
    info.split(',').next() == Some("rust")
}

/// Each `[dependencies]` table of "Using the crates" with the program right after it, if any
/// (hidden lines shown).
fn tables_and_programs(readme: &str) -> Vec<(String, Option<String>)> {
    let blocks = section(readme, USING_THE_CRATES)
        .map(all_fenced_blocks)
        .unwrap_or_default();
    let mut pairs = Vec::new();
    for (at, (info, table)) in blocks.iter().enumerate() {
        if info != "toml" {
            continue;
        }
        let program = blocks
            .get(at + 1)
            .filter(|(info, _)| is_rust(info))
            .map(|(_, program)| shown(program));
        pairs.push((table.clone(), program));
    }
    pairs
}

/// The `[dependencies]` tables of the README's "Using the crates" section.
#[cfg(test)]
pub(crate) fn dependency_tables(readme: &str) -> Vec<String> {
    tables_and_programs(readme)
        .into_iter()
        .map(|(table, _)| table)
        .collect()
}

/// A dependency on one of our crates, as a table line gives it (checked by the tidy tests).
#[cfg(test)]
#[derive(Debug)]
pub(crate) struct OurDependency {
    /// The crate, `switchyard` or `switchyard-<layer>`.
    pub(crate) name: String,
    /// The features the line turns on.
    pub(crate) features: Vec<String>,
}

/// The lines of `table` that depend on one of our crates (whose name starts with `switchyard`).
#[cfg(test)]
pub(crate) fn our_dependencies(table: &str) -> Vec<OurDependency> {
    table
        .lines()
        .filter_map(|line| line.split_once('='))
        .filter(|(name, _)| name.trim().starts_with("switchyard"))
        .map(|(name, value)| OurDependency {
            name: name.trim().to_owned(),
            features: value
                .split_once("features")
                .and_then(|(_, rest)| rest.split_once('['))
                .and_then(|(_, rest)| rest.split_once(']'))
                .map(|(list, _)| {
                    list.split(',')
                        .map(|feature| feature.trim().trim_matches('"').to_owned())
                        .filter(|feature| !feature.is_empty())
                        .collect()
                })
                .unwrap_or_default(),
        })
        .collect()
}

/// `table` with each of our crates taken from this checkout: its `version = "..."` (or the bare
/// version string) becomes `path = "<root>/crates/<name>"`.
fn from_this_checkout(table: &str, root: &Path) -> String {
    let mut out = String::new();
    for line in table.lines() {
        let rewritten = line.split_once('=').and_then(|(name, value)| {
            let name = name.trim();
            if !name.starts_with("switchyard") {
                return None;
            }
            let path = format!(
                "path = {:?}",
                root.join("crates").join(name).display().to_string()
            );
            let value = value.trim();
            if value.starts_with('"') {
                return Some(format!("{name} = {{ {path} }}"));
            }
            let (before, after) = value.split_once("version")?;
            let (_, after) = after.split_once('"')?;
            let (_, after) = after.split_once('"')?;
            Some(format!("{name} = {before}{path}{after}"))
        });
        out.push_str(rewritten.as_deref().unwrap_or(line));
        out.push('\n');
    }
    out
}

/// A Rust block with rustdoc's hidden lines (`# `) shown.
fn shown(block: &str) -> String {
    let lines = block.lines().map(|line| {
        let trimmed = line.trim_start();
        if trimmed == "#" {
            ""
        } else {
            trimmed.strip_prefix("# ").unwrap_or(line)
        }
    });
    lines.collect::<Vec<_>>().join("\n")
}

/// The program of the README's "A first service", with rustdoc's hidden lines (`# `) shown.
pub(crate) fn first_service(readme: &str) -> Option<String> {
    let block = fenced_blocks(section(readme, FIRST_SERVICE)?, "rust")
        .into_iter()
        .next()?;
    Some(shown(&block))
}

/// `cargo xtask test`'s step: builds each table of "Using the crates" with the program after
/// it (or that of "A first service"), each as a package of its own outside the workspace.
pub(crate) fn check_dependency_tables() -> Result {
    let name = "README dependency tables";
    let fail = |detail: String| StepFailed {
        step: name.into(),
        detail,
    };
    let readme = read()?;
    let tables = tables_and_programs(&readme);
    let first_service = first_service(&readme).ok_or_else(|| {
        fail(format!(
            "README.md has no rust block under `## {FIRST_SERVICE}`"
        ))
    })?;
    if tables.is_empty() {
        return Err(fail(format!(
            "README.md has no toml block under `## {USING_THE_CRATES}`"
        )));
    }
    let scratch = std::env::temp_dir().join(format!("switchyard-readme-{}", std::process::id()));
    let result = tables
        .iter()
        .enumerate()
        .try_for_each(|(index, (table, program))| {
            let package = scratch.join(format!("table-{}", index + 1));
            let (program, which) = match program {
                Some(program) => (program, "the program after it"),
                None => (&first_service, "A first service"),
            };
            write_package(&package, table, program)
                .map_err(|error| fail(format!("could not write {}: {error}", package.display())))?;
            run::step(
                &format!("README dependency table {} builds {which}", index + 1),
                check_command(&package),
            )
        });
    // The scratch packages are throwaway either way; a failure to remove them changes nothing.
    let _ = std::fs::remove_dir_all(&scratch);
    result
}

/// Writes a package at `dir` depending on `table`, whose `main.rs` is `program`.
fn write_package(dir: &Path, table: &str, program: &str) -> std::io::Result<()> {
    std::fs::create_dir_all(dir.join("src"))?;
    let manifest = format!(
        "[package]\nname = \"readme-dependencies\"\nversion = \"0.0.0\"\nedition = \"2024\"\npublish = false\n\n{}",
        from_this_checkout(table, &root())
    );
    std::fs::write(dir.join("Cargo.toml"), manifest)?;
    std::fs::write(dir.join("src/main.rs"), program)?;
    std::fs::copy(root().join("Cargo.lock"), dir.join("Cargo.lock"))?;
    Ok(())
}

/// `cargo check` of the package at `dir`, offline, into the workspace's target directory.
fn check_command(dir: &Path) -> Command {
    let target = crate::run::target_dir();
    // `--offline`: the copied lock file pins every version, and nothing is downloaded. (Not
    // `--locked`: the throwaway package is a root the workspace's lock file does not list.)
    let mut command = cargo(&["check", "--quiet", "--offline"]);
    command
        .arg("--manifest-path")
        .arg(dir.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(target)
        .current_dir(dir);
    command
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_section_ends_at_the_next_heading_of_its_level() {
        let text = "# T\n## A\na\n```rust\n# hidden\n```\n### A.1\nb\n## B\nc\n";
        assert_eq!(
            section(text, "A"),
            Some("a\n```rust\n# hidden\n```\n### A.1\nb\n")
        );
        assert_eq!(section(text, "B"), Some("c\n"));
        assert_eq!(section(text, "C"), None);
    }

    #[test]
    fn only_blocks_of_the_language_are_taken() {
        let text = "```toml\na = 1\n```\n```rust\nfn x() {}\n```\n```toml\nb = 2\n```\n";
        assert_eq!(fenced_blocks(text, "toml"), ["a = 1\n", "b = 2\n"]);
        assert_eq!(fenced_blocks(text, "rust"), ["fn x() {}\n"]);
    }

    #[test]
    fn our_crates_are_taken_from_this_checkout_with_their_features() {
        let table = "[dependencies]\nswitchyard = \"0.1\"\nswitchyard-scheduler = { version = \"0.1\", features = [\"conformance\"] }\ntokio = \"1\"\n";
        let root = Path::new("/repo");
        assert_eq!(
            from_this_checkout(table, root),
            "[dependencies]\nswitchyard = { path = \"/repo/crates/switchyard\" }\nswitchyard-scheduler = { path = \"/repo/crates/switchyard-scheduler\", features = [\"conformance\"] }\ntokio = \"1\"\n"
        );
        let ours = our_dependencies(table);
        assert_eq!(ours.len(), 2);
        assert!(ours[0].features.is_empty());
        assert_eq!(ours[1].name, "switchyard-scheduler");
        assert_eq!(ours[1].features, ["conformance"]);
    }

    #[test]
    fn each_table_is_paired_with_the_program_right_after_it() {
        let text = "## Using the crates\n```toml\na = 1\n```\ntext\n```toml\nb = 2\n```\n```rust,no_run\n# use x;\nfn main() {}\n```\n## Next\n```rust\nfn y() {}\n```\n";
        assert_eq!(
            tables_and_programs(text),
            [
                ("a = 1\n".to_owned(), None),
                (
                    "b = 2\n".to_owned(),
                    Some("use x;\nfn main() {}".to_owned())
                )
            ]
        );
    }

    #[test]
    fn hidden_lines_of_the_first_service_are_shown() {
        let text = "## A first service\n\n```rust\n# use std::fmt;\nfn main() {\n    #\n}\n```\n";
        assert_eq!(
            first_service(text).as_deref(),
            Some("use std::fmt;\nfn main() {\n\n}")
        );
    }
}
