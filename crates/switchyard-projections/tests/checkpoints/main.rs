//! The memory checkpoint store: the public conformance suite, and its semantics (monotonic
//! saves, leases, fencing) against a model under random sequences of operations.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // Tests fail loudly.

mod model;

use switchyard_projections::checkpoint::MemoryCheckpointStore;

switchyard_projections::checkpoint_store_conformance!(async { MemoryCheckpointStore::new() });

use std::sync::Arc;

use switchyard_projections::checkpoint::{
    CheckpointError, CheckpointStore, LeaseToken, conformance,
};

/// A store is used as `Arc<dyn CheckpointStore>`, shared between tasks.
#[tokio::test]
async fn a_store_works_behind_an_arc_of_the_trait() {
    fn shared<T: Send + Sync + 'static>(_: &T) {}
    let store: Arc<dyn CheckpointStore> = Arc::new(MemoryCheckpointStore::new());
    shared(&store);
    conformance::a_replaced_holder_cannot_write(&store).await;
}

/// The refusals a runner meets say what happened and what to do.
#[test]
fn refusals_say_what_to_do() {
    let lease = LeaseToken {
        projection: "balances".into(),
        holder: "runner-a".into(),
        generation: 3,
    };
    assert_eq!(
        CheckpointError::lease_lost(&lease).to_string(),
        "the lease on projection `balances` granted to `runner-a` (generation 3) is no longer \
         held: stop running the projection and acquire its lease again"
    );
    let behind = CheckpointError::NotForward {
        projection: "balances".into(),
        position: 4,
        current: 9,
    };
    assert_eq!(
        behind.to_string(),
        "the checkpoint of projection `balances` is at 9, so saving 4 would not move it \
         forward: save a later position, or reset the checkpoint first"
    );
}
