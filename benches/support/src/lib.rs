//! What every Switchyard benchmark shares: the runtime they measure on, alternating rounds of
//! floor and subject and their medians, the criterion settings, a quick mode, one path run alone
//! for a profiler, the machine's load, the lines every report ends with (targets met or missed,
//! the load), and where their Markdown section goes for `cargo xtask bench`.
//!
//! An unpublished package, a dev-dependency of the crates whose benches use it.
//!
//! ```
//! use switchyard_bench_support::{alternate, median};
//!
//! // A floor (what the raw mechanism reaches) and a subject, measured in turns.
//! let rounds = alternate(3, || 100.0, || 80.0);
//! assert_eq!(rounds.ratio(), 0.8);
//! assert_eq!(median(&rounds.subject), 80.0);
//! ```

#![deny(missing_docs)]
#![forbid(unsafe_code)]
// A benchmark that cannot set itself up has nothing to measure: it stops at once, loudly.
#![allow(clippy::expect_used, clippy::unwrap_used)]

pub mod allocations;

use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::runtime::Runtime;

/// The runtime every bench measures on: two workers, as many as the machine has cores.
///
/// # Panics
///
/// When the runtime cannot be built.
pub fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// The median of `values` (the upper one of an even count).
///
/// # Panics
///
/// When `values` is empty.
pub fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(|a, b| a.total_cmp(b));
    sorted[sorted.len() / 2]
}

/// Cargo's target directory: `CARGO_TARGET_DIR`, else three levels above the bench binary
/// (`target/release/deps/`).
pub fn target_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("CARGO_TARGET_DIR") {
        return PathBuf::from(dir);
    }
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.ancestors().nth(3).map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("target"))
}

/// Writes a bench's section where `cargo xtask bench` collects them (`SWITCHYARD_BENCH_OUT`,
/// else `target/switchyard-bench/`), named `file` (`NN-name.md`, in report order).
///
/// # Panics
///
/// When the directory or the file cannot be written.
pub fn write_section(file: &str, text: &str) {
    let out_dir = std::env::var("SWITCHYARD_BENCH_OUT")
        .map(PathBuf::from)
        .unwrap_or_else(|_| target_dir().join("switchyard-bench"));
    std::fs::create_dir_all(&out_dir).expect("the bench output directory");
    std::fs::write(out_dir.join(file), text).expect("the bench section");
}

/// Whether the bench should run reduced sizes to check itself quickly
/// (`SWITCHYARD_BENCH_QUICK=1`); its figures then say little.
pub fn quick() -> bool {
    std::env::var("SWITCHYARD_BENCH_QUICK").is_ok_and(|value| !value.is_empty() && value != "0")
}

/// The machine's load averages over 1, 5 and 15 minutes (`/proc/loadavg`), so a section can say
/// how busy the machine was while it measured.
pub fn load_average() -> String {
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

/// The criterion settings every bench's `criterion_group!` shares: a second of warm-up, three
/// of measurement (the benches' own rounds, not criterion's, make their sections).
pub fn criterion() -> criterion::Criterion {
    criterion::Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
}

/// The one path a bench is asked to run alone, for a profiler (`cargo xtask profile`), and for
/// how long: `SWITCHYARD_BENCH_PHASE` names it (each bench says which it knows),
/// `SWITCHYARD_BENCH_PHASE_SECONDS` the length (20 s unless set). `None` for a whole run.
pub fn phase() -> Option<(String, Duration)> {
    let phase = std::env::var("SWITCHYARD_BENCH_PHASE").ok()?;
    let seconds = std::env::var("SWITCHYARD_BENCH_PHASE_SECONDS")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(20);
    Some((phase, Duration::from_secs(seconds)))
}

/// Whether cargo ran the bench binary for criterion alone: then the bench's own rounds and its
/// section are skipped. `cargo bench` (and so `cargo xtask bench` and `cargo xtask profile`)
/// passes `--bench`; `cargo test --benches` passes no such flag, and criterion then runs each
/// benchmark once as a test; `--test`, `--list` and `--profile-time` likewise ask for no report.
pub fn criterion_only() -> bool {
    criterion_only_for(std::env::args().skip(1))
}

fn criterion_only_for(args: impl IntoIterator<Item = String>) -> bool {
    let args: Vec<String> = args.into_iter().collect();
    !args.iter().any(|arg| arg == "--bench")
        || args
            .iter()
            .any(|arg| arg == "--test" || arg == "--list" || arg == "--profile-time")
}

/// A count with a comma between each group of three digits, as the sections write counts
/// (`25000` as `25,000`).
pub fn thousands(count: u64) -> String {
    let digits = count.to_string();
    let mut out = String::new();
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// A target's verdict in a section's table: "met", or a plain "**not met**".
pub fn met(ok: bool) -> &'static str {
    if ok { "met" } else { "**not met**" }
}

/// A section's closing lines: that every target was met, or which were (`misses`); then the
/// load averages ([`load_average`]) when the measurements began and ended, with what slows the
/// figures on this machine (`slowed_by`, e.g. "other work on the machine's 2 cores slows every
/// figure").
pub fn closing(misses: &[String], loads: (&str, &str), slowed_by: &str) -> String {
    let verdict = if misses.is_empty() {
        "Every target met in this run.".to_owned()
    } else {
        format!("Targets missed in this run: {}.", misses.join("; "))
    };
    format!(
        "\n{verdict}\n\nLoad average (1, 5, 15 min) when these measurements began: {}; when they \
         ended: {} ({slowed_by}).\n",
        loads.0, loads.1
    )
}

/// Floor and subject figures of alternating rounds, as [`alternate`] measured them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Rounds {
    /// The floor's figure of each round.
    pub floor: Vec<f64>,
    /// The subject's figure of each round, in the same order.
    pub subject: Vec<f64>,
}

impl Rounds {
    /// The median of the per-round ratios subject / floor: for throughput, the share of the
    /// floor the subject reaches; for times, how many times the floor it takes.
    pub fn ratio(&self) -> f64 {
        self.median_per_round(|floor, subject| subject / floor)
    }

    /// The median of the per-round ratios floor / subject: for throughput, how many times the
    /// subject's figure the floor reaches; for times, the share of the floor's time the subject
    /// takes. Taken round by round, not as the inverse of [`Rounds::ratio`].
    pub fn inverse_ratio(&self) -> f64 {
        self.median_per_round(|floor, subject| floor / subject)
    }

    fn median_per_round(&self, ratio: impl Fn(f64, f64) -> f64) -> f64 {
        let per_round: Vec<f64> = self
            .floor
            .iter()
            .zip(&self.subject)
            .map(|(floor, subject)| ratio(*floor, *subject))
            .collect();
        median(&per_round)
    }
}

/// One warm-up round of each, then `rounds` rounds of floor and subject in turn, so both see the
/// same machine: its speed changes within seconds.
pub fn alternate(
    rounds: usize,
    mut floor: impl FnMut() -> f64,
    mut subject: impl FnMut() -> f64,
) -> Rounds {
    floor();
    subject();
    let mut result = Rounds {
        floor: Vec::new(),
        subject: Vec::new(),
    };
    for _ in 0..rounds {
        result.floor.push(floor());
        result.subject.push(subject());
    }
    result
}

/// Operations per second of `tasks` concurrent tasks on `rt`, each calling `op` with an id of
/// its own (unique in this process, so no round replaces another's rows) until `length` has
/// passed.
///
/// # Panics
///
/// When a task panicked.
pub fn concurrent_rate<F, Fut>(rt: &Runtime, tasks: usize, length: Duration, op: F) -> f64
where
    F: Fn(String) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    static ROUNDS: AtomicUsize = AtomicUsize::new(0);
    let round = ROUNDS.fetch_add(1, Ordering::Relaxed);
    rt.block_on(async {
        let started = Instant::now();
        let until = started + length;
        let tasks: Vec<_> = (0..tasks)
            .map(|task| {
                let op = op.clone();
                tokio::spawn(async move {
                    let mut done = 0_usize;
                    while Instant::now() < until {
                        op(format!("{round}-{task}-{done}")).await;
                        done += 1;
                    }
                    done
                })
            })
            .collect();
        let mut done = 0;
        for task in tasks {
            done += task.await.unwrap();
        }
        done as f64 / started.elapsed().as_secs_f64()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_median_of_an_even_count_is_the_upper_one() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 3.0);
    }

    #[test]
    fn ratios_are_taken_round_by_round() {
        let rounds = Rounds {
            floor: vec![100.0, 50.0, 200.0],
            subject: vec![50.0, 50.0, 50.0],
        };
        // Per round: 0.5, 1, 0.25; and 2, 1, 4.
        assert_eq!(rounds.ratio(), 0.5);
        assert_eq!(rounds.inverse_ratio(), 2.0);
    }

    #[test]
    fn alternate_warms_both_up_then_measures_them_in_turns() {
        let mut calls = Vec::new();
        let log = std::cell::RefCell::new(&mut calls);
        let rounds = alternate(
            2,
            || {
                log.borrow_mut().push("floor");
                1.0
            },
            || {
                log.borrow_mut().push("subject");
                2.0
            },
        );
        assert_eq!(rounds.floor, vec![1.0, 1.0]);
        assert_eq!(rounds.subject, vec![2.0, 2.0]);
        assert_eq!(calls, ["floor", "subject"].repeat(3));
    }

    #[test]
    fn only_cargo_bench_asks_for_the_rounds() {
        let args = |list: &[&str]| list.iter().map(|arg| arg.to_string()).collect::<Vec<_>>();
        // `cargo bench`, with and without a filter.
        assert!(!criterion_only_for(args(&["--bench"])));
        assert!(!criterion_only_for(args(&["ractor", "--bench"])));
        // `cargo test --benches`, and criterion's own modes.
        assert!(criterion_only_for(args(&[])));
        assert!(criterion_only_for(args(&["--bench", "--test"])));
        assert!(criterion_only_for(args(&["--bench", "--list"])));
        assert!(criterion_only_for(args(&[
            "--bench",
            "--profile-time",
            "5"
        ])));
    }

    #[test]
    fn counts_are_written_in_groups_of_three_digits() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(25_000), "25,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }

    #[test]
    fn a_missed_target_stands_out() {
        assert_eq!((met(true), met(false)), ("met", "**not met**"));
    }

    #[test]
    fn a_closing_says_which_targets_were_missed_and_the_load() {
        let met = closing(&[], ("1.0 0.5 0.2", "2.0 1.0 0.4"), "noise");
        assert_eq!(
            met,
            "\nEvery target met in this run.\n\nLoad average (1, 5, 15 min) when these \
             measurements began: 1.0 0.5 0.2; when they ended: 2.0 1.0 0.4 (noise).\n"
        );
        let missed = closing(&["a".into(), "b".into()], ("x", "y"), "noise");
        assert!(missed.starts_with("\nTargets missed in this run: a; b.\n\n"));
    }
}
