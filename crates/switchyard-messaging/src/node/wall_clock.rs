//! Wall-clock times derived from the monotonic instant a dispatch already read, so a call reads
//! one clock, not two.
//!
//! Each thread keeps an anchor: an instant and the wall-clock time read with it. A time within
//! [`REANCHOR_AFTER`] of the anchor is the anchor's wall time plus the monotonic distance; a
//! later one reads the wall clock again and becomes the new anchor. So a time stays within the
//! drift of a second of the system clock's own (microseconds), and a step of the system clock
//! (set by hand, a resumed VM) shows within a second.

use std::cell::Cell;
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

/// How long a thread's anchor serves before the wall clock is read again.
const REANCHOR_AFTER: Duration = Duration::from_secs(1);

thread_local! {
    /// The instant and wall-clock time last read together on this thread.
    static ANCHOR: Cell<Option<(Instant, SystemTime)>> = const { Cell::new(None) };
}

/// The wall-clock time at `now`, an instant just read.
pub(super) fn at(now: Instant) -> SystemTime {
    ANCHOR.with(|anchor| {
        if let Some((instant, wall)) = anchor.get()
            && let Some(since) = now.checked_duration_since(instant)
            && since < REANCHOR_AFTER
        {
            return wall + since;
        }
        let wall = SystemTime::now();
        anchor.set(Some((now, wall)));
        wall
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_time_follows_the_monotonic_clock_from_its_anchor() {
        let first = Instant::now();
        let anchored = at(first);
        let later = first + Duration::from_millis(250);
        assert_eq!(at(later), anchored + Duration::from_millis(250));
    }

    #[test]
    fn the_wall_clock_is_read_again_after_a_second() {
        let first = Instant::now();
        let anchored = at(first);
        let much_later = first + Duration::from_secs(5);
        // The wall clock is read again: not five seconds after the first reading, since only a
        // moment passed.
        let reread = at(much_later);
        assert!(reread < anchored + Duration::from_secs(1), "{reread:?}");
        assert!(reread >= anchored);
    }
}
