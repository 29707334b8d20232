//! The "Profiles" section of `docs/benchmarks.md`: every flame graph under `docs/profiles/`, a
//! row per bench and path (`<bench>-<path>-<stage>`, or `<bench>-<stage>` for a whole run) with
//! its `before` and `after` side by side and any other recording after them, each with its text
//! summary. Generated from the files, by `cargo xtask bench` and `cargo xtask profile`.

use crate::run::{Result, StepFailed, root};
use std::collections::BTreeMap;

/// The section's heading.
const HEADING: &str = "## Profiles";

/// The stages of a path given a column each; other stages share the last column.
const STAGES: [&str; 2] = ["before", "after"];

/// The folder of the profiles, relative to `docs/`.
pub(crate) const FOLDER: &str = "profiles";

/// The section for the profiles now under `docs/profiles/`.
pub(crate) fn current() -> String {
    let names = std::fs::read_dir(root().join("docs").join(FOLDER))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| entry.file_name().into_string().ok())
        .collect::<Vec<_>>();
    section(&names)
}

/// The section for the files named `names` (of `docs/profiles/`): each `<bench>-<label>.svg` is
/// shown, with a link to `<bench>-<label>.txt` when that is among them. A label's last
/// `-`-separated part is its stage and what comes before it the path it profiled (none: the
/// whole bench), so `sequential-before` and `sequential-after` share a row.
pub(crate) fn section(names: &[String]) -> String {
    // (bench, path) → stage → its cell.
    let mut rows: BTreeMap<(&str, &str), BTreeMap<&str, String>> = BTreeMap::new();
    for name in names {
        if let Some((bench, label)) = name
            .strip_suffix(".svg")
            .and_then(|stem| stem.split_once('-'))
        {
            let (path, stage) = label.rsplit_once('-').unwrap_or(("", label));
            let summary = names.contains(&format!("{bench}-{label}.txt"));
            rows.entry((bench, path))
                .or_default()
                .insert(stage, cell(bench, label, summary));
        }
    }
    let mut out = format!(
        "{HEADING}\n\n\
         Flame graphs of the CPU time of a bench run (`cargo xtask profile <bench> --label \
         <label>`: perf samples with call stacks, drawn by inferno; the width of a frame is its \
         share of the CPU time). Open one to zoom into a frame or search for a function; the text \
         beside each lists the functions with the most self and total time. The command, bench \
         arguments, commit and load of each recording are in its text and the graph's subtitle. \
         Stacks are unwound through frame pointers, which the C library lacks: time inside its \
         allocator is drawn under `[unknown]`, cut from its callers.\n\n"
    );
    if rows.is_empty() {
        out.push_str("None recorded yet.\n");
        return out;
    }
    out.push_str("| bench | path | before | after | other recordings |\n|---|---|---|---|---|\n");
    for ((bench, path), stages) in &rows {
        let stage_cell = |stage: &str| stages.get(stage).map_or("", String::as_str);
        let others: Vec<String> = stages
            .iter()
            .filter(|(stage, _)| !STAGES.contains(stage))
            .map(|(stage, cell)| format!("{stage}:<br>{cell}"))
            .collect();
        let path = if path.is_empty() { "whole run" } else { path };
        out.push_str(&format!(
            "| `{bench}` | {path} | {} | {} | {} |\n",
            stage_cell(STAGES[0]),
            stage_cell(STAGES[1]),
            others.join("<br>"),
        ));
    }
    out
}

/// The picture of recording `<bench>-<label>`, with a link to its text when it has a `summary`.
fn cell(bench: &str, label: &str, summary: bool) -> String {
    let file = format!("{FOLDER}/{bench}-{label}");
    let picture = format!("[![{bench}, {label}]({file}.svg)]({file}.svg)");
    if summary {
        format!("{picture}<br>[top functions]({file}.txt)")
    } else {
        picture
    }
}

/// `markdown` with its Profiles section replaced by `section` (or `section` appended when it has
/// none). The section runs to the next level-2 heading or the end.
pub(crate) fn replace_section(markdown: &str, section: &str) -> String {
    let start = if markdown.starts_with(&format!("{HEADING}\n")) {
        Some(0)
    } else {
        markdown
            .find(&format!("\n{HEADING}\n"))
            .map(|newline| newline + 1)
    };
    let Some(start) = start else {
        let separator = if markdown.is_empty() || markdown.ends_with("\n\n") {
            ""
        } else if markdown.ends_with('\n') {
            "\n"
        } else {
            "\n\n"
        };
        return format!("{markdown}{separator}{section}");
    };
    let after_heading = start + HEADING.len();
    let end = markdown[after_heading..]
        .find("\n## ")
        .map_or(markdown.len(), |offset| after_heading + offset + 1);
    let rest = &markdown[end..];
    let separator = if rest.is_empty() { "" } else { "\n" };
    format!("{}{section}{separator}{rest}", &markdown[..start])
}

/// Rewrites the Profiles section of `docs/benchmarks.md` from the files under `docs/profiles/`.
pub(crate) fn update_benchmarks() -> Result {
    let path = root().join("docs").join("benchmarks.md");
    let failed = |error: std::io::Error| StepFailed {
        step: "update the Profiles section of docs/benchmarks.md".into(),
        detail: format!("{}: {error}", path.display()),
    };
    let markdown = std::fs::read_to_string(&path).map_err(failed)?;
    let updated = replace_section(&markdown, &current());
    std::fs::write(&path, updated).map_err(failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|name| (*name).to_owned()).collect()
    }

    /// The section's table: its lines from the header row on.
    fn table(section: &str) -> Vec<&str> {
        section
            .lines()
            .skip_while(|line| !line.starts_with('|'))
            .collect()
    }

    #[test]
    fn each_bench_and_path_has_a_row_with_before_and_after_side_by_side() {
        let section = section(&names(&[
            "remote_calls-before.svg",
            "remote_calls-before.txt",
            "local_dispatch-a9fc721.svg",
            "local_dispatch-after.svg",
            "local_dispatch-before.svg",
            "local_dispatch-before.txt",
            "sqlite_scheduler-burst-after.svg",
            "sqlite_scheduler-burst-before.svg",
            "sqlite_scheduler-burst-inline.svg",
            "notes.md",
        ]));
        assert!(section.starts_with("## Profiles\n\n"), "{section}");
        let pictures = |bench: &str, label: &str| {
            format!(
                "[![{bench}, {label}](profiles/{bench}-{label}.svg)](profiles/{bench}-{label}.svg)"
            )
        };
        assert_eq!(
            table(&section),
            [
                "| bench | path | before | after | other recordings |".to_owned(),
                "|---|---|---|---|---|".to_owned(),
                format!(
                    "| `local_dispatch` | whole run | {}<br>[top functions](profiles/local_dispatch-before.txt) | {} | a9fc721:<br>{} |",
                    pictures("local_dispatch", "before"),
                    pictures("local_dispatch", "after"),
                    pictures("local_dispatch", "a9fc721"),
                ),
                format!(
                    "| `remote_calls` | whole run | {}<br>[top functions](profiles/remote_calls-before.txt) |  |  |",
                    pictures("remote_calls", "before"),
                ),
                format!(
                    "| `sqlite_scheduler` | burst | {} | {} | inline:<br>{} |",
                    pictures("sqlite_scheduler", "burst-before"),
                    pictures("sqlite_scheduler", "burst-after"),
                    pictures("sqlite_scheduler", "burst-inline"),
                ),
            ]
        );
    }

    #[test]
    fn without_profiles_the_section_says_so() {
        let section = section(&names(&["README.txt"]));
        assert!(section.ends_with("None recorded yet.\n"), "{section}");
        assert!(table(&section).is_empty());
    }

    #[test]
    fn the_section_is_replaced_where_it_stands() {
        let new = "## Profiles\n\nnew\n";
        assert_eq!(
            replace_section("# B\n\n## A\n\na\n\n## Profiles\n\nold\n\n## C\n\nc\n", new),
            "# B\n\n## A\n\na\n\n## Profiles\n\nnew\n\n## C\n\nc\n"
        );
        assert_eq!(
            replace_section("# B\n\n## Profiles\n\nold\n| x |\n", new),
            "# B\n\n## Profiles\n\nnew\n"
        );
        assert_eq!(replace_section("## Profiles\n\nold\n", new), new);
    }

    #[test]
    fn a_missing_section_is_appended_after_a_blank_line() {
        let new = "## Profiles\n\nnew\n";
        for old in ["# B\n\nb\n", "# B\n\nb\n\n", "# B\n\nb"] {
            assert_eq!(
                replace_section(old, new),
                "# B\n\nb\n\n## Profiles\n\nnew\n"
            );
        }
    }
}
