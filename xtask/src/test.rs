//! `cargo xtask test`: everything CI checks.

use crate::run::{self, Result, StepFailed, cargo, step};

/// Crates a messaging-only build must not compile: database drivers and the cluster's network.
const FORBIDDEN_IN_MESSAGING_ONLY: &[&str] = &[
    "rusqlite",
    "libsqlite3-sys",
    "tokio-postgres",
    "postgres-protocol",
    "deadpool-postgres",
    "sqlx",
    "chitchat",
    "rustls",
    "tokio-rustls",
    "switchyard-aggregates",
    "switchyard-scheduler",
    "switchyard-sqlite",
    "switchyard-postgres",
    "switchyard-cluster",
];

pub(crate) fn run() -> Result {
    step("fmt", cargo(&["fmt", "--all", "--", "--check"]))?;
    step(
        "clippy",
        cargo(&[
            "clippy",
            "--workspace",
            "--all-targets",
            "--all-features",
            "--",
            "-D",
            "warnings",
        ]),
    )?;
    crate::docs::api_docs()?;
    crate::apt::ensure_iproute2()?;
    {
        // Both stopped at the end of this block, whether the tests passed or not.
        let postgres = crate::postgres::start()?;
        let browser = crate::browser::start()?;
        let mut tests = cargo(&["test", "--workspace", "--all-features", "--no-fail-fast"]);
        postgres.export(&mut tests);
        browser.export(&mut tests);
        step("tests", tests)?;
        let mut guides = crate::docs::guides_command();
        postgres.export(&mut guides);
        step("guides", guides)?;
    }
    for feature in run::crate_features("switchyard")? {
        step(
            &format!("switchyard with only `{feature}`"),
            cargo(&[
                "check",
                "--package",
                "switchyard",
                "--no-default-features",
                "--features",
                &feature,
            ]),
        )?;
    }
    crate::readme::check_dependency_tables()?;
    for library in run::library_crates()? {
        step(
            &format!("{library} builds alone"),
            cargo(&["check", "--package", &library, "--lib"]),
        )?;
    }
    step(
        "benches compile",
        cargo(&["check", "--workspace", "--benches", "--all-features"]),
    )?;
    messaging_only_pulls_in_no_driver()?;
    crate::fuzz::smoke()?;
    println!("\nxtask: every step passed");
    Ok(())
}

fn messaging_only_pulls_in_no_driver() -> Result {
    let name = "messaging-only dependency check";
    println!("\n==> {name}");
    let tree = run::output(
        name,
        cargo(&[
            "tree",
            "--package",
            "switchyard",
            "--no-default-features",
            "--edges",
            "normal",
            "--prefix",
            "none",
        ]),
    )?;
    let found: Vec<&str> = tree
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .filter(|package| FORBIDDEN_IN_MESSAGING_ONLY.contains(package))
        .collect();
    if !found.is_empty() {
        return Err(StepFailed {
            step: name.into(),
            detail: format!(
                "`switchyard` without default features pulls in {}",
                found.join(", ")
            ),
        });
    }
    let packages = tree.lines().filter(|l| !l.trim().is_empty()).count();
    println!("==> {name}: ok ({packages} packages, none of them a driver or the cluster)");
    Ok(())
}
