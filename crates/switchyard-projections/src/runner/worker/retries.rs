//! The runner's retries of what may fail for a while: the event store's reads, the checkpoint
//! store's writes, a batch's commit.

use backon::{BackoffBuilder, ExponentialBackoff};

use super::Worker;
use crate::checkpoint::CheckpointError;
use crate::runner::poison::error_text;
use crate::runner::projection::Projection;

impl<P: Projection> Worker<P> {
    /// The pauses between the attempts at `operation` (what the projection could not do, for
    /// the log).
    pub(super) fn retries(&self, operation: &'static str) -> Retries<'_> {
        Retries {
            projection: &self.name,
            operation,
            batch: None,
            delays: self.retry.build(),
            attempts: 0,
        }
    }
}

/// Whether a checkpoint store's failure may pass, so the operation is worth trying again.
pub(super) fn may_pass(error: &CheckpointError) -> bool {
    matches!(
        error,
        CheckpointError::Backend { .. } | CheckpointError::Unknown { .. }
    )
}

/// The attempts at one operation that may fail for a while: each failure is logged and
/// followed by the next pause of the runner's backoff, until the pauses are spent.
pub(super) struct Retries<'a> {
    projection: &'a str,
    operation: &'static str,
    /// The positions of the batch tried, for the log.
    batch: Option<(u64, u64)>,
    delays: ExponentialBackoff,
    /// The attempts that failed so far.
    pub(super) attempts: usize,
}

impl Retries<'_> {
    /// Names the batch of positions `first..=last` tried, in the log.
    pub(super) fn of_batch(mut self, first: u64, last: u64) -> Self {
        self.batch = Some((first, last));
        self
    }

    /// Counts an attempt that failed with `error` and waits before the next one: `Err(error)`
    /// once the pauses are spent.
    pub(super) async fn pause<E: std::error::Error + 'static>(
        &mut self,
        error: E,
    ) -> Result<(), E> {
        self.attempts += 1;
        let Some(delay) = self.delays.next() else {
            return Err(error);
        };
        tracing::warn!(
            projection = %self.projection,
            first = self.batch.map(|(first, _)| first),
            last = self.batch.map(|(_, last)| last),
            attempts = self.attempts,
            error = %error_text(&error),
            ?delay,
            "projection could not {}; retrying",
            self.operation,
        );
        tokio::time::sleep(delay).await;
        Ok(())
    }
}
