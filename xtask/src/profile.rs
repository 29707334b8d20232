//! `cargo xtask profile <bench>`: where a bench's CPU time goes, as a flame graph.
//!
//! The bench is built in release as `cargo bench` builds it, plus line tables (function names,
//! inlined frames, no full debug info) and frame pointers, then run under `perf record`, bounded
//! in time; `perf script` prints the samples, inferno folds them into stacks and draws the SVG,
//! and the functions with the most samples are written beside it as text. Both go to
//! `docs/profiles/<bench>-<label>.{svg,txt}`, and the Profiles section of `docs/benchmarks.md`
//! is rewritten to show them.
//!
//! Why frame pointers rather than `--call-graph dwarf`: a tokio worker's stack is deep (the
//! scheduler loop, the task harness, then the futures polled inside each other) and DWARF
//! unwinding copies a fixed slice of each sampled stack (8 KiB by default), which cuts such
//! stacks short, makes a minute's data hundreds of megabytes and `perf script` slow. Rust's
//! standard library ships with frame pointers, so forcing them in our code and dependencies
//! gives whole stacks at a few bytes per frame; the line tables name the inlined frames (most
//! of a future's code is inlined into its `poll`). The C library has no frame pointers: a
//! sample inside its allocator (`malloc`, `_int_free`) loses the stack above it and is drawn
//! under `[unknown]` (about a tenth of `local_dispatch`'s time), though its self time still
//! goes to the right function; DWARF unwinding would keep those stacks at the costs above.
//!
//! The event is `cpu-clock` (a timer), since the virtual machines this runs on have no hardware
//! cycle counter; as root the kernel's frames (system calls, page faults) are recorded too.

mod benches;
pub(crate) mod gallery;
mod request;
mod summary;

use std::io::{BufReader, BufWriter};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use inferno::collapse::Collapse;

use crate::run::{self, Result, StepFailed, cargo, root};
use benches::Bench;
use request::{Profile, Request, USAGE};

/// Samples per second and per core: about 120,000 samples a minute on two busy cores, so a
/// frame of 0.05 % holds tens of samples. A prime, so the timer does not beat with periodic
/// work in the bench.
const FREQUENCY: &str = "997";

/// Frames under this share of the time, in percent, are left out: too thin to click at the
/// graph's 1,200 pixels, they would make the SVG several times larger (inferno's default keeps
/// frames down to 0.01 %).
const MIN_WIDTH_PERCENT: f64 = 0.05;

/// What `rustc` is given on top of `RUSTFLAGS`.
const FRAME_POINTERS: &str = "-Cforce-frame-pointers=yes";

/// The packages whose benches need a PostgreSQL server (started as `cargo xtask bench` does):
/// the projections' benches run on every store.
const NEEDS_POSTGRES: &[&str] = &["switchyard-postgres", "switchyard-projections"];

pub(crate) fn run(args: &[String]) -> Result {
    let usage = |detail: &str| StepFailed {
        step: "profile".into(),
        detail: format!("{detail}\n\n{USAGE}"),
    };
    let request = request::parse(args).map_err(|error| usage(&error))?;
    let all = benches::all()?;
    let profile = match request {
        Request::List => {
            for bench in &all {
                println!("{:24} ({})", bench.spelling(&all), bench.package);
            }
            return Ok(());
        }
        Request::Profile(profile) => profile,
    };
    let bench = benches::find(&all, &profile.bench).map_err(|error| usage(&error))?;
    let label = match &profile.label {
        Some(label) => label.clone(),
        None => run::output("git commit", run::git(&["rev-parse", "--short", "HEAD"]))?
            .trim()
            .to_owned(),
    };
    let name = format!("{}-{label}", bench.stem(&all));
    let event = ensure_perf()?;
    let binary = build(bench)?;
    let work = run::target_dir().join("switchyard-profile");
    create_dir(&work)?;
    let data = work.join(format!("{name}.perf.data"));
    let load = run::load_average();
    let recording = record(bench, &binary, &profile, &data, event, &work)?;
    let folded = fold(&data)?;
    write(&work.join(format!("{name}.folded")), folded.as_bytes())?;

    let times = summary::times(&folded);
    if times.total == 0 {
        return Err(StepFailed {
            step: "summarise the profile".into(),
            detail: format!("{} holds no samples", data.display()),
        });
    }
    let context = Context::now(bench, &profile, event, &recording, &load)?;
    let profiles = root().join("docs").join(gallery::FOLDER);
    create_dir(&profiles)?;
    let text = summary::render(&context.heading(), &times, profile.top);
    let text_path = profiles.join(format!("{name}.txt"));
    write(&text_path, text.as_bytes())?;
    println!("\n{text}");
    let svg = profiles.join(format!("{name}.svg"));
    let title = format!("{} ({label}): CPU time by call stack", bench.spelling(&all));
    draw(&folded, &svg, &title, &context.subtitle())?;
    gallery::update_benchmarks()?;
    println!(
        "xtask: wrote {} and {}, and the Profiles section of docs/benchmarks.md; the samples \
         are in {} (`perf report -i` reads them)",
        svg.display(),
        text_path.display(),
        data.display()
    );
    Ok(())
}

/// Makes sure `perf` runs (installing Debian's `linux-perf` when it does not), and returns the
/// event to sample: with the kernel's frames as root or when `perf_event_paranoid` allows them
/// to everyone, else user-space frames only (with a note saying how to get the rest).
fn ensure_perf() -> Result<&'static str> {
    crate::apt::ensure(
        "perf",
        "--version",
        "linux-perf",
        "`perf` is missing and could not be installed: install Debian's `linux-perf` \
         (or your distribution's perf)",
    )?;
    let paranoid = std::fs::read_to_string("/proc/sys/kernel/perf_event_paranoid")
        .ok()
        .and_then(|text| text.trim().parse::<i32>().ok())
        .unwrap_or(2);
    if is_root() || paranoid <= 1 {
        Ok("cpu-clock")
    } else {
        println!(
            "\n==> kernel.perf_event_paranoid is {paranoid}: recording user-space frames only \
             (as root, `sysctl kernel.perf_event_paranoid=1` lets the kernel's be recorded too)"
        );
        Ok("cpu-clock:u")
    }
}

/// Whether this process runs as root (its real user id, from `/proc/self/status`).
fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("Uid:"))
                .and_then(|ids| ids.split_whitespace().next().map(|uid| uid == "0"))
        })
        .unwrap_or(false)
}

/// Builds the bench as `cargo bench` does, with line tables and frame pointers, and returns its
/// binary.
fn build(bench: &Bench) -> Result<PathBuf> {
    let mut command = cargo(&[
        "bench",
        "--package",
        &bench.package,
        "--all-features",
        "--bench",
        &bench.name,
        "--no-run",
        "--message-format=json-render-diagnostics",
    ]);
    let rustflags = match std::env::var("RUSTFLAGS") {
        Ok(flags) if !flags.trim().is_empty() => format!("{flags} {FRAME_POINTERS}"),
        _ => FRAME_POINTERS.to_owned(),
    };
    command
        .env("RUSTFLAGS", rustflags)
        .env("CARGO_PROFILE_BENCH_DEBUG", "line-tables-only")
        // Cargo's progress and the compiler's messages go to the terminal as usual.
        .stderr(Stdio::inherit());
    let step = format!("build {} with frame pointers and line tables", bench.name);
    println!("\n==> {step}");
    let messages = run::output(&step, command)?;
    executable(&messages, &bench.name).ok_or_else(|| StepFailed {
        step,
        detail: format!("cargo named no executable for the bench `{}`", bench.name),
    })
}

/// The executable of the bench `name` in cargo's JSON messages.
fn executable(messages: &str, name: &str) -> Option<PathBuf> {
    messages
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .find(|message| {
            message["reason"] == "compiler-artifact"
                && message["target"]["name"] == name
                && message["target"]["kind"]
                    .as_array()
                    .is_some_and(|kinds| kinds.iter().any(|kind| kind == "bench"))
        })
        .and_then(|message| message["executable"].as_str().map(PathBuf::from))
}

/// How a recording went.
struct Recording {
    seconds: f64,
    /// Whether the bench was stopped at the time limit rather than ending by itself.
    stopped: bool,
}

/// Runs the bench under `perf record` until it ends or the time limit passes.
fn record(
    bench: &Bench,
    binary: &Path,
    profile: &Profile,
    data: &Path,
    event: &str,
    work: &Path,
) -> Result<Recording> {
    let step = format!("perf record {} (at most {} s)", bench.name, profile.seconds);
    let mut command = Command::new("perf");
    command
        .args(["record", "-e", event, "-F", FREQUENCY, "--call-graph", "fp"])
        .arg("-o")
        .arg(data)
        .arg("--")
        .arg(binary)
        .arg("--bench")
        .args(&profile.bench_args)
        // Where `cargo bench` runs it; its section goes aside, not among `cargo xtask bench`'s.
        .current_dir(&bench.dir)
        .env("SWITCHYARD_BENCH_OUT", work.join("sections"))
        // Criterion and the benches' support find the target folder through it.
        .env("CARGO_TARGET_DIR", run::target_dir());
    if !profile.full {
        command.env("SWITCHYARD_BENCH_QUICK", "1");
    }
    // Stopped at the end of this function, once the bench is done.
    let _postgres = if NEEDS_POSTGRES.contains(&bench.package.as_str()) {
        let server = crate::postgres::start()?;
        server.export(&mut command);
        Some(server)
    } else {
        None
    };
    println!("\n==> {step}");
    let failed = |detail: String| StepFailed {
        step: step.clone(),
        detail,
    };
    let started = Instant::now();
    let mut child = command
        .spawn()
        .map_err(|error| failed(format!("could not start perf: {error}")))?;
    let limit = Duration::from_secs(profile.seconds);
    let mut stopped = false;
    let status = loop {
        if let Some(status) = child
            .try_wait()
            .map_err(|error| failed(error.to_string()))?
        {
            break status;
        }
        if !stopped && started.elapsed() >= limit {
            // perf stops the bench, then writes out what it has: that is why it gets SIGINT
            // (as from Ctrl-C) rather than being killed.
            stopped = true;
            let mut interrupt = Command::new("kill");
            interrupt.args(["-INT", &child.id().to_string()]);
            run::output("stop perf record", interrupt)?;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    // Interrupted, perf ends by its SIGINT, which is no failure; its own errors are.
    if !stopped && !status.success() {
        return Err(failed(format!("{status}")));
    }
    let seconds = started.elapsed().as_secs_f64();
    println!("==> {step}: ok in {seconds:.1}s");
    Ok(Recording { seconds, stopped })
}

/// The samples of `data` as folded stacks (`perf script`, folded by inferno).
fn fold(data: &Path) -> Result<String> {
    let step = "perf script, folded";
    println!("\n==> {step}");
    let failed = |detail: String| StepFailed {
        step: step.into(),
        detail,
    };
    let mut script = Command::new("perf")
        .arg("script")
        .arg("-i")
        .arg(data)
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|error| failed(format!("could not start perf: {error}")))?;
    let stdout = script
        .stdout
        .take()
        .ok_or_else(|| failed("no output from perf script".into()))?;
    let mut folded = Vec::new();
    let mut folder = inferno::collapse::perf::Folder::default();
    let collapsed = folder.collapse(BufReader::new(stdout), &mut folded);
    let status = script.wait().map_err(|error| failed(error.to_string()))?;
    collapsed.map_err(|error| failed(format!("folding its output: {error}")))?;
    if !status.success() {
        return Err(failed(format!("{status}")));
    }
    String::from_utf8(folded).map_err(|error| failed(error.to_string()))
}

/// Draws the flame graph of `folded` into `svg`.
fn draw(folded: &str, svg: &Path, title: &str, subtitle: &str) -> Result {
    let mut options = inferno::flamegraph::Options::default();
    options.title = title.to_owned();
    options.subtitle = Some(subtitle.to_owned());
    // The weights are cpu-clock periods (see `summary`).
    options.count_name = "ns of CPU time".into();
    options.min_width = MIN_WIDTH_PERCENT;
    // Colours from the function names, so a function has the same colour in every graph.
    options.hash = true;
    options.deterministic = true;
    let failed = |error: std::io::Error| StepFailed {
        step: "draw the flame graph".into(),
        detail: format!("{}: {error}", svg.display()),
    };
    let file = std::fs::File::create(svg).map_err(failed)?;
    inferno::flamegraph::from_lines(&mut options, folded.lines(), BufWriter::new(file))
        .map_err(failed)
}

/// The settings of the bench's own (`SWITCHYARD_BENCH_PHASE` and the like) among `vars`, as
/// they would be written before a command, so a recording of one path says which path it was.
fn bench_settings(vars: impl Iterator<Item = (String, String)>) -> String {
    let mut settings: Vec<String> = vars
        .filter(|(name, _)| {
            name.starts_with("SWITCHYARD_BENCH_") && name != "SWITCHYARD_BENCH_QUICK"
        })
        .map(|(name, value)| format!("{name}={value} "))
        .collect();
    settings.sort();
    settings.concat()
}

/// What a recording was, for the text's heading and the graph's subtitle.
struct Context {
    bench: String,
    package: String,
    commit: String,
    date: String,
    command: String,
    load: String,
    seconds: f64,
    stopped: bool,
}

impl Context {
    fn now(
        bench: &Bench,
        profile: &Profile,
        event: &str,
        recording: &Recording,
        load: &str,
    ) -> Result<Self> {
        let commit = run::output("git commit", run::git(&["rev-parse", "--short", "HEAD"]))?;
        // Neither the docs (these profiles among them) nor xtask change what is measured.
        let dirty = !run::output(
            "git status",
            run::git(&[
                "status",
                "--porcelain",
                "--untracked-files=no",
                "--",
                ".",
                ":(exclude)docs",
                ":(exclude)xtask",
            ]),
        )?
        .trim()
        .is_empty();
        let mut date = Command::new("date");
        date.args(["-u", "+%Y-%m-%d %H:%M UTC"]);
        let mut command = format!(
            "{}{}perf record -e {event} -F {FREQUENCY} --call-graph fp -- {} --bench",
            if profile.full {
                ""
            } else {
                "SWITCHYARD_BENCH_QUICK=1 "
            },
            bench_settings(std::env::vars()),
            bench.name
        );
        for arg in &profile.bench_args {
            command.push(' ');
            command.push_str(arg);
        }
        Ok(Self {
            bench: bench.name.clone(),
            package: bench.package.clone(),
            commit: format!(
                "{}{}",
                commit.trim(),
                if dirty {
                    " (with uncommitted changes)"
                } else {
                    ""
                }
            ),
            date: run::output("date", date)?.trim().to_owned(),
            command,
            load: load.to_owned(),
            seconds: recording.seconds,
            stopped: recording.stopped,
        })
    }

    fn heading(&self) -> String {
        format!(
            "Profile of the bench `{}` ({}), commit {}, {}.\n\
             Recorded with `{}` for {:.0} s ({}); load average at start (1, 5, 15 min): {}.",
            self.bench,
            self.package,
            self.commit,
            self.date,
            self.command,
            self.seconds,
            if self.stopped {
                "stopped at the time limit"
            } else {
                "until the bench ended"
            },
            self.load,
        )
    }

    fn subtitle(&self) -> String {
        format!(
            "commit {}, {}: {}, {:.0} s, load {}",
            self.commit, self.date, self.command, self.seconds, self.load
        )
    }
}

fn create_dir(dir: &Path) -> Result {
    std::fs::create_dir_all(dir).map_err(|error| StepFailed {
        step: format!("create {}", dir.display()),
        detail: error.to_string(),
    })
}

fn write(path: &Path, bytes: &[u8]) -> Result {
    std::fs::write(path, bytes).map_err(|error| StepFailed {
        step: format!("write {}", path.display()),
        detail: error.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bench_executable_is_read_from_cargo_messages() {
        let messages = r#"{"reason":"compiler-artifact","target":{"name":"local_dispatch","kind":["lib"]},"executable":null}
{"reason":"compiler-artifact","target":{"name":"other","kind":["bench"]},"executable":"/t/release/deps/other-1"}
not json
{"reason":"compiler-artifact","target":{"name":"local_dispatch","kind":["bench"]},"executable":"/t/release/deps/local_dispatch-2"}
{"reason":"build-finished","success":true}"#;
        assert_eq!(
            executable(messages, "local_dispatch"),
            Some(PathBuf::from("/t/release/deps/local_dispatch-2"))
        );
        assert_eq!(executable(messages, "missing"), None);
    }

    #[test]
    fn a_recording_names_the_bench_settings_it_ran_with() {
        let vars = [
            ("SWITCHYARD_BENCH_PHASE_SECONDS", "10"),
            ("PATH", "/bin"),
            ("SWITCHYARD_BENCH_QUICK", "1"),
            ("SWITCHYARD_BENCH_PHASE", "burst"),
        ]
        .map(|(name, value)| (name.to_owned(), value.to_owned()));
        assert_eq!(
            bench_settings(vars.into_iter()),
            "SWITCHYARD_BENCH_PHASE=burst SWITCHYARD_BENCH_PHASE_SECONDS=10 "
        );
    }
}
