//! Where the time went, in text: the functions with the most samples, read from folded stacks
//! (`comm;outer;...;inner count`, one stack a line, as inferno's collapsers write them).

use std::collections::{HashMap, HashSet};

/// Samples per function.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Times {
    /// Every sample.
    pub(crate) total: u64,
    /// Samples whose innermost frame is the function: time spent in its own code.
    pub(crate) own: Vec<(String, u64)>,
    /// Samples with the function anywhere on the stack: its time with its callees'.
    pub(crate) inclusive: Vec<(String, u64)>,
}

/// Counts the folded stacks; each list is sorted by samples, most first (then by name).
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
        // A recursive function is counted once per sample.
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
    let mut out = format!("{heading}\n{} samples.\n", times.total);
    for (title, list) in [
        ("Self time (in the function's own code)", &times.own),
        (
            "Total time (in the function and what it calls)",
            &times.inclusive,
        ),
    ] {
        out.push_str(&format!(
            "\n{title}, top {top}:\n\n  share  samples  function\n"
        ));
        for (name, count) in list.iter().take(top) {
            let share = 100.0 * *count as f64 / times.total.max(1) as f64;
            out.push_str(&format!("{share:6.1}% {count:8}  {name}\n"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const FOLDED: &str = "\
worker;main;poll;malloc 30
worker;main;poll 50
worker;main;fold;fold;malloc 20
other 7
";

    fn pairs(list: &[(&str, u64)]) -> Vec<(String, u64)> {
        list.iter()
            .map(|(name, count)| ((*name).to_owned(), *count))
            .collect()
    }

    #[test]
    fn self_time_goes_to_the_innermost_frame_and_total_time_to_every_frame_once() {
        let times = times(FOLDED);
        assert_eq!(times.total, 107);
        assert_eq!(times.own, pairs(&[("malloc", 50), ("poll", 50)]));
        assert_eq!(
            times.inclusive,
            pairs(&[("main", 100), ("poll", 80), ("malloc", 50), ("fold", 20)])
        );
    }

    #[test]
    fn the_text_gives_shares_of_every_sample() {
        let text = render("Profile of x", &times(FOLDED), 1);
        assert!(text.starts_with("Profile of x\n107 samples.\n"), "{text}");
        assert!(text.contains("  46.7%       50  malloc\n"), "{text}");
        assert!(!text.contains("  poll\n"), "top 1 only: {text}");
        assert!(text.contains("  93.5%      100  main\n"), "{text}");
    }
}
