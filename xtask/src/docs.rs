//! `cargo xtask docs`: API docs and guides.

use crate::run::{Result, cargo, step};

pub(crate) fn run() -> Result {
    api_docs()?;
    guides()
}

/// `cargo doc` over the workspace, warnings denied.
pub(crate) fn api_docs() -> Result {
    let mut command = cargo(&["doc", "--workspace", "--no-deps", "--all-features"]);
    command.env("RUSTDOCFLAGS", "-D warnings");
    step("docs", command)
}

/// The guides in `docs/guides/` are included into the facade under `cfg(doctest)`, so their Rust
/// blocks compile and run as doc tests.
pub(crate) fn guides() -> Result {
    step("guides", guides_command())
}

/// The command testing the guides.
pub(crate) fn guides_command() -> std::process::Command {
    cargo(&[
        "test",
        "--package",
        "switchyard",
        "--all-features",
        "--doc",
        "guides",
    ])
}
