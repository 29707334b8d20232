//! A test aggregate, a projection recording what it was handed, and appending helpers.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use backon::ExponentialBuilder;
use serde::{Deserialize, Serialize};
use switchyard_aggregates::store::{
    EventAppender, EventMetadata, ExpectedVersion, GlobalReader, NewEvent,
};
use switchyard_aggregates::{Aggregate, DecodedEvent};
use switchyard_projections::{BoxError, Projection};

pub(crate) use crate::account::{Account, AccountEvent, PATIENCE};

/// Waits for `condition`, checking every few milliseconds, for [`PATIENCE`] at most.
pub(crate) async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !condition() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "gave up waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Retries after a millisecond, a few times.
pub(crate) fn fast_retry() -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(1))
        .with_max_delay(Duration::from_millis(2))
        .with_max_times(3)
}

#[derive(Default)]
pub(crate) struct Order;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct Placed(pub(crate) u64);

impl Aggregate for Order {
    type Event = Placed;
    const NAME: &'static str = "order";
    fn apply(&mut self, _: &Placed) {}
}

/// What the projection reads: both aggregates' events.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Ledger {
    Account(AccountEvent),
    Order(Placed),
}

impl From<AccountEvent> for Ledger {
    fn from(event: AccountEvent) -> Self {
        Self::Account(event)
    }
}

impl From<Placed> for Ledger {
    fn from(event: Placed) -> Self {
        Self::Order(event)
    }
}

/// What a [`Recorder`] was handed, shared with the test.
#[derive(Clone, Default)]
pub(crate) struct Seen(Arc<Mutex<SeenInner>>);

#[derive(Default)]
struct SeenInner {
    batches: Vec<Vec<(u64, Ledger)>>,
    failures: usize,
    hung: bool,
}

impl Seen {
    /// Every event handed out successfully, in order, with its position.
    pub(crate) fn events(&self) -> Vec<(u64, Ledger)> {
        self.0
            .lock()
            .unwrap()
            .batches
            .iter()
            .flatten()
            .cloned()
            .collect()
    }

    pub(crate) fn positions(&self) -> Vec<u64> {
        self.events().into_iter().map(|(p, _)| p).collect()
    }

    pub(crate) fn batches(&self) -> usize {
        self.0.lock().unwrap().batches.len()
    }

    /// Whether it hangs in a batch.
    pub(crate) fn hung(&self) -> bool {
        self.0.lock().unwrap().hung
    }

    pub(crate) fn failures(&self) -> usize {
        self.0.lock().unwrap().failures
    }
}

/// Records each batch; fails `fail` times first (or forever with `usize::MAX`); after
/// `hang_after` batches, hangs forever in the next (a runner dying mid-batch).
pub(crate) struct Recorder {
    pub(crate) seen: Seen,
    pub(crate) fail: usize,
    pub(crate) hang_after: usize,
}

impl Recorder {
    pub(crate) fn new(seen: &Seen) -> Self {
        Self {
            seen: seen.clone(),
            fail: 0,
            hang_after: usize::MAX,
        }
    }
}

impl Projection for Recorder {
    type Event = Ledger;

    async fn apply(&mut self, batch: &[DecodedEvent<Ledger>]) -> Result<(), BoxError> {
        if self.seen.batches() == self.hang_after {
            self.seen.0.lock().unwrap().hung = true;
            std::future::pending::<()>().await;
        }
        let mut seen = self.seen.0.lock().unwrap();
        if self.fail > 0 {
            self.fail -= 1;
            seen.failures += 1;
            return Err("the read model is down".into());
        }
        seen.batches.push(
            batch
                .iter()
                .map(|e| (e.position, e.event.clone()))
                .collect(),
        );
        Ok(())
    }

    async fn reset(&mut self) -> Result<(), BoxError> {
        self.seen.0.lock().unwrap().batches.clear();
        Ok(())
    }
}

pub(crate) async fn deposit(store: &impl EventAppender, account: u32, amount: u64) {
    deposits(store, account, [amount]).await;
}

/// Deposits of `amounts` into `account`, in one append: one transaction.
pub(crate) async fn deposits(
    store: &impl EventAppender,
    account: u32,
    amounts: impl IntoIterator<Item = u64>,
) {
    let events = amounts
        .into_iter()
        .map(|amount| encoded("Deposited", &AccountEvent::Deposited(amount)))
        .collect();
    append(store, &format!("account-{account}"), events).await;
}

pub(crate) async fn place(store: &impl EventAppender, order: u32, n: u64) {
    append(
        store,
        &format!("order-{order}"),
        vec![encoded("Placed", &Placed(n))],
    )
    .await;
}

/// Something neither aggregate reads.
pub(crate) async fn unrelated(store: &impl EventAppender) {
    append(store, "audit-1", vec![encoded("Noted", &1u8)]).await;
}

/// `event`, encoded as the aggregates encode theirs, as an event of type `event_type`.
fn encoded(event_type: &str, event: &impl Serialize) -> NewEvent {
    NewEvent {
        event_type: event_type.to_owned().into(),
        schema_version: 1,
        data: switchyard_messaging::codec::encode(event).unwrap().into(),
    }
}

async fn append(store: &impl EventAppender, stream: &str, events: Vec<NewEvent>) {
    store
        .append(
            stream,
            ExpectedVersion::Any,
            events,
            EventMetadata::default(),
        )
        .await
        .unwrap();
}

pub(crate) async fn head(store: &impl GlobalReader) -> u64 {
    store.head().await.unwrap()
}
