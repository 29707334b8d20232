//! A throwaway PostgreSQL server for tests and benchmarks (feature `test-server`, std only).
//!
//! [`TestServer::start`] creates a cluster in a fresh temporary directory, starts it on a free
//! port of 127.0.0.1 with trust authentication (for 127.0.0.1 and its own Unix socket only),
//! waits until it accepts connections and gives its [`url`](TestServer::url). Dropping the
//! handle stops the server (`pg_ctl stop -m fast`) and removes the directory. A watchdog shell
//! stops it too once the process that started it is gone, so a server kept in a `static` (or
//! left behind by a killed test) does not outlive its process by more than a second.
//!
//! Durability is real: `fsync` and `synchronous_commit` are on, so benchmarks measure what a
//! production server does on this disk.
//!
//! The server binaries are looked up as `initdb` on the `PATH`, then in `pg_config --bindir`,
//! then in `/usr/lib/postgresql/*/bin` (newest first). `initdb` and `postgres` refuse to run
//! as root: as root the cluster belongs to, and the server runs as, the `postgres` user if
//! there is one, else `nobody` (through `runuser`).
//!
//! ```no_run
//! use switchyard_postgres::test_server::TestServer;
//!
//! let server = TestServer::start()?;
//! println!("connect to {}", server.url());
//! server.restart()?;
//! # Ok::<(), switchyard_postgres::test_server::TestServerError>(())
//! ```

use std::fmt;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// How many times a start is tried on a new port when the chosen one was taken meanwhile.
const PORT_ATTEMPTS: usize = 5;

/// How long `pg_ctl` waits for the server to start or stop, in seconds. A cold start of a
/// fresh cluster takes well under a second; this allows for a loaded machine.
const PG_CTL_WAIT_SECONDS: &str = "60";

/// The watchdog: waits for the parent process to disappear, then stops the server and removes
/// its directory. It ignores the signals a terminal or a job control sends to the whole
/// process group, so an interrupted test run still cleans up. Values come in through the
/// environment, so no path is ever spliced into the script.
const WATCHDOG: &str = r#"
trap '' HUP INT TERM QUIT
while kill -0 "$SY_PARENT" 2>/dev/null; do sleep 1; done
if [ -n "$SY_USER" ]; then
    runuser -u "$SY_USER" -- "$SY_PG_CTL" -D "$SY_DATA" -m fast -w stop >/dev/null 2>&1
else
    "$SY_PG_CTL" -D "$SY_DATA" -m fast -w stop >/dev/null 2>&1
fi
rm -rf "$SY_ROOT"
"#;

/// A throwaway PostgreSQL server. Stopped, and its files removed, on drop.
#[derive(Debug)]
pub struct TestServer {
    bin: PathBuf,
    root: PathBuf,
    data: PathBuf,
    port: u16,
    /// The user the server runs as when this process is root.
    user: Option<String>,
    watchdog: Mutex<Option<Child>>,
}

/// A throwaway server could not be found, created, started or stopped.
#[derive(Debug)]
pub struct TestServerError {
    what: String,
    source: Option<std::io::Error>,
}

impl TestServerError {
    fn new(what: impl Into<String>) -> Self {
        Self {
            what: what.into(),
            source: None,
        }
    }

    fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        Self {
            what: what.into(),
            source: Some(source),
        }
    }
}

impl fmt::Display for TestServerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.what)
    }
}

impl std::error::Error for TestServerError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_ref()
            .map(|error| error as &(dyn std::error::Error + 'static))
    }
}

/// The environment variable naming a PostgreSQL server to use instead of a throwaway one
/// (`cargo xtask test` and `cargo xtask bench` set it to the server they started).
pub const URL_VARIABLE: &str = "SWITCHYARD_TEST_DATABASE_URL";

/// The URL of the server a test binary or benchmark shares: the one named by [`URL_VARIABLE`],
/// else a throwaway server started on the first call and kept until the process ends (its
/// watchdog stops it then).
///
/// # Errors
///
/// Neither is available: the variable is unset and no server binaries are installed, or the
/// throwaway server did not start. The error says what to do.
pub fn shared_url() -> Result<String, TestServerError> {
    static SHARED: std::sync::OnceLock<Result<(String, Option<TestServer>), String>> =
        std::sync::OnceLock::new();
    let shared = SHARED.get_or_init(|| match std::env::var(URL_VARIABLE) {
        Ok(url) if !url.trim().is_empty() => Ok((url, None)),
        _ if binaries().is_none() => Err(format!(
            "no PostgreSQL server: set {URL_VARIABLE} to a database URL, install the PostgreSQL \
             server binaries, or run `cargo xtask test` (or `cargo xtask bench`), which installs \
             them and starts a throwaway server"
        )),
        _ => TestServer::start()
            .map(|server| (server.url(), Some(server)))
            .map_err(|error| format!("could not start a throwaway PostgreSQL server: {error}")),
    });
    match shared {
        Ok((url, _)) => Ok(url.clone()),
        Err(what) => Err(TestServerError::new(what.clone())),
    }
}

/// The folder holding `initdb`, `pg_ctl` and `postgres`, if this machine has them.
pub fn binaries() -> Option<PathBuf> {
    let complete = |dir: &Path| {
        ["initdb", "pg_ctl", "postgres"]
            .iter()
            .all(|name| dir.join(name).is_file())
    };
    let on_path = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join("initdb"))
            .find(|initdb| initdb.is_file())
            .and_then(|initdb| std::fs::canonicalize(initdb).ok())
            .and_then(|initdb| initdb.parent().map(Path::to_path_buf))
    });
    let from_pg_config = Command::new("pg_config")
        .arg("--bindir")
        .stderr(Stdio::null())
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()));
    let mut debian: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|entries| {
            entries
                .filter_map(|entry| entry.ok().map(|e| e.path().join("bin")))
                .collect()
        })
        .unwrap_or_default();
    // Newest major version first: "9.6" < "10" only when compared as numbers.
    debian.sort_by_key(|dir| {
        std::cmp::Reverse(
            dir.parent()
                .and_then(|version| version.file_name())
                .and_then(|name| name.to_str())
                .and_then(|name| name.split('.').next())
                .and_then(|major| major.parse::<u32>().ok())
                .unwrap_or(0),
        )
    });
    on_path
        .into_iter()
        .chain(from_pg_config)
        .chain(debian)
        .find(|dir| complete(dir))
}

impl TestServer {
    /// Creates a cluster in a new temporary directory and starts it on a free loopback port.
    ///
    /// # Errors
    ///
    /// When no server binaries are found, `initdb` fails, or the server does not start (its
    /// log's end is in the message).
    pub fn start() -> Result<Self, TestServerError> {
        let bin = binaries().ok_or_else(|| {
            TestServerError::new(
                "no PostgreSQL server binaries (initdb, pg_ctl, postgres) found on the PATH, \
                 in `pg_config --bindir` or in /usr/lib/postgresql/*/bin",
            )
        })?;
        let user = unprivileged_user()?;
        let root = fresh_dir()?;
        let data = root.join("data");
        let mut server = Self {
            bin,
            root,
            data,
            port: 0,
            user,
            watchdog: Mutex::new(None),
        };
        // From here on, dropping `server` cleans up whatever was made.
        if let Some(user) = &server.user {
            let mut chown = Command::new("chown");
            chown.arg(format!("{user}:")).arg(&server.root);
            checked("chown the server's directory", chown)?;
        }
        server.init()?;
        server.spawn_watchdog()?;
        let mut last_error = None;
        for _ in 0..PORT_ATTEMPTS {
            server.port = free_port()?;
            server.configure()?;
            match server.pg_ctl_start() {
                Ok(()) => return Ok(server),
                Err(error) => last_error = Some(error),
            }
        }
        Err(last_error.unwrap_or_else(|| TestServerError::new("the server did not start")))
    }

    /// The URL to connect to: user `postgres`, database `postgres`, no password.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// The loopback port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops the server (`pg_ctl stop -m fast`: running transactions are rolled back and their
    /// connections closed) and waits until it is down. Its data stays; [`resume`](Self::resume)
    /// starts it again on the same port.
    ///
    /// # Errors
    ///
    /// When `pg_ctl` fails.
    pub fn stop(&self) -> Result<(), TestServerError> {
        self.pg_ctl(&["-m", "fast", "-w", "-t", PG_CTL_WAIT_SECONDS, "stop"])
            .map(drop)
    }

    /// Starts a stopped server again, on the same port, and waits until it accepts connections.
    ///
    /// # Errors
    ///
    /// When `pg_ctl` fails.
    pub fn resume(&self) -> Result<(), TestServerError> {
        self.pg_ctl_start()
    }

    /// Stops the server and starts it again on the same port: every connection breaks.
    ///
    /// # Errors
    ///
    /// When `pg_ctl` fails.
    pub fn restart(&self) -> Result<(), TestServerError> {
        self.stop()?;
        self.resume()
    }

    fn init(&self) -> Result<(), TestServerError> {
        let data = self.data.to_string_lossy().into_owned();
        let out = self.run_as(
            &self.bin.join("initdb"),
            &[
                "-D",
                &data,
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                // Only the creation of the catalog skips its syncs; the server syncs as usual.
                "--no-sync",
                "--no-instructions",
            ],
        )?;
        if !out.status.success() {
            return Err(TestServerError::new(format!(
                "initdb failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        // Trust, but only on this server's own socket and on 127.0.0.1.
        let hba = "local all all trust\nhost all all 127.0.0.1/32 trust\n";
        std::fs::write(self.data.join("pg_hba.conf"), hba)
            .map_err(|error| TestServerError::io("write pg_hba.conf", error))
    }

    /// Appends the settings; on a retry with a new port the last `port` line wins.
    fn configure(&self) -> Result<(), TestServerError> {
        use std::io::Write as _;
        let settings = format!(
            "\n# switchyard test server\n\
             listen_addresses = '127.0.0.1'\n\
             port = {}\n\
             unix_socket_directories = '{}'\n\
             fsync = on\n\
             synchronous_commit = on\n\
             full_page_writes = on\n\
             max_connections = 300\n\
             shared_buffers = 128MB\n",
            self.port,
            self.root.to_string_lossy().replace('\'', "''"),
        );
        std::fs::OpenOptions::new()
            .append(true)
            .open(self.data.join("postgresql.conf"))
            .and_then(|mut file| file.write_all(settings.as_bytes()))
            .map_err(|error| TestServerError::io("write postgresql.conf", error))
    }

    fn pg_ctl_start(&self) -> Result<(), TestServerError> {
        let log = self.root.join("server.log").to_string_lossy().into_owned();
        self.pg_ctl(&["-l", &log, "-w", "-t", PG_CTL_WAIT_SECONDS, "start"])
            .map(drop)
            .map_err(|error| {
                let tail = std::fs::read_to_string(&log)
                    .map(|text| {
                        let lines: Vec<&str> = text.lines().collect();
                        lines[lines.len().saturating_sub(5)..].join("\n")
                    })
                    .unwrap_or_default();
                TestServerError::new(format!("{error}; server log ends with:\n{tail}"))
            })
    }

    /// Runs `pg_ctl -D <data dir> <args>`.
    fn pg_ctl(&self, after: &[&str]) -> Result<Output, TestServerError> {
        let data = self.data.to_string_lossy().into_owned();
        let mut args: Vec<&str> = vec!["-D", &data];
        args.extend_from_slice(after);
        let out = self.run_as(&self.bin.join("pg_ctl"), &args)?;
        if out.status.success() {
            Ok(out)
        } else {
            Err(TestServerError::new(format!(
                "pg_ctl {} failed ({}): {}",
                after.last().copied().unwrap_or_default(),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )))
        }
    }

    /// Runs a server program, as the unprivileged user when this process is root.
    fn run_as(&self, program: &Path, args: &[&str]) -> Result<Output, TestServerError> {
        let mut command = match &self.user {
            Some(user) => {
                let mut command = Command::new("runuser");
                command.args(["-u", user, "--"]).arg(program);
                command
            }
            None => Command::new(program),
        };
        command
            .args(args)
            .current_dir(&self.root)
            .stdin(Stdio::null())
            .output()
            .map_err(|error| TestServerError::io(format!("run {}", program.display()), error))
    }

    fn spawn_watchdog(&self) -> Result<(), TestServerError> {
        let child = Command::new("sh")
            .arg("-c")
            .arg(WATCHDOG)
            .env("SY_PARENT", std::process::id().to_string())
            .env("SY_USER", self.user.as_deref().unwrap_or_default())
            .env("SY_PG_CTL", self.bin.join("pg_ctl"))
            .env("SY_DATA", &self.data)
            .env("SY_ROOT", &self.root)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|error| TestServerError::io("start the watchdog", error))?;
        *self
            .watchdog
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(child);
        Ok(())
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if self.data.join("postmaster.pid").exists() {
            let _ = self.stop();
        }
        let watchdog = self
            .watchdog
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(mut watchdog) = watchdog {
            // Our own child, ended by its id.
            let _ = watchdog.kill();
            let _ = watchdog.wait();
        }
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// `Some(user)` to run the server as when this process is root, `None` otherwise.
fn unprivileged_user() -> Result<Option<String>, TestServerError> {
    let mut id = Command::new("id");
    id.arg("-u");
    if checked("id -u", id)?.trim() != "0" {
        return Ok(None);
    }
    let exists = |name: &str| {
        Command::new("id")
            .arg("-u")
            .arg(name)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
    };
    ["postgres", "nobody"]
        .into_iter()
        .find(|name| exists(name))
        .map(|name| Some(name.to_owned()))
        .ok_or_else(|| {
            TestServerError::new(
                "running as root and neither a `postgres` nor a `nobody` user exists to run \
                 the server as",
            )
        })
}

fn fresh_dir() -> Result<PathBuf, TestServerError> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.subsec_nanos());
    let dir = std::env::temp_dir().join(format!(
        "switchyard-pg-{}-{nanos}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir(&dir)
        .map_err(|error| TestServerError::io(format!("create {}", dir.display()), error))?;
    Ok(dir)
}

/// A port of 127.0.0.1 that was free a moment ago (the start is retried if it was taken since).
fn free_port() -> Result<u16, TestServerError> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .map_err(|error| TestServerError::io("find a free port", error))
}

fn checked(what: &str, mut command: Command) -> Result<String, TestServerError> {
    let out = command
        .stdin(Stdio::null())
        .output()
        .map_err(|error| TestServerError::io(what, error))?;
    if !out.status.success() {
        return Err(TestServerError::new(format!(
            "{what} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn it_finds_the_binaries_this_machine_has_or_says_none() {
        match binaries() {
            Some(dir) => assert!(dir.join("initdb").is_file() && dir.join("pg_ctl").is_file()),
            None => assert!(TestServer::start().is_err()),
        }
    }

    #[test]
    fn free_ports_are_on_loopback_and_not_zero() {
        assert_ne!(free_port().unwrap(), 0);
    }
}
