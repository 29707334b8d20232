//! Running commands from the workspace root, and reporting which step failed.

use std::fmt;
use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

/// A step that did not succeed.
#[derive(Debug)]
pub(crate) struct StepFailed {
    pub(crate) step: String,
    pub(crate) detail: String,
}

impl fmt::Display for StepFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "step `{}` failed: {}", self.step, self.detail)
    }
}

pub(crate) type Result<T = ()> = std::result::Result<T, StepFailed>;

/// The workspace root (the parent of this crate's folder).
pub(crate) fn root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().map(PathBuf::from).unwrap_or(manifest)
}

/// Cargo's target directory: `CARGO_TARGET_DIR`, else `target/` at the root.
pub(crate) fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"))
}

/// `cargo` with the given arguments, from the workspace root.
pub(crate) fn cargo(args: &[&str]) -> Command {
    let mut command = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    command.args(args).current_dir(root());
    command
}

/// `git` with the given arguments, in the workspace root.
pub(crate) fn git(args: &[&str]) -> Command {
    let mut command = Command::new("git");
    command.args(args).current_dir(root());
    command
}

/// The load averages over 1, 5 and 15 minutes (`/proc/loadavg`), or `unknown`.
pub(crate) fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|text| {
            text.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_else(|| "unknown".into())
}

/// Runs one named step, printing its name and time.
pub(crate) fn step(name: &str, mut command: Command) -> Result {
    println!("\n==> {name}");
    let started = Instant::now();
    let status = command.status().map_err(|error| StepFailed {
        step: name.to_owned(),
        detail: format!("could not start {:?}: {error}", command.get_program()),
    })?;
    if !status.success() {
        return Err(StepFailed {
            step: name.to_owned(),
            detail: format!("{status}"),
        });
    }
    println!("==> {name}: ok in {:.1}s", started.elapsed().as_secs_f64());
    Ok(())
}

/// Runs a command and returns its standard output.
pub(crate) fn output(name: &str, mut command: Command) -> Result<String> {
    let out = command.output().map_err(|error| StepFailed {
        step: name.to_owned(),
        detail: format!("could not start {:?}: {error}", command.get_program()),
    })?;
    if !out.status.success() {
        return Err(StepFailed {
            step: name.to_owned(),
            detail: format!("{}: {}", out.status, String::from_utf8_lossy(&out.stderr)),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The library crates under `crates/`, by package name.
pub(crate) fn library_crates() -> Result<Vec<String>> {
    let dir = root().join("crates");
    let entries = std::fs::read_dir(&dir).map_err(|error| StepFailed {
        step: "list crates".into(),
        detail: format!("{}: {error}", dir.display()),
    })?;
    let mut crates: Vec<String> = entries
        .filter_map(|entry| entry.ok())
        .filter(|entry| entry.path().join("Cargo.toml").is_file())
        .filter_map(|entry| entry.file_name().into_string().ok())
        .collect();
    crates.sort();
    Ok(crates)
}

/// The features of the crate in `crates/<name>`, read from its manifest's `[features]` table
/// (without `default`).
pub(crate) fn crate_features(name: &str) -> Result<Vec<String>> {
    let path = root().join("crates").join(name).join("Cargo.toml");
    let manifest = std::fs::read_to_string(&path).map_err(|error| StepFailed {
        step: format!("read the features of {name}"),
        detail: format!("{}: {error}", path.display()),
    })?;
    let features = manifest
        .split("\n[features]")
        .nth(1)
        .unwrap_or("")
        .lines()
        .skip(1)
        .take_while(|line| !line.starts_with('['))
        .filter(|line| !line.trim_start().starts_with('#'))
        .filter_map(|line| line.split_once('=').map(|(name, _)| name.trim().to_owned()))
        .filter(|name| !name.is_empty() && name != "default")
        .collect();
    Ok(features)
}
