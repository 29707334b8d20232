//! The account aggregate whose deposits the projection tests read, and the bound on their
//! waits; shared by the test binaries (`#[path]`-included).

use std::time::Duration;

use serde::{Deserialize, Serialize};
use switchyard_aggregates::Aggregate;

/// The bound on every wait of these tests: generous, never a timing assertion.
pub(crate) const PATIENCE: Duration = Duration::from_secs(20);

#[derive(Default)]
pub(crate) struct Account;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) enum AccountEvent {
    Deposited(u64),
}

impl Aggregate for Account {
    type Event = AccountEvent;
    const NAME: &'static str = "account";
    fn apply(&mut self, _: &AccountEvent) {}
}
