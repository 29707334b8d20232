//! The arguments of `cargo xtask profile`, parsed.

/// The usage text, shown with every argument error.
pub(crate) const USAGE: &str =
    "usage: cargo xtask profile <bench> [--label LABEL] [--seconds SECONDS] [--top COUNT]
                            [--full] [-- BENCH ARGS...]
       cargo xtask profile --list

  Builds <bench> in release with line tables and frame pointers, records its CPU time with
  `perf record` until it ends or SECONDS pass (60), and writes docs/profiles/<bench>-<LABEL>.svg,
  a flame graph, and docs/profiles/<bench>-<LABEL>.txt, the COUNT functions with the most self
  time and with the most total time (30). LABEL defaults to the short commit hash; `before` and
  `after` are shown side by side in the Profiles section of docs/benchmarks.md, which this
  command updates. The bench runs with SWITCHYARD_BENCH_QUICK=1 unless --full is given; BENCH
  ARGS go to the bench binary (a criterion filter, `--measurement-time 2`, ...). A name two
  packages share is given as package/name (`sqlite/scheduler`); --list names them all.";

/// How long a profile records when `--seconds` is not given: long enough for tens of thousands
/// of samples at the sampling rate, short enough to run between two edits.
pub(crate) const DEFAULT_SECONDS: u64 = 60;

/// How many functions the summary lists when `--top` is not given.
pub(crate) const DEFAULT_TOP: usize = 30;

/// What `cargo xtask profile` was asked to do.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Request {
    /// `--list`: name the benches.
    List,
    /// Profile one bench.
    Profile(Profile),
}

/// One profile to record.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Profile {
    /// The bench as the user named it (`local_dispatch`, `sqlite/scheduler`).
    pub(crate) bench: String,
    /// The label of the files written; `None` for the short commit hash.
    pub(crate) label: Option<String>,
    /// The longest the recording runs; the bench is stopped then if it has not ended.
    pub(crate) seconds: u64,
    /// How many functions the summary lists.
    pub(crate) top: usize,
    /// Whether to run the bench at its full sizes rather than in quick mode.
    pub(crate) full: bool,
    /// Arguments passed to the bench binary.
    pub(crate) bench_args: Vec<String>,
}

/// Parses the arguments after `profile`; the error says what was wrong.
pub(crate) fn parse(args: &[String]) -> Result<Request, String> {
    let (ours, bench_args) = match args.iter().position(|arg| arg == "--") {
        Some(split) => (&args[..split], args[split + 1..].to_vec()),
        None => (args, Vec::new()),
    };
    if ours.first().is_some_and(|arg| arg == "--list") {
        return match ours.len() {
            1 => Ok(Request::List),
            _ => Err("`--list` takes nothing else".into()),
        };
    }
    let mut bench = None;
    let mut profile = Profile {
        bench: String::new(),
        label: None,
        seconds: DEFAULT_SECONDS,
        top: DEFAULT_TOP,
        full: false,
        bench_args,
    };
    let mut rest = ours.iter();
    while let Some(arg) = rest.next() {
        let mut value = |flag: &str| {
            rest.next()
                .cloned()
                .ok_or_else(|| format!("`{flag}` needs a value"))
        };
        match arg.as_str() {
            "--label" => profile.label = Some(label(&value("--label")?)?),
            "--seconds" => profile.seconds = positive(&value("--seconds")?, "--seconds")?,
            "--top" => profile.top = positive(&value("--top")?, "--top")? as usize,
            "--full" => profile.full = true,
            flag if flag.starts_with('-') => return Err(format!("unknown option `{flag}`")),
            name if bench.is_none() => bench = Some(name.to_owned()),
            extra => {
                return Err(format!(
                    "one bench at a time (`{extra}` too); arguments for the bench go after `--`"
                ));
            }
        }
    }
    profile.bench = bench.ok_or("name a bench (`cargo xtask profile --list` names them)")?;
    Ok(Request::Profile(profile))
}

fn positive(value: &str, flag: &str) -> Result<u64, String> {
    value
        .parse::<u64>()
        .ok()
        .filter(|&number| number > 0)
        .ok_or_else(|| format!("`{flag}` needs a whole number above 0, not `{value}`"))
}

/// A label becomes part of a file name: letters, digits, `.`, `_` and `-` only.
fn label(value: &str) -> Result<String, String> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if !value.is_empty() && !value.starts_with('.') && value.chars().all(allowed) {
        Ok(value.to_owned())
    } else {
        Err(format!(
            "the label `{value}` goes into a file name: use letters, digits, `.`, `_` and `-`"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(args: &[&str], expected: Result<Request, &str>) {
        let args: Vec<String> = args.iter().map(|arg| (*arg).to_owned()).collect();
        match (parse(&args), expected) {
            (Ok(request), Ok(expected)) => assert_eq!(request, expected),
            (Err(error), Err(expected)) => {
                assert!(error.contains(expected), "`{error}` lacks `{expected}`");
            }
            (parsed, expected) => panic!("{args:?}: got {parsed:?}, expected {expected:?}"),
        }
    }

    fn profile(bench: &str) -> Profile {
        Profile {
            bench: bench.into(),
            label: None,
            seconds: DEFAULT_SECONDS,
            top: DEFAULT_TOP,
            full: false,
            bench_args: Vec::new(),
        }
    }

    #[test]
    fn a_bench_alone_gets_the_defaults() {
        check(
            &["local_dispatch"],
            Ok(Request::Profile(profile("local_dispatch"))),
        );
    }

    #[test]
    fn options_and_bench_arguments_are_taken() {
        check(
            &[
                "--label",
                "before",
                "remote_calls",
                "--seconds",
                "90",
                "--top",
                "12",
                "--full",
                "--",
                "round_trip",
                "--measurement-time",
                "2",
            ],
            Ok(Request::Profile(Profile {
                label: Some("before".into()),
                seconds: 90,
                top: 12,
                full: true,
                bench_args: vec!["round_trip".into(), "--measurement-time".into(), "2".into()],
                ..profile("remote_calls")
            })),
        );
    }

    #[test]
    fn list_takes_nothing_else() {
        check(&["--list"], Ok(Request::List));
        check(&["--list", "x"], Err("takes nothing else"));
    }

    #[test]
    fn wrong_arguments_say_what_is_wrong() {
        check(&[], Err("name a bench"));
        check(&["a", "b"], Err("one bench at a time"));
        check(&["a", "--seconds"], Err("`--seconds` needs a value"));
        check(&["a", "--seconds", "0"], Err("above 0, not `0`"));
        check(&["a", "--top", "many"], Err("above 0, not `many`"));
        check(&["a", "--fast"], Err("unknown option `--fast`"));
        check(&["a", "--label", "../x"], Err("goes into a file name"));
        check(&["a", "--label", "a b"], Err("goes into a file name"));
    }
}
