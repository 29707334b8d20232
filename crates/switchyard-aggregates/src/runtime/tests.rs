//! Interleavings of the runtime that integration tests cannot stage.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::AggregateRuntime;
use crate::Aggregate;
use crate::repo::Repo;
use crate::store::MemoryStore;

#[derive(Default, Serialize, Deserialize)]
struct Counter(u64);

impl Aggregate for Counter {
    type Event = u64;
    const NAME: &'static str = "counter";
    fn apply(&mut self, n: &u64) {
        self.0 += n;
    }
}

fn runtime() -> AggregateRuntime<Counter> {
    AggregateRuntime::new(Repo::event_sourced(Arc::new(MemoryStore::new())))
}

#[tokio::test]
async fn a_command_that_reaches_the_registry_after_shutdown_began_registers_no_aggregate() {
    let runtime = runtime();
    // A command that found the runtime open, then lost the race to `shutdown`: it reaches the
    // registry only once shutdown has emptied it.
    runtime.shutdown().await;
    assert!(runtime.slot_for("late").is_none());
    assert_eq!(runtime.live_count(), 0, "no aggregate was registered");
}
