//! `cargo xtask fuzz`: the coverage-guided fuzz targets of `fuzz/`, one per decoder of bytes
//! from outside (see the "Fuzzing" section of `docs/reliability.md`).
//!
//! The engine is libFuzzer, compiled from the `libfuzzer-sys` crate (it needs a C++ compiler,
//! installed with `apt-get` when missing). The targets are built on the stable toolchain with
//! LLVM's SanitizerCoverage instrumentation, which stable `rustc` enables through
//! `-Cpasses=sancov-module` and `-Cllvm-args`: neither nightly, `RUSTC_BOOTSTRAP` nor
//! cargo-fuzz is needed. No sanitizer is added (they need nightly's `-Zsanitizer`): the
//! crates forbid `unsafe`, so a fuzzer here looks for panics, aborts, hangs and runaway
//! memory, all of which libFuzzer catches without one.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use crate::run::{Result, StepFailed, cargo, output, root, step};

const USAGE: &str = "usage: cargo xtask fuzz <target> [--time SECONDS] [--runs COUNT]
       cargo xtask fuzz --list
       cargo xtask fuzz --ci

  Builds the targets of fuzz/ with coverage instrumentation and runs one with libFuzzer, on
  fuzz/corpus-work/<target> (kept between runs, not committed) and the committed seeds in
  fuzz/corpus/<target>, until SECONDS or COUNT executions, whichever comes first (60 seconds
  when neither is given). A crashing input is written to fuzz/artifacts/<target>/.
  --ci runs what `cargo xtask test` runs: every target for a few seconds.";

/// How long `cargo xtask test` runs each target.
pub(crate) const CI_SECONDS: u64 = 6;

/// The instrumentation: what cargo-fuzz passes, less the nightly-only sanitizer flags.
const RUSTFLAGS: &[&str] = &[
    "-Cpasses=sancov-module",
    "-Cllvm-args=-sanitizer-coverage-level=4",
    "-Cllvm-args=-sanitizer-coverage-inline-8bit-counters",
    "-Cllvm-args=-sanitizer-coverage-pc-table",
    "-Cllvm-args=-sanitizer-coverage-trace-compares",
    "--cfg",
    "fuzzing",
    "-Cdebug-assertions",
    "-Coverflow-checks",
];

/// When one run stops: at whichever limit comes first.
struct Limit {
    seconds: Option<u64>,
    runs: Option<u64>,
}

pub(crate) fn run(args: &[String]) -> Result {
    let usage = |detail: &str| StepFailed {
        step: "fuzz".into(),
        detail: format!("{detail}\n\n{USAGE}"),
    };
    let targets = targets()?;
    let Some(first) = args.first() else {
        return Err(usage("name a target"));
    };
    if first == "--ci" {
        return smoke();
    }
    if first == "--list" {
        for target in &targets {
            println!("{target}");
        }
        return Ok(());
    }
    if !targets.contains(first) {
        return Err(usage(&format!(
            "no target `{first}`; the targets are: {}",
            targets.join(", ")
        )));
    }
    let mut limit = Limit {
        seconds: None,
        runs: None,
    };
    let mut rest = args[1..].iter();
    while let Some(flag) = rest.next() {
        let value = rest
            .next()
            .and_then(|value| value.parse::<u64>().ok())
            .ok_or_else(|| usage(&format!("`{flag}` needs a whole number")))?;
        match flag.as_str() {
            "--time" => limit.seconds = Some(value),
            "--runs" => limit.runs = Some(value),
            _ => return Err(usage(&format!("unknown option `{flag}`"))),
        }
    }
    if limit.seconds.is_none() && limit.runs.is_none() {
        limit.seconds = Some(60);
    }
    let binaries = build()?;
    step(
        &format!("fuzz {first}"),
        fuzz_command(&binaries, first, &limit)?,
    )
}

/// For `cargo xtask test`: the fuzz package's format (`cargo fmt --all` does not reach its
/// separate workspace), then every target for [`CI_SECONDS`] on its committed corpus.
pub(crate) fn smoke() -> Result {
    let manifest = fuzz_dir().join("Cargo.toml");
    let mut fmt = cargo(&["fmt", "--manifest-path"]);
    fmt.arg(&manifest).args(["--", "--check"]);
    step("fmt of fuzz/", fmt)?;
    let binaries = build()?;
    for target in targets()? {
        let name = format!("fuzz {target} for {CI_SECONDS} s");
        println!("\n==> {name}");
        let started = Instant::now();
        let mut command = fuzz_command(
            &binaries,
            &target,
            &Limit {
                seconds: Some(CI_SECONDS),
                runs: None,
            },
        )?;
        let out = command.output().map_err(|error| StepFailed {
            step: name.clone(),
            detail: format!("could not start the target: {error}"),
        })?;
        // libFuzzer reports on stderr, one line per new input: show the summary only, and
        // everything when it found something.
        let log = String::from_utf8_lossy(&out.stderr);
        if !out.status.success() {
            eprintln!("{log}");
            return Err(StepFailed {
                step: name,
                detail: format!(
                    "{}: the input that failed is in fuzz/artifacts/{target}/; replay it with \
                     `cargo xtask fuzz {target} --runs 1` after copying it into \
                     fuzz/corpus/{target}/, fix the decoder and keep it there as a regression",
                    out.status
                ),
            });
        }
        for line in log
            .lines()
            .filter(|line| line.starts_with("stat::") || line.contains("DONE"))
        {
            println!("    {line}");
        }
        println!("==> {name}: ok in {:.1}s", started.elapsed().as_secs_f64());
    }
    Ok(())
}

/// The targets: the files of `fuzz/fuzz_targets/`.
fn targets() -> Result<Vec<String>> {
    let dir = fuzz_dir().join("fuzz_targets");
    let entries = std::fs::read_dir(&dir).map_err(|error| StepFailed {
        step: "list fuzz targets".into(),
        detail: format!("{}: {error}", dir.display()),
    })?;
    let mut targets: Vec<String> = entries
        .filter_map(|entry| entry.ok())
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            name.strip_suffix(".rs").map(str::to_owned)
        })
        .collect();
    targets.sort();
    Ok(targets)
}

fn fuzz_dir() -> PathBuf {
    root().join("fuzz")
}

/// Builds every target, instrumented, and returns the folder of the binaries.
fn build() -> Result<PathBuf> {
    ensure_cxx()?;
    let host = host_triple()?;
    let target_dir = crate::run::target_dir().join("fuzz");
    let manifest = fuzz_dir().join("Cargo.toml");
    let mut command = cargo(&[
        "build",
        "--release",
        "--locked",
        "--bins",
        "--target",
        &host,
    ]);
    // With `--target`, the flags reach the targets' code but not build scripts and macros.
    command
        .arg("--manifest-path")
        .arg(&manifest)
        .arg("--target-dir")
        .arg(&target_dir)
        .env_remove("RUSTFLAGS")
        .env("CARGO_ENCODED_RUSTFLAGS", RUSTFLAGS.join("\x1f"));
    step("build the fuzz targets (instrumented)", command)?;
    Ok(target_dir.join(host).join("release"))
}

fn fuzz_command(binaries: &Path, target: &str, limit: &Limit) -> Result<Command> {
    let fuzz = fuzz_dir();
    let work = fuzz.join("corpus-work").join(target);
    let artifacts = fuzz.join("artifacts").join(target);
    for dir in [&work, &artifacts] {
        std::fs::create_dir_all(dir).map_err(|error| StepFailed {
            step: format!("fuzz {target}"),
            detail: format!("{}: {error}", dir.display()),
        })?;
    }
    let mut command = Command::new(binaries.join(target));
    if let Some(seconds) = limit.seconds {
        command.arg(format!("-max_total_time={seconds}"));
    }
    if let Some(runs) = limit.runs {
        command.arg(format!("-runs={runs}"));
    }
    command
        // An input that takes seconds is a hang: report it as one.
        .arg("-timeout=10")
        .arg("-print_final_stats=1")
        .arg(format!("-artifact_prefix={}/", artifacts.display()))
        // New inputs go to the first folder; the committed seeds are read only.
        .arg(&work)
        .arg(fuzz.join("corpus").join(target));
    Ok(command)
}

fn host_triple() -> Result<String> {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let mut command = Command::new(rustc);
    command.arg("-vV");
    let version = output("rustc -vV", command)?;
    version
        .lines()
        .find_map(|line| line.strip_prefix("host: "))
        .map(str::to_owned)
        .ok_or_else(|| StepFailed {
            step: "rustc -vV".into(),
            detail: "no `host:` line in its output".into(),
        })
}

/// libFuzzer is C++, compiled by the `libfuzzer-sys` build script.
fn ensure_cxx() -> Result {
    let cxx = std::env::var("CXX").unwrap_or_else(|_| "c++".into());
    crate::apt::ensure(
        &cxx,
        "--version",
        "g++",
        &format!(
            "libFuzzer is built from the libfuzzer-sys crate and needs a C++ compiler: `{cxx}` \
             is missing and could not be installed; install g++ or clang++ (or set CXX)"
        ),
    )
}
