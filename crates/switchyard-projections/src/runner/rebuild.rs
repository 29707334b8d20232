//! Rebuilding a projection: reset, replay from the origin, report progress.

use std::time::Duration;

use tokio::time::Instant;

/// How far a rebuild got, handed to the callback of
/// [`ProjectionRunnerBuilder::rebuild`](super::ProjectionRunnerBuilder::rebuild) after each
/// batch, and logged.
///
/// Progress is counted in the global order: a rebuild is done once it passed `total`, the
/// store's head when it started (events appended since are applied after it, live). Positions
/// may have gaps and the order holds other aggregate types' events too, so `done` and `total`
/// measure the order read, and [`events`](Self::events) counts the events applied.
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub struct RebuildProgress {
    /// The position passed so far.
    pub done: u64,
    /// The store's head when the rebuild started: the rebuild is over once `done` reaches it.
    pub total: u64,
    /// The events applied so far.
    pub events: u64,
    /// Time since the rebuild started.
    pub elapsed: Duration,
    /// Positions passed per second, so far.
    pub rate: f64,
    /// At this rate, the time left; `None` before any rate is known.
    pub remaining: Option<Duration>,
    /// The rebuild has passed `total`: the last report.
    pub finished: bool,
}

/// What a rebuild reports to.
pub(super) type OnProgress = Box<dyn FnMut(&RebuildProgress) + Send>;

/// A rebuild under way.
pub(super) struct Rebuild {
    on_progress: OnProgress,
    total: u64,
    events: u64,
    started: Instant,
}

impl Rebuild {
    /// A rebuild replaying the order up to `total`.
    pub(super) fn new(on_progress: OnProgress, total: u64) -> Self {
        Self {
            on_progress,
            total,
            events: 0,
            started: Instant::now(),
        }
    }

    /// Records a batch of `events` that brought the rebuild to `position`, and reports.
    /// `true` once the rebuild is over.
    pub(super) fn advance(&mut self, projection: &str, position: u64, events: usize) -> bool {
        self.events += u64::try_from(events).unwrap_or(u64::MAX);
        let progress = self.progress(position);
        tracing::info!(
            projection,
            done = progress.done,
            total = progress.total,
            events = progress.events,
            rate = progress.rate,
            remaining_s = progress.remaining.map(|r| r.as_secs_f64()),
            finished = progress.finished,
            "projection rebuild progress"
        );
        (self.on_progress)(&progress);
        progress.finished
    }

    fn progress(&self, position: u64) -> RebuildProgress {
        let elapsed = self.started.elapsed();
        let done = position.min(self.total);
        let seconds = elapsed.as_secs_f64();
        let rate = if seconds > 0.0 {
            done as f64 / seconds
        } else {
            0.0
        };
        let remaining = (rate > 0.0)
            .then(|| Duration::try_from_secs_f64((self.total - done) as f64 / rate).ok())
            .flatten();
        RebuildProgress {
            done,
            total: self.total,
            events: self.events,
            elapsed,
            rate,
            remaining,
            finished: position >= self.total,
        }
    }
}
