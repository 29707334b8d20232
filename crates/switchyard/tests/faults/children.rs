//! Node processes: this test binary started again, in a role named by the environment, optionally
//! inside a network namespace (`ip netns exec`). The test talks to each child through its stdin
//! (one command a line) and reads back what it prints after [`MARK`]; the rest of a child's
//! output (the test harness's own) is ignored.

use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::time::{Duration, Instant};

/// The variable naming the role a child plays; unset in the test process itself.
pub(crate) const ROLE: &str = "SWITCHYARD_FAULTS_ROLE";

/// What a child's lines for the test start with.
pub(crate) const MARK: &str = "sy:";

/// Whether this process is a child started by a fault test.
pub(crate) fn is_child() -> bool {
    std::env::var_os(ROLE).is_some()
}

/// Prints one line for the test (`sy:<line>`).
pub(crate) fn report(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{MARK}{line}");
    let _ = out.flush();
}

/// How a child is started.
pub(crate) struct Spawn<'a> {
    /// Its name among the children.
    pub(crate) name: &'a str,
    /// The test function whose body runs the child's role (`module::test_name`).
    pub(crate) test: &'a str,
    /// The network namespace it runs in, if any.
    pub(crate) netns: Option<&'a str>,
    /// Its environment, [`ROLE`] included.
    pub(crate) env: Vec<(&'static str, String)>,
}

struct Running {
    process: Child,
    stdin: Option<ChildStdin>,
}

/// The children of one test: killed (SIGKILL) and reaped on drop, so a failing test leaves no
/// process behind.
pub(crate) struct Children {
    running: HashMap<String, Running>,
    lines: Receiver<(String, String)>,
    sender: Sender<(String, String)>,
    /// Lines received and not yet taken, in arrival order.
    inbox: VecDeque<(String, String)>,
}

impl Children {
    pub(crate) fn new() -> Self {
        let (sender, lines) = channel();
        Self {
            running: HashMap::new(),
            lines,
            sender,
            inbox: VecDeque::new(),
        }
    }

    /// Starts a child; its marked lines arrive in this set's inbox.
    pub(crate) fn spawn(&mut self, spawn: Spawn<'_>) {
        let exe = std::env::current_exe().unwrap();
        let mut command = match spawn.netns {
            Some(netns) => {
                let mut command = Command::new("ip");
                command.args(["netns", "exec", netns]).arg(exe);
                command
            }
            None => Command::new(exe),
        };
        command
            .args([spawn.test, "--exact", "--nocapture", "--test-threads=1"])
            .envs(spawn.env)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut process = command
            .spawn()
            .unwrap_or_else(|error| panic!("could not start child {}: {error}", spawn.name));
        let stdout = process.stdout.take().unwrap();
        let stdin = process.stdin.take();
        let (sender, name) = (self.sender.clone(), spawn.name.to_owned());
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                // Anywhere in the line: the harness prints the test's name before its first line.
                if let Some((_, marked)) = line.split_once(MARK)
                    && sender.send((name.clone(), marked.to_owned())).is_err()
                {
                    return;
                }
            }
        });
        self.running
            .insert(spawn.name.to_owned(), Running { process, stdin });
    }

    /// Sends one command line to child `name`.
    pub(crate) fn send(&mut self, name: &str, line: &str) {
        let running = self.running.get_mut(name).unwrap();
        let stdin = running.stdin.as_mut().unwrap();
        writeln!(stdin, "{line}")
            .and_then(|()| stdin.flush())
            .unwrap_or_else(|error| panic!("child {name} does not take commands: {error}"));
    }

    /// The rest of the first line from `name` starting with `prefix` (taken from the inbox),
    /// waiting up to `bound` for it.
    pub(crate) fn expect(&mut self, name: &str, prefix: &str, bound: Duration) -> String {
        let started = Instant::now();
        loop {
            if let Some(index) = self
                .inbox
                .iter()
                .position(|(from, line)| from == name && line.starts_with(prefix))
            {
                let (_, line) = self.inbox.remove(index).unwrap();
                return line[prefix.len()..].trim().to_owned();
            }
            let left = bound.saturating_sub(started.elapsed());
            match self.lines.recv_timeout(left) {
                Ok(line) => self.inbox.push_back(line),
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => {
                    panic!("no `{prefix}` line from {name} within {bound:?}")
                }
            }
        }
    }

    /// Takes every line received so far (from any child) that starts with `prefix`, as
    /// (child, rest of the line), after waiting `settle` for more.
    pub(crate) fn take_all(&mut self, prefix: &str, settle: Duration) -> Vec<(String, String)> {
        let until = Instant::now() + settle;
        while let Ok(line) = self
            .lines
            .recv_timeout(until.saturating_duration_since(Instant::now()))
        {
            self.inbox.push_back(line);
        }
        let mut taken = Vec::new();
        self.inbox
            .retain(|(from, line)| match line.strip_prefix(prefix) {
                Some(rest) => {
                    taken.push((from.clone(), rest.trim().to_owned()));
                    false
                }
                None => true,
            });
        taken
    }

    /// Kills child `name` with SIGKILL (no goodbye, no flush) and reaps it.
    pub(crate) fn kill(&mut self, name: &str) {
        let mut running = self.running.remove(name).unwrap();
        running.process.kill().unwrap();
        running.process.wait().unwrap();
    }
}

impl Drop for Children {
    fn drop(&mut self) {
        for running in self.running.values_mut() {
            let _ = running.process.kill();
            let _ = running.process.wait();
        }
    }
}
