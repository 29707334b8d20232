//! How far the product list has got, and waiting until it has seen a position: asked of the
//! projection runner in this process, or of the checkpoint store when the projection runs in
//! another process (`warehouse project`).

use std::sync::Arc;
use std::time::Duration;

use switchyard::projections::{CheckpointStore, ProjectionRunner};
use tokio::time::Instant;

use crate::read_model::{PROJECTION, ProductsProjection};

/// How often a separate projector's checkpoint is read while a request waits for it.
const CHECKPOINT_POLL: Duration = Duration::from_millis(10);

/// Where the product list's progress is read.
pub(crate) enum Progress {
    /// The runner in this process, shared with the [`Server`](crate::Server) that stops it.
    Local(Arc<ProjectionRunner<ProductsProjection>>),
    /// The checkpoint a runner in another process saves.
    Separate(Arc<dyn CheckpointStore>),
}

/// The list did not reach a position in time.
#[derive(Debug, thiserror::Error)]
#[error("the product list reached position {reached}, not {position}, in time")]
pub(crate) struct NotReached {
    position: u64,
    reached: u64,
}

impl Progress {
    /// The position of the last event the list has seen.
    pub(crate) async fn position(&self) -> u64 {
        match self {
            Self::Local(runner) => runner.position(),
            // An unreadable checkpoint shows as no progress; the wait below reports it.
            Self::Separate(checkpoints) => checkpoints.load(PROJECTION).await.unwrap_or(0),
        }
    }

    /// Waits until the list has seen `position`, until `deadline` at the latest.
    pub(crate) async fn wait_for(
        &self,
        position: u64,
        deadline: Instant,
    ) -> Result<(), NotReached> {
        match self {
            Self::Local(runner) => {
                runner
                    .wait_for(position, deadline)
                    .await
                    .map_err(|_| NotReached {
                        position,
                        reached: runner.position(),
                    })
            }
            Self::Separate(_) => loop {
                let reached = self.position().await;
                if reached >= position {
                    return Ok(());
                }
                if Instant::now() >= deadline {
                    return Err(NotReached { position, reached });
                }
                tokio::time::sleep(CHECKPOINT_POLL).await;
            },
        }
    }
}
