//! `cargo xtask bench [FILTER]`: runs the criterion benches and writes `docs/benchmarks.md`.
//!
//! Each bench measures its subject beside its floor in the same run and writes a Markdown
//! section into `target/switchyard-bench/`; this command runs them, then joins the sections
//! under a header naming the machine, the commit, the date and the load on the machine when
//! the run began, since a figure means little without them. `cargo xtask bench scheduler` runs
//! the scheduler's benches of both stores (SQLite and memory, then PostgreSQL). The report
//! ends with the Profiles section: the flame graphs `cargo xtask profile` wrote under
//! `docs/profiles/`.

use std::path::Path;

use crate::run::{self, Result, StepFailed, cargo, step};

pub(crate) fn run(args: &[String]) -> Result {
    let root = run::root();
    let out = root.join("target").join("switchyard-bench");
    if args.is_empty() {
        // A full run starts clean, so no section from an older run survives.
        let _ = std::fs::remove_dir_all(&out);
    }
    // Other work on the machine slows every figure: the report says how much there was when
    // the run began (long benches also give theirs in their own sections).
    let load = run::load_average();
    let mut command = cargo(&["bench", "--workspace", "--all-features"]);
    if let Some(filter) = args.first() {
        command.args(["--bench", filter]);
    }
    command.env("SWITCHYARD_BENCH_OUT", &out);
    {
        // Stopped at the end of this block, whether the benches passed or not.
        let postgres = crate::postgres::start()?;
        postgres.export(&mut command);
        step("benchmarks", command)?;
    }
    let report =
        header(&load, args.first())? + &sections(&out)? + &crate::profile::gallery::current();
    let path = root.join("docs").join("benchmarks.md");
    std::fs::write(&path, report).map_err(|error| StepFailed {
        step: "write docs/benchmarks.md".into(),
        detail: error.to_string(),
    })?;
    println!("\nxtask: wrote {}", path.display());
    Ok(())
}

/// The report's header: the machine, the commit, the date and the load when this run began,
/// and, for a run of some benches only (`filter`), that the other sections are from earlier
/// runs.
fn header(load: &str, filter: Option<&String>) -> Result<String> {
    let commit = run::output("git commit", run::git(&["rev-parse", "--short", "HEAD"]))?;
    let dirty = !run::output(
        "git status",
        run::git(&["status", "--porcelain", "--untracked-files=no"]),
    )?
    .trim()
    .is_empty();
    let date = run::output("date", command("date", &["-u", "+%Y-%m-%d %H:%M UTC"]))?;
    let rustc = run::output("rustc", command("rustc", &["--version"]))?;
    let kernel = run::output("uname", command("uname", &["-sr"]))?;
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|line| line.starts_with("model name"))
                .and_then(|line| line.split(':').nth(1))
                .map(|model| model.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    Ok(format!(
        "# Benchmarks\n\n\
         Written by `cargo xtask bench`; do not edit by hand.\n\n\
         | | |\n|---|---|\n\
         | date | {} |\n| commit | `{}`{} |\n| CPU | {} ({} cores) |\n| OS | {} |\n| compiler | {} |\n\
         | load average at start (1, 5, 15 min) | {} |\n{}\n\
         This machine's cores switch between a full-speed and a half-speed mode every few \
         seconds, so every subject is measured beside its floor (raw tokio, raw TCP, raw SQL) in \
         alternating rounds of the same run, and the ratio is the figure to compare across \
         runs.\n\n",
        date.trim(),
        commit.trim(),
        if dirty {
            " (with uncommitted changes)"
        } else {
            ""
        },
        cpu,
        cores,
        kernel.trim(),
        rustc.trim(),
        load,
        filter.map_or(String::new(), |filter| partial_run(filter)),
    ))
}

/// The header's row for a run of the benches `filter` names only: the rows above describe that
/// run, and the sections it did not write are kept from earlier ones (each gives its own load).
fn partial_run(filter: &str) -> String {
    format!(
        "| this run | `cargo xtask bench {filter}`: only its sections; the others are kept from \
         earlier runs, each with the load it ran under |\n"
    )
}

/// The sections the benches wrote, in file-name order.
fn sections(out: &Path) -> Result<String> {
    let entries = std::fs::read_dir(out).map_err(|error| StepFailed {
        step: "collect bench results".into(),
        detail: format!("{}: {error} (did the benches run?)", out.display()),
    })?;
    let mut files: Vec<_> = entries
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "md"))
        .collect();
    files.sort();
    let mut all = String::new();
    for file in files {
        let text = std::fs::read_to_string(&file).map_err(|error| StepFailed {
            step: "collect bench results".into(),
            detail: format!("{}: {error}", file.display()),
        })?;
        all.push_str(&text);
        all.push('\n');
    }
    Ok(all)
}

fn command(program: &str, args: &[&str]) -> std::process::Command {
    let mut command = std::process::Command::new(program);
    command.args(args);
    command
}
