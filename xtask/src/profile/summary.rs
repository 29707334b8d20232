//! Where the time went, in text: the functions with the most CPU time, read from folded stacks
//! (`comm;outer;...;inner weight`, one stack a line, as inferno's collapsers write them). The
//! weight of a stack is the nanoseconds of CPU time its samples stand for: the period of perf's
//! `cpu-clock` event, which inferno adds up.

use std::collections::{HashMap, HashSet};

/// Nanoseconds of CPU time per function.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Times {
    /// All the time sampled.
    pub(crate) total: u64,
    /// Time in stacks whose innermost frame is the function: in its own code.
    pub(crate) own: Vec<(String, u64)>,
    /// Time in stacks with the function anywhere: in its code and its callees'.
    pub(crate) inclusive: Vec<(String, u64)>,
}

/// Adds up the folded stacks; each list is sorted by time, most first (then by name).
/// The first frame of a stack is the thread's name, not a function: it is left out.
pub(crate) fn times(folded: &str) -> Times {
    let mut total = 0;
    let mut own: HashMap<&str, u64> = HashMap::new();
    let mut inclusive: HashMap<&str, u64> = HashMap::new();
    for line in folded.lines() {
        let Some((stack, count)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(count) = count.parse::<u64>() else {
            continue;
        };
        total += count;
        let frames: Vec<&str> = stack.split(';').skip(1).collect();
        if let Some(innermost) = frames.last() {
            *own.entry(innermost).or_default() += count;
        }
        // A recursive function is counted once per stack.
        let distinct: HashSet<&str> = frames.into_iter().collect();
        for frame in distinct {
            *inclusive.entry(frame).or_default() += count;
        }
    }
    Times {
        total,
        own: sorted(own),
        inclusive: sorted(inclusive),
    }
}

fn sorted(counts: HashMap<&str, u64>) -> Vec<(String, u64)> {
    let mut list: Vec<(String, u64)> = counts
        .into_iter()
        .map(|(name, count)| (name.to_owned(), count))
        .collect();
    list.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    list
}

/// The `top` functions of each list as text, under `heading` (lines saying what was run).
pub(crate) fn render(heading: &str, times: &Times, top: usize) -> String {
    let mut out = format!(
        "{heading}\n{:.2} s of CPU time sampled.\n",
        times.total as f64 / 1e9
    );
    for (title, list) in [
        ("Self time (in the function's own code)", &times.own),
        (
            "Total time (in the function and what it calls)",
            &times.inclusive,
        ),
    ] {
        out.push_str(&format!(
            "\n{title}, top {top}:\n\n  share   CPU ms  function\n"
        ));
        for (name, count) in list.iter().take(top) {
            let share = 100.0 * *count as f64 / times.total.max(1) as f64;
            let millis = *count as f64 / 1e6;
            out.push_str(&format!("{share:6.1}% {millis:8.1}  {name}\n"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const FOLDED: &str = "\
worker;main;poll;malloc 30000000
worker;main;poll 50000000
worker;main;fold;fold;malloc 20000000
other 7000000
";

    fn pairs(list: &[(&str, u64)]) -> Vec<(String, u64)> {
        list.iter()
            .map(|(name, count)| ((*name).to_owned(), *count))
            .collect()
    }

    #[test]
    fn self_time_goes_to_the_innermost_frame_and_total_time_to_every_frame_once() {
        let times = times(FOLDED);
        assert_eq!(times.total, 107_000_000);
        assert_eq!(
            times.own,
            pairs(&[("malloc", 50_000_000), ("poll", 50_000_000)])
        );
        assert_eq!(
            times.inclusive,
            pairs(&[
                ("main", 100_000_000),
                ("poll", 80_000_000),
                ("malloc", 50_000_000),
                ("fold", 20_000_000)
            ])
        );
    }

    #[test]
    fn the_text_gives_milliseconds_and_shares_of_all_the_time() {
        let text = render("Profile of x", &times(FOLDED), 1);
        assert!(
            text.starts_with("Profile of x\n0.11 s of CPU time sampled.\n"),
            "{text}"
        );
        assert!(text.contains("  46.7%     50.0  malloc\n"), "{text}");
        assert!(!text.contains("  poll\n"), "top 1 only: {text}");
        assert!(text.contains("  93.5%    100.0  main\n"), "{text}");
    }
}
