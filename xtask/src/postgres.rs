//! The throwaway PostgreSQL server the tests and benchmarks run against.
//!
//! `cargo xtask test` and `cargo xtask bench` make sure the server binaries are installed
//! (with `apt-get` if they are missing), start one server in a temporary directory on a free
//! loopback port, hand its URL to the cargo steps in `SWITCHYARD_TEST_DATABASE_URL`, and stop it
//! when they are done, failed or not (on drop; a watchdog stops it if xtask is killed). A URL
//! already set in the environment is used as it is, and nothing is started.

use std::process::Command;

use switchyard_postgres::test_server::{self, TestServer};

use crate::run::{Result, StepFailed};

/// The variable the PostgreSQL tests and benchmarks read the server's URL from.
pub(crate) const URL_VARIABLE: &str = "SWITCHYARD_TEST_DATABASE_URL";

/// The server for this run: one given in the environment, or a throwaway one.
pub(crate) enum Server {
    Given(String),
    Throwaway(TestServer),
}

impl Server {
    /// Sets the server's URL on a cargo command.
    pub(crate) fn export(&self, command: &mut Command) {
        let url = match self {
            Self::Given(url) => url.clone(),
            Self::Throwaway(server) => server.url(),
        };
        command.env(URL_VARIABLE, url);
    }
}

/// Starts the server for this run, installing PostgreSQL first if its binaries are missing.
pub(crate) fn start() -> Result<Server> {
    if let Ok(url) = std::env::var(URL_VARIABLE)
        && !url.trim().is_empty()
    {
        println!("\n==> PostgreSQL: using {URL_VARIABLE} from the environment");
        return Ok(Server::Given(url));
    }
    ensure_binaries()?;
    println!("\n==> PostgreSQL: starting a throwaway server");
    let server = TestServer::start().map_err(|error| StepFailed {
        step: "start PostgreSQL".into(),
        detail: error.to_string(),
    })?;
    println!(
        "==> PostgreSQL: {} (stopped when this run ends)",
        server.url()
    );
    Ok(Server::Throwaway(server))
}

fn ensure_binaries() -> Result {
    if let Some(dir) = test_server::binaries() {
        println!("\n==> PostgreSQL: server binaries in {}", dir.display());
        return Ok(());
    }
    crate::run::apt_get_install(
        &["postgresql"],
        &format!(
            "the PostgreSQL server binaries (initdb, pg_ctl, postgres) are missing and could not \
             be installed: install PostgreSQL 14 or later, or set {URL_VARIABLE} to a database \
             the tests may use"
        ),
    )?;
    test_server::binaries().map(drop).ok_or_else(|| StepFailed {
        step: "find PostgreSQL".into(),
        detail: "`postgresql` was installed but initdb, pg_ctl and postgres are still not found"
            .into(),
    })
}
