//! Chromedriver on a free loopback port, for the real-browser tests.
//!
//! `cargo xtask test` starts one for the whole run and hands its URL to the tests in
//! [`URL_VARIABLE`]; a browser test run on its own (`cargo test`) starts its own. Both include
//! this file (the tests with `#[path]`), so it uses the standard library only.
//!
//! Chromedriver is asked for port 0 and says which port it took, so no other process can take
//! the port between a choice and the start. It accepts local connections only (its default).
//! Dropping the handle stops it; a watchdog shell stops it too once the process that started it
//! is gone, so a killed run leaves no chromedriver behind.

use std::io::{self, BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// The variable the browser tests read chromedriver's URL from (`http://127.0.0.1:PORT`).
pub(crate) const URL_VARIABLE: &str = "SWITCHYARD_WEBDRIVER_URL";

/// The program started; Debian's `chromium-driver` puts it on the `PATH`.
pub(crate) const PROGRAM: &str = "chromedriver";

/// How long chromedriver may take to say that it listens. It starts in well under a second;
/// this allows for a loaded machine.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// The line chromedriver prints once it listens, before the port and a final period.
const STARTED: &str = "started successfully on port ";

/// The watchdog: waits for the parent process to disappear, then stops chromedriver. It
/// ignores the signals a terminal sends to the whole process group, so an interrupted run
/// still cleans up. Values come in through the environment, never spliced into the script.
const WATCHDOG: &str = r#"
trap '' HUP INT TERM QUIT
while kill -0 "$SY_PARENT" 2>/dev/null; do sleep 1; done
kill -KILL "$SY_CHILD" 2>/dev/null
"#;

/// A running chromedriver, stopped on drop.
#[derive(Debug)]
pub(crate) struct Chromedriver {
    process: Child,
    watchdog: Option<Child>,
    url: String,
}

impl Chromedriver {
    /// Starts chromedriver on a free port of the loopback interface and waits until it
    /// listens.
    ///
    /// # Errors
    ///
    /// The program is not installed, exits, or does not say which port it listens on within
    /// [`START_TIMEOUT`].
    pub(crate) fn start() -> io::Result<Self> {
        let mut process = Command::new(PROGRAM)
            .arg("--port=0")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|error| {
                io::Error::new(
                    error.kind(),
                    format!("could not start `{PROGRAM}` ({error})"),
                )
            })?;
        let port = match process.stdout.take().map(read_port) {
            Some(port) => port.recv_timeout(START_TIMEOUT).ok(),
            None => None,
        };
        let Some(port) = port else {
            let _ = process.kill();
            let status = process.wait().map(|status| status.to_string());
            return Err(io::Error::other(format!(
                "`{PROGRAM} --port=0` did not say which port it listens on within {}s \
                 (exit: {}); does `{PROGRAM} --version` run?",
                START_TIMEOUT.as_secs(),
                status.unwrap_or_else(|error| error.to_string()),
            )));
        };
        let watchdog = Command::new("sh")
            .args(["-c", WATCHDOG])
            .env("SY_PARENT", std::process::id().to_string())
            .env("SY_CHILD", process.id().to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok();
        Ok(Self {
            process,
            watchdog,
            url: format!("http://127.0.0.1:{port}"),
        })
    }

    /// Its URL, `http://127.0.0.1:PORT`, for a WebDriver client.
    pub(crate) fn url(&self) -> &str {
        &self.url
    }
}

impl Drop for Chromedriver {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
        if let Some(watchdog) = &mut self.watchdog {
            let _ = watchdog.kill();
            let _ = watchdog.wait();
        }
    }
}

/// Reads chromedriver's output on a thread of its own, sends the port it announces, and
/// keeps reading until it exits (so its writes never block on a full pipe).
fn read_port(output: impl io::Read + Send + 'static) -> mpsc::Receiver<u16> {
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(output).lines() {
            let Ok(line) = line else { break };
            if let Some(port) = announced_port(&line) {
                let _ = sender.send(port);
            }
        }
    });
    receiver
}

/// The port in chromedriver's "ChromeDriver was started successfully on port 36113." line.
fn announced_port(line: &str) -> Option<u16> {
    let (_, rest) = line.split_once(STARTED)?;
    rest.trim_end().trim_end_matches('.').parse().ok()
}

#[cfg(test)]
mod tests {
    use super::announced_port;

    #[test]
    fn it_reads_the_port_chromedriver_announces() {
        assert_eq!(
            announced_port("ChromeDriver was started successfully on port 36113."),
            Some(36113)
        );
        assert_eq!(
            announced_port("Starting ChromeDriver 148.0 (abc) on port 0"),
            None
        );
    }
}
