//! The benches of the workspace, as `cargo metadata` reads them from the crates' manifests
//! (`[[bench]]` entries), and the lookup of the one a user names.

use crate::run::{self, Result, StepFailed};

/// One bench target of a workspace package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Bench {
    /// The package that declares it (`switchyard-messaging`).
    pub(crate) package: String,
    /// The bench's name (`local_dispatch`).
    pub(crate) name: String,
    /// The package's folder, where `cargo bench` runs the bench binary.
    pub(crate) dir: String,
}

impl Bench {
    /// The package's name without the `switchyard-` prefix (`messaging`).
    fn short_package(&self) -> &str {
        self.package
            .strip_prefix("switchyard-")
            .unwrap_or(&self.package)
    }

    /// How the user names it: `name` alone, or `short_package/name` when another package has a
    /// bench of the same name.
    pub(crate) fn spelling(&self, all: &[Bench]) -> String {
        if is_unique(&self.name, all) {
            self.name.clone()
        } else {
            format!("{}/{}", self.short_package(), self.name)
        }
    }

    /// The stem of its profile files: `name` alone, or `short_package_name` when the name is
    /// shared. Never holds a `-`, which separates the stem from the label in file names.
    pub(crate) fn stem(&self, all: &[Bench]) -> String {
        let stem = if is_unique(&self.name, all) {
            self.name.clone()
        } else {
            format!("{}_{}", self.short_package(), self.name)
        };
        stem.replace('-', "_")
    }
}

fn is_unique(name: &str, all: &[Bench]) -> bool {
    all.iter().filter(|bench| bench.name == name).count() == 1
}

/// Every bench of the workspace's packages, sorted by package then name.
pub(crate) fn all() -> Result<Vec<Bench>> {
    let metadata = run::output(
        "cargo metadata",
        run::cargo(&["metadata", "--no-deps", "--format-version", "1"]),
    )?;
    from_metadata(&metadata)
}

/// The benches listed in the output of `cargo metadata --format-version 1`.
pub(crate) fn from_metadata(json: &str) -> Result<Vec<Bench>> {
    let failed = |detail: String| StepFailed {
        step: "cargo metadata".into(),
        detail,
    };
    let metadata: serde_json::Value = serde_json::from_str(json)
        .map_err(|error| failed(format!("unreadable output: {error}")))?;
    let packages = metadata["packages"]
        .as_array()
        .ok_or_else(|| failed("no `packages` list in its output".into()))?;
    let mut benches = Vec::new();
    for package in packages {
        let manifest = package["manifest_path"].as_str().unwrap_or_default();
        let dir = manifest
            .strip_suffix("Cargo.toml")
            .unwrap_or(manifest)
            .trim_end_matches('/');
        for target in package["targets"].as_array().into_iter().flatten() {
            let is_bench = target["kind"]
                .as_array()
                .is_some_and(|kinds| kinds.iter().any(|kind| kind == "bench"));
            if let (true, Some(package_name), Some(name)) =
                (is_bench, package["name"].as_str(), target["name"].as_str())
            {
                benches.push(Bench {
                    package: package_name.to_owned(),
                    name: name.to_owned(),
                    dir: dir.to_owned(),
                });
            }
        }
    }
    benches.sort_by(|a, b| (&a.package, &a.name).cmp(&(&b.package, &b.name)));
    Ok(benches)
}

/// The bench `wanted` names: a bench's name, or `package/name` (with or without the
/// `switchyard-` prefix), which a name two packages share needs.
pub(crate) fn find<'a>(all: &'a [Bench], wanted: &str) -> std::result::Result<&'a Bench, String> {
    let matches: Vec<&Bench> = match wanted.split_once('/') {
        Some((package, name)) => all
            .iter()
            .filter(|bench| {
                bench.name == name && (bench.package == package || bench.short_package() == package)
            })
            .collect(),
        None => all.iter().filter(|bench| bench.name == wanted).collect(),
    };
    let names = || {
        all.iter()
            .map(|bench| bench.spelling(all))
            .collect::<Vec<_>>()
            .join(", ")
    };
    match matches.as_slice() {
        [bench] => Ok(bench),
        [] => Err(format!("no bench `{wanted}`; the benches are: {}", names())),
        several => Err(format!(
            "`{wanted}` names several benches: {}; say which with package/name",
            several
                .iter()
                .map(|bench| bench.spelling(all))
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const METADATA: &str = r#"{"packages": [
        {"name": "switchyard-sqlite", "manifest_path": "/w/crates/switchyard-sqlite/Cargo.toml",
         "targets": [{"name": "switchyard_sqlite", "kind": ["lib"]},
                     {"name": "scheduler", "kind": ["bench"]},
                     {"name": "sqlite_append", "kind": ["bench"]}]},
        {"name": "switchyard-messaging", "manifest_path": "/w/crates/switchyard-messaging/Cargo.toml",
         "targets": [{"name": "local_dispatch", "kind": ["bench"]},
                     {"name": "dispatch", "kind": ["test"]}]},
        {"name": "switchyard-postgres", "manifest_path": "/w/crates/switchyard-postgres/Cargo.toml",
         "targets": [{"name": "scheduler", "kind": ["bench"]}]}
    ]}"#;

    fn benches() -> Vec<Bench> {
        from_metadata(METADATA).unwrap()
    }

    fn spellings(all: &[Bench]) -> Vec<String> {
        all.iter().map(|bench| bench.spelling(all)).collect()
    }

    #[test]
    fn only_bench_targets_are_taken_sorted_by_package() {
        let all = benches();
        assert_eq!(
            spellings(&all),
            [
                "local_dispatch",
                "postgres/scheduler",
                "sqlite/scheduler",
                "sqlite_append"
            ]
        );
        assert_eq!(all[0].dir, "/w/crates/switchyard-messaging");
    }

    #[test]
    fn a_unique_name_is_found_alone_and_with_its_package() {
        let all = benches();
        for wanted in [
            "local_dispatch",
            "messaging/local_dispatch",
            "switchyard-messaging/local_dispatch",
        ] {
            let bench = find(&all, wanted).unwrap();
            assert_eq!(bench.package, "switchyard-messaging", "{wanted}");
            assert_eq!(bench.stem(&all), "local_dispatch");
        }
    }

    #[test]
    fn a_shared_name_needs_its_package_and_gets_it_in_the_stem() {
        let all = benches();
        let error = find(&all, "scheduler").unwrap_err();
        assert!(
            error.contains("postgres/scheduler, sqlite/scheduler"),
            "{error}"
        );
        let bench = find(&all, "sqlite/scheduler").unwrap();
        assert_eq!(bench.package, "switchyard-sqlite");
        assert_eq!(bench.stem(&all), "sqlite_scheduler");
    }

    #[test]
    fn an_unknown_name_lists_the_benches() {
        let error = find(&benches(), "nope").unwrap_err();
        assert!(error.contains("no bench `nope`"), "{error}");
        assert!(error.contains("local_dispatch"), "{error}");
    }

    #[test]
    fn the_workspace_has_the_hot_path_benches() {
        let all = all().unwrap();
        for (name, package) in [
            ("local_dispatch", "switchyard-messaging"),
            ("aggregate_commands", "switchyard-aggregates"),
            ("remote_calls", "switchyard-cluster"),
        ] {
            assert_eq!(find(&all, name).unwrap().package, package);
        }
    }
}
