//! Repository automation, run as `cargo xtask <command>`:
//!
//! - `test`: everything CI checks, stopping at the first failure and naming it (on a throwaway
//!   PostgreSQL server and with the Chromium it installs and starts);
//! - `docs`: the API docs and the guides (whose Rust blocks compile as doc tests);
//! - `bench`: the criterion benchmarks, written to `docs/benchmarks.md`;
//! - `profile`: one bench's CPU profile (perf), drawn as a flame graph under `docs/profiles/`;
//! - `readme`: only the step of `test` that builds each `[dependencies]` table of the README
//!   with its program;
//! - `fuzz`: one coverage-guided fuzz target of `fuzz/`, or the list of them.

mod apt;
mod bench;
mod browser;
mod docs;
mod fuzz;
mod postgres;
mod profile;
mod readme;
mod run;
mod test;
#[cfg(test)]
mod tidy;

use std::process::ExitCode;

const USAGE: &str = "usage: cargo xtask <test|docs|bench|profile|readme|fuzz>

  test    fmt, clippy, docs, every test, each crate alone, the README's dependency
          tables, the dependency check, each fuzz target briefly
  docs    API docs and guides (guides compile as doc tests)
  bench   run the benchmarks and write docs/benchmarks.md
  profile record one bench's CPU profile with perf and draw it as a flame graph in
          docs/profiles/ (`cargo xtask profile --list` names the benches)
  readme  build each README dependency table with its program (a step of test)
  fuzz    fuzz one target for a while (`cargo xtask fuzz --list` names them)";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("test") => test::run(),
        Some("docs") => docs::run(),
        Some("bench") => bench::run(&args[1..]),
        Some("profile") => profile::run(&args[1..]),
        Some("readme") => readme::check_dependency_tables(),
        Some("fuzz") => fuzz::run(&args[1..]),
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("\nxtask: {error}");
            ExitCode::FAILURE
        }
    }
}
