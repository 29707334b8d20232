//! The browser the real-browser tests drive: Debian's Chromium, through chromedriver.
//!
//! `cargo xtask test` makes sure `chromium` and `chromium-driver` are installed (with
//! `apt-get` if they are missing), starts chromedriver on a free loopback port, hands its URL
//! to the cargo steps in [`chromedriver::URL_VARIABLE`], and stops it when they are done,
//! failed or not (on drop). A URL already set in the environment is used as it is, and
//! nothing is started. A browser that cannot be installed or started fails the run: the tests
//! never skip it.

pub(crate) mod chromedriver;

use std::process::Command;

use chromedriver::{Chromedriver, URL_VARIABLE};

use crate::run::{Result, StepFailed};

/// The WebDriver server for this run: one given in the environment, or one started here.
pub(crate) enum Browser {
    Given(String),
    Started(Chromedriver),
}

impl Browser {
    /// Sets the WebDriver server's URL on a cargo command.
    pub(crate) fn export(&self, command: &mut Command) {
        let url = match self {
            Self::Given(url) => url.as_str(),
            Self::Started(driver) => driver.url(),
        };
        command.env(URL_VARIABLE, url);
    }
}

/// Starts chromedriver for this run, installing Chromium and chromedriver first if missing.
pub(crate) fn start() -> Result<Browser> {
    if let Ok(url) = std::env::var(URL_VARIABLE)
        && !url.trim().is_empty()
    {
        println!("\n==> Browser: using {URL_VARIABLE} from the environment");
        return Ok(Browser::Given(url));
    }
    // chromium-driver depends on chromium, so the first installs both.
    crate::apt::ensure(
        chromedriver::PROGRAM,
        "--version",
        "chromium-driver",
        &format!(
            "`{}` is missing and could not be installed: the browser tests need Debian's \
             chromium and chromium-driver, or {URL_VARIABLE} set to a WebDriver server",
            chromedriver::PROGRAM
        ),
    )?;
    crate::apt::ensure(
        "chromium",
        "--version",
        "chromium",
        "`chromium` is missing and could not be installed: the browser tests drive it",
    )?;
    let driver = Chromedriver::start().map_err(|error| StepFailed {
        step: "start chromedriver".into(),
        detail: error.to_string(),
    })?;
    println!(
        "\n==> Browser: chromedriver at {} (stopped when this run ends)",
        driver.url()
    );
    Ok(Browser::Started(driver))
}
