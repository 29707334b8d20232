//! System packages the tests need, installed with `apt-get` when missing (CI runs as root on
//! Debian or Ubuntu).

use std::process::Command;

use crate::run::{Result, StepFailed, step};

/// Installs `package` with `apt-get` (after `apt-get update`); `missing` says what was missing,
/// for the error when the installation fails.
pub(crate) fn install(package: &str, missing: &str) -> Result {
    let run = |name: &str, args: &[&str]| {
        let mut command = Command::new("apt-get");
        command.args(args).env("DEBIAN_FRONTEND", "noninteractive");
        step(name, command).map_err(|failed| StepFailed {
            step: failed.step,
            detail: format!("{}; {missing}", failed.detail),
        })
    };
    run("apt-get update", &["update"])?;
    run(
        &format!("apt-get install {package}"),
        &["install", "-y", "--no-install-recommends", package],
    )
}

/// Makes sure `ip` (iproute2) is installed: the partition tests build their network of
/// namespaces with it, and fail, never skip, without it.
pub(crate) fn ensure_iproute2() -> Result {
    ensure(
        "ip",
        "-V",
        "iproute2",
        "`ip` is missing and could not be installed: the partition tests need iproute2 \
         (and root) to create network namespaces",
    )
}

/// Makes sure `program` runs (`program probe` succeeds), installing `package` when it does not;
/// `missing` says what was missing, for the error when that fails.
pub(crate) fn ensure(program: &str, probe: &str, package: &str, missing: &str) -> Result {
    let found = || {
        Command::new(program)
            .arg(probe)
            .output()
            .is_ok_and(|out| out.status.success())
    };
    if found() {
        return Ok(());
    }
    install(package, missing)?;
    if found() {
        Ok(())
    } else {
        Err(StepFailed {
            step: format!("find {program}"),
            detail: format!("`{package}` was installed but `{program} {probe}` still fails"),
        })
    }
}
