//! How far a running projection got, watched from anywhere: a [`Watermark`].

use std::sync::Arc;

use tokio::sync::watch;
use tokio::time::Instant;

use super::WaitError;
use super::worker::Status;

/// A cloneable view of how far a [`ProjectionRunner`](super::ProjectionRunner) got: the
/// position its projection has processed through, and a wait for a position. Made by
/// [`ProjectionRunner::watermark`](super::ProjectionRunner::watermark); cheap to clone, so
/// query handlers can hold one in their router's state while the runner is owned elsewhere.
///
/// It outlives its runner: once the runner stopped, the position stays where it was and a wait
/// for a later one fails with [`WaitError::Stopped`].
#[derive(Clone)]
pub struct Watermark {
    projection: Arc<str>,
    status: watch::Receiver<Status>,
}

impl std::fmt::Debug for Watermark {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watermark")
            .field("projection", &self.projection)
            .field("position", &self.position())
            .finish()
    }
}

impl Watermark {
    pub(super) fn new(projection: Arc<str>, status: watch::Receiver<Status>) -> Self {
        Self { projection, status }
    }

    /// The projection's name.
    pub fn projection(&self) -> &str {
        &self.projection
    }

    /// The position the projection has processed through: see
    /// [`ProjectionRunner::position`](super::ProjectionRunner::position).
    pub fn position(&self) -> u64 {
        self.status.borrow().position
    }

    /// Whether the runner holds the lease and applies events: see
    /// [`ProjectionRunner::is_active`](super::ProjectionRunner::is_active).
    pub fn is_active(&self) -> bool {
        self.status.borrow().active
    }

    /// Whether the projection has processed every event up to `position` (a command's
    /// reply position): a read of the read model now sees their effects.
    pub fn caught_up_to(&self, position: u64) -> bool {
        self.position() >= position
    }

    /// Waits until the projection has processed every event up to `position`
    /// ([`caught_up_to`](Self::caught_up_to)), until `deadline` at the latest. Returns at once
    /// when it has.
    ///
    /// # Errors
    ///
    /// [`WaitError::Timeout`] when the deadline passes first; [`WaitError::Stopped`] when the
    /// runner stops first.
    pub async fn wait_for(&self, position: u64, deadline: Instant) -> Result<(), WaitError> {
        let mut status = self.status.clone();
        let reached =
            tokio::time::timeout_at(deadline, status.wait_for(|s| s.position >= position));
        match reached.await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) => Err(WaitError::Stopped {
                projection: self.projection.to_string(),
                position,
                reached: self.position(),
            }),
            Err(_) => Err(WaitError::Timeout {
                projection: self.projection.to_string(),
                position,
                reached: self.position(),
            }),
        }
    }
}
