//! The docs kept in step with the code by rule: every crate under `crates/` has a row in the
//! README's crates table (not "planned" once it has code) and a section in
//! `docs/ARCHITECTURE.md`; every guide is linked from the README and compiled by the facade;
//! every example is named in the README; the README's `[dependencies]` lines name only features
//! that exist. New crates, guides and examples are picked up from the file system.
//!
//! Each failure names what is missing and where to add it.

use std::path::Path;

use crate::readme::{self, USING_THE_CRATES};
use crate::run::{self, root};

fn read(relative: &str) -> String {
    std::fs::read_to_string(root().join(relative)).unwrap_or_default()
}

fn readme() -> String {
    read("README.md")
}

/// Names of the entries of `dir` (relative to the root) that `keep` accepts, sorted.
fn entries(dir: &str, keep: impl Fn(&Path) -> bool) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(root().join(dir))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|entry| keep(&entry.path()))
        .filter_map(|entry| entry.file_name().into_string().ok())
        .collect();
    names.sort();
    names
}

/// Asserts that `problems` is empty, listing them one a line.
#[track_caller]
fn assert_none(problems: &[String]) {
    assert!(problems.is_empty(), "\n{}\n", problems.join("\n"));
}

/// The cells of the rows of the README's crates table (below `## Crates`), header excluded.
fn crate_rows(readme: &str) -> Vec<Vec<String>> {
    readme::section(readme, "Crates")
        .unwrap_or_default()
        .lines()
        .filter(|line| line.trim_start().starts_with('|'))
        .skip(2)
        .map(|line| {
            line.trim()
                .trim_matches('|')
                .split('|')
                .map(|cell| cell.trim().to_owned())
                .collect()
        })
        .collect()
}

fn crate_table_problems(readme: &str, crates: &[String]) -> Vec<String> {
    let rows = crate_rows(readme);
    let mut problems = Vec::new();
    for name in crates {
        let row = rows.iter().find(|cells| {
            cells
                .first()
                .is_some_and(|c| c.contains(&format!("`{name}`")))
        });
        let Some(row) = row else {
            problems.push(format!(
                "README.md: the crates table (## Crates) has no row for `{name}`: add \
                 `| [`{name}`](crates/{name}) | what it holds | status |`"
            ));
            continue;
        };
        if !root()
            .join("crates")
            .join(name)
            .join("src/lib.rs")
            .is_file()
        {
            continue;
        }
        let status = row.last().map(String::as_str).unwrap_or_default();
        if status.contains("planned") {
            problems.push(format!(
                "README.md: `{name}` has code (crates/{name}/src/lib.rs) but its row in the crates \
                 table (## Crates) says `{status}`: say what is done, and behind which feature"
            ));
        }
        if !row[0].contains(&format!("](crates/{name})")) {
            problems.push(format!(
                "README.md: the row of `{name}` in the crates table (## Crates) does not link its \
                 folder: write its name as [`{name}`](crates/{name})"
            ));
        }
    }
    problems
}

#[test]
fn every_crate_has_a_readme_row_and_none_with_code_is_planned() {
    assert_none(&crate_table_problems(&readme(), &super::library_crates()));
}

/// The names the headings of `markdown` give in backticks, `crates/` prefixes dropped.
fn named_in_headings(markdown: &str) -> Vec<String> {
    markdown
        .lines()
        .filter(|line| line.starts_with('#'))
        .flat_map(|line| line.split('`').skip(1).step_by(2))
        .map(|name| name.trim_start_matches("crates/").trim_end_matches('/'))
        .map(str::to_owned)
        .collect()
}

fn architecture_problems(architecture: &str, crates: &[String]) -> Vec<String> {
    let named = named_in_headings(architecture);
    crates
        .iter()
        .filter(|name| !named.contains(name))
        .map(|name| {
            format!(
                "docs/ARCHITECTURE.md has no section for `{name}`: add a `### `crates/{name}`` \
                 heading to its code map (## Code map) saying what each module holds"
            )
        })
        .collect()
}

#[test]
fn every_crate_has_an_architecture_section() {
    assert_none(&architecture_problems(
        &read("docs/ARCHITECTURE.md"),
        &super::library_crates(),
    ));
}

fn guides() -> Vec<String> {
    let guides = entries("docs/guides", |path| {
        path.extension().is_some_and(|ext| ext == "md")
    });
    assert!(!guides.is_empty(), "no guide found under docs/guides/");
    guides
}

fn guide_problems(readme: &str, facade: &str, guides: &[String]) -> Vec<String> {
    let mut problems = Vec::new();
    for guide in guides {
        if !readme.contains(&format!("](docs/guides/{guide})")) {
            problems.push(format!(
                "README.md does not link docs/guides/{guide}: add `- [Its title](docs/guides/{guide}): \
                 what it covers` to its list under ## Documentation"
            ));
        }
        if !facade.contains(&format!("docs/guides/{guide}\"")) {
            problems.push(format!(
                "docs/guides/{guide} is not compiled as doc tests: include it in the `guides` \
                 module of crates/switchyard/src/lib.rs, behind the features its code needs"
            ));
        }
    }
    problems
}

#[test]
fn every_guide_is_linked_from_the_readme_and_compiled() {
    assert_none(&guide_problems(
        &readme(),
        &read("crates/switchyard/src/lib.rs"),
        &guides(),
    ));
}

/// An example and how the README must name it.
#[derive(Debug, PartialEq)]
struct Example {
    /// Where it lives, for the message.
    place: String,
    /// What the README must contain: `--example <name>`, or the folder of an example package.
    named_by: String,
}

/// The examples: each `[[example]]` of examples/Cargo.toml, each examples/*.rs that none of
/// them names as its path, and each package folder (one with a `Cargo.toml`) under examples/.
fn examples(manifest: &str, files: &[String], packages: &[String]) -> Vec<Example> {
    let mut found = Vec::new();
    let mut paths = Vec::new();
    for table in manifest.split("[[example]]").skip(1) {
        let table = table.split("\n[").next().unwrap_or_default();
        let field = |key: &str| {
            table.lines().find_map(|line| {
                let (name, value) = line.split_once('=')?;
                (name.trim() == key).then(|| value.trim().trim_matches('"').to_owned())
            })
        };
        let Some(name) = field("name") else { continue };
        let path = field("path").unwrap_or_else(|| format!("{name}.rs"));
        found.push(Example {
            place: format!("examples/{path}"),
            named_by: format!("--example {name}"),
        });
        paths.push(path);
    }
    for file in files.iter().filter(|file| !paths.contains(file)) {
        let name = file.trim_end_matches(".rs");
        found.push(Example {
            place: format!("examples/{file}"),
            named_by: format!("--example {name}"),
        });
    }
    for package in packages {
        found.push(Example {
            place: format!("examples/{package}/Cargo.toml"),
            named_by: format!("examples/{package}"),
        });
    }
    found
}

fn example_problems(readme: &str, examples: &[Example]) -> Vec<String> {
    // Prose wraps lines anywhere: `--example` may end one line and the name open the next.
    let readme = readme.split_whitespace().collect::<Vec<_>>().join(" ");
    examples
        .iter()
        .filter(|example| !readme.contains(&example.named_by))
        .map(|Example { place, named_by }| {
            format!(
                "README.md does not name the example in {place}: say what it shows beside \
                 `{named_by}` (in ## The two commands, with the other examples)"
            )
        })
        .collect()
}

#[test]
fn every_example_is_named_in_the_readme() {
    let files = entries("examples", |path| {
        path.extension().is_some_and(|ext| ext == "rs")
    });
    let packages = entries("examples", |path| path.join("Cargo.toml").is_file());
    let examples = examples(&read("examples/Cargo.toml"), &files, &packages);
    assert!(!examples.is_empty(), "no example found under examples/");
    assert_none(&example_problems(&readme(), &examples));
}

fn dependency_problems(readme: &str) -> Vec<String> {
    let tables = readme::dependency_tables(readme);
    if tables.is_empty() {
        return vec![format!(
            "README.md has no ```toml block under ## {USING_THE_CRATES}: give the \
             [dependencies] lines of each layer there"
        )];
    }
    let mut problems = Vec::new();
    for (index, table) in tables.iter().enumerate() {
        let number = index + 1;
        let ours = readme::our_dependencies(table);
        if !table.contains("[dependencies]") || ours.is_empty() {
            problems.push(format!(
                "README.md: toml block {number} under ## {USING_THE_CRATES} is not a \
                 [dependencies] table naming one of our crates"
            ));
        }
        for dependency in ours {
            let name = &dependency.name;
            let Ok(features) = run::crate_features(name) else {
                problems.push(format!(
                    "README.md: toml block {number} under ## {USING_THE_CRATES} names `{name}`, \
                     which is not a crate under crates/"
                ));
                continue;
            };
            for feature in dependency.features.iter().filter(|f| !features.contains(f)) {
                problems.push(format!(
                    "README.md: toml block {number} under ## {USING_THE_CRATES} turns on feature \
                     `{feature}` of `{name}`, which crates/{name}/Cargo.toml does not have \
                     (it has: {})",
                    features.join(", ")
                ));
            }
        }
    }
    problems
}

#[test]
fn the_readme_dependency_lines_name_existing_crates_and_features() {
    assert_none(&dependency_problems(&readme()));
}

/// Each check fails, naming what is missing, on docs that lack it.
mod failures {
    use super::*;

    const README: &str = "\
## Crates

| crate | what | status |
|---|---|---|
| [`switchyard-a`](crates/switchyard-a) | a | done |
| `switchyard-b` | b | planned |

## Using the crates

```toml
[dependencies]
switchyard = { version = \"0.1\", features = [\"no-such-feature\"] }
```

## Documentation

- [Guide](docs/guides/one.md)

`cargo run --example greeter`
";

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|name| (*name).to_owned()).collect()
    }

    #[test]
    fn a_crate_without_a_row_and_one_still_planned_are_reported() {
        // `switchyard-b` stands for a crate with code: name the facade, which has some.
        let readme = README.replace("switchyard-b", "switchyard");
        let problems = crate_table_problems(&readme, &names(&["switchyard", "switchyard-c"]));
        assert_eq!(problems.len(), 3, "{problems:#?}");
        assert!(problems[0].contains("`switchyard` has code") && problems[0].contains("planned"));
        assert!(problems[1].contains("does not link its folder"));
        assert!(problems[2].contains("no row for `switchyard-c`"));
    }

    #[test]
    fn a_crate_without_an_architecture_section_is_reported() {
        let architecture = "## Code map\n\n### `crates/switchyard-a`\n\n- `lib.rs`\n";
        let problems = architecture_problems(architecture, &names(&["switchyard-a", "switchyard"]));
        assert_eq!(problems.len(), 1, "{problems:#?}");
        assert!(problems[0].contains("no section for `switchyard`"));
    }

    #[test]
    fn a_guide_not_linked_or_not_compiled_is_reported() {
        let facade = "#[doc = include_str!(\"../../../docs/guides/one.md\")]";
        let problems = guide_problems(README, facade, &names(&["one.md", "two.md"]));
        assert_eq!(problems.len(), 2, "{problems:#?}");
        assert!(problems[0].contains("does not link docs/guides/two.md"));
        assert!(problems[1].contains("docs/guides/two.md is not compiled"));
    }

    #[test]
    fn examples_of_every_kind_not_named_are_reported() {
        let manifest = "[[example]]\nname = \"greeter\"\npath = \"greeter.rs\"\n\n[[example]]\nname = \"bank\"\npath = \"bank/main.rs\"\n\n[lints]\nworkspace = true\n";
        let found = examples(
            manifest,
            &names(&["greeter.rs", "loose.rs"]),
            &names(&["warehouse"]),
        );
        let problems = example_problems(README, &found);
        assert_eq!(problems.len(), 3, "{problems:#?}");
        assert!(
            problems[0].contains("examples/bank/main.rs") && problems[0].contains("--example bank")
        );
        assert!(
            problems[1].contains("examples/loose.rs") && problems[1].contains("--example loose")
        );
        assert!(problems[2].contains("examples/warehouse/Cargo.toml"));
    }

    #[test]
    fn a_feature_the_facade_lacks_is_reported() {
        let problems = dependency_problems(README);
        assert_eq!(problems.len(), 1, "{problems:#?}");
        assert!(problems[0].contains("`no-such-feature` of `switchyard`"));
        let problems = dependency_problems("## Using the crates\n\nNothing.\n");
        assert!(problems[0].contains("no ```toml block"), "{problems:#?}");
    }
}
