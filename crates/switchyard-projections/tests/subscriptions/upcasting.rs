//! Events recorded by older releases of an aggregate, read through a subscription and through
//! a projection runner, upcast with the chain the aggregate's repo reads them with: while
//! catching up and live.

use serde::{Deserialize, Serialize};
use switchyard_aggregates::store::{
    EventAppender, EventMetadata, ExpectedVersion, MemoryStore, NewEvent,
};
use switchyard_aggregates::{Aggregate, DecodedEvent, RepoError, Upcasters};
use switchyard_messaging::codec;
use switchyard_projections::{
    BoxError, MemoryCheckpointStore, Projection, ProjectionRunner, RunnerError, Subscription,
};

/// The first release: a deposit is a bare amount.
mod v1 {
    #[derive(serde::Serialize, serde::Deserialize)]
    pub(super) enum AccountEvent {
        Opened,
        Deposited(u64),
    }
}

/// The second: deposits carry a currency.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
enum V2Event {
    Opened,
    Deposited { amount: u64, currency: String },
}

/// The third: amounts in cents.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
enum V3Event {
    Opened,
    Deposited { cents: u64, currency: String },
}

/// An account as the second release folds it (the fold plays no part here).
#[derive(Default)]
struct AccountV2;

impl Aggregate for AccountV2 {
    type Event = V2Event;
    const NAME: &'static str = "account";
    const EVENT_SCHEMA_VERSION: u32 = 2;
    fn apply(&mut self, _: &V2Event) {}
}

/// And as the third.
#[derive(Default)]
struct AccountV3;

impl Aggregate for AccountV3 {
    type Event = V3Event;
    const NAME: &'static str = "account";
    const EVENT_SCHEMA_VERSION: u32 = 3;
    fn apply(&mut self, _: &V3Event) {}
}

fn v1_to_v2(old: v1::AccountEvent) -> V2Event {
    match old {
        v1::AccountEvent::Opened => V2Event::Opened,
        v1::AccountEvent::Deposited(amount) => V2Event::Deposited {
            amount,
            currency: "EUR".into(),
        },
    }
}

fn v2_to_v3(old: V2Event) -> V3Event {
    match old {
        V2Event::Opened => V3Event::Opened,
        V2Event::Deposited { amount, currency } => V3Event::Deposited {
            cents: amount * 100,
            currency,
        },
    }
}

/// Appends `event` to account `a` as a release at `schema_version` records it.
async fn append(
    store: &MemoryStore,
    event_type: &str,
    schema_version: u32,
    event: &impl Serialize,
) {
    let event = NewEvent {
        event_type: event_type.to_owned().into(),
        schema_version,
        data: codec::encode(event).unwrap().into(),
    };
    store
        .append(
            "account-a",
            ExpectedVersion::Any,
            vec![event],
            EventMetadata::default(),
        )
        .await
        .unwrap();
}

fn eur(cents: u64) -> V3Event {
    V3Event::Deposited {
        cents,
        currency: "EUR".into(),
    }
}

#[tokio::test]
async fn stored_v1_events_read_through_a_subscription_as_v2_and_as_v3() {
    let store = MemoryStore::new();
    append(&store, "Opened", 1, &v1::AccountEvent::Opened).await;
    append(&store, "Deposited", 1, &v1::AccountEvent::Deposited(5)).await;
    let to_v2 = Upcasters::<AccountV2>::new().step(1, v1_to_v2);
    let to_v3 = Upcasters::<AccountV3>::new()
        .step(1, v1_to_v2)
        .step(2, v2_to_v3);
    let mut subscription = Subscription::builder(store.clone())
        .aggregate_type("account")
        .build()
        .await
        .unwrap();

    // Catching up.
    let opened = subscription.next().await.unwrap();
    assert_eq!(to_v3.decode(opened).unwrap().event, V3Event::Opened);
    let deposited = subscription.next().await.unwrap();
    assert_eq!(
        to_v2.decode(deposited.clone()).unwrap().event,
        V2Event::Deposited {
            amount: 5,
            currency: "EUR".into()
        }
    );
    let upcast = to_v3.upcast(deposited).unwrap();
    assert_eq!(upcast.schema_version, 3);
    assert_eq!(codec::decode::<V3Event>(&upcast.data).unwrap(), eur(500));

    // Live: the first release, still running, and the third write on.
    append(&store, "Deposited", 1, &v1::AccountEvent::Deposited(7)).await;
    append(&store, "Deposited", 3, &eur(1)).await;
    let old = to_v3.decode(subscription.next().await.unwrap()).unwrap();
    assert_eq!((old.event, old.schema_version), (eur(700), 1));
    let new = to_v3.decode(subscription.next().await.unwrap()).unwrap();
    assert_eq!((new.event, new.schema_version), (eur(1), 3));
}

/// What a runner handed its projection, as the third release reads it.
#[derive(Clone, Default)]
struct Seen(std::sync::Arc<std::sync::Mutex<Vec<(V3Event, u32)>>>);

impl Projection for Seen {
    type Event = V3Event;

    async fn apply(&mut self, batch: &[DecodedEvent<V3Event>]) -> Result<(), BoxError> {
        let mut seen = self.0.lock().map_err(|_| "poisoned")?;
        seen.extend(batch.iter().map(|e| (e.event.clone(), e.schema_version)));
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runner_reads_stored_v1_events_as_v3_through_the_aggregates_upcasters() {
    let store = MemoryStore::new();
    append(&store, "Opened", 1, &v1::AccountEvent::Opened).await;
    append(&store, "Deposited", 1, &v1::AccountEvent::Deposited(5)).await;
    let to_v3 = Upcasters::<AccountV3>::new()
        .step(1, v1_to_v2)
        .step(2, v2_to_v3);
    let seen = Seen::default();
    let runner = ProjectionRunner::builder(
        "deposits",
        seen.clone(),
        store.clone(),
        MemoryCheckpointStore::new(),
    )
    .aggregate_with(to_v3)
    .start()
    .unwrap();
    // Live: a v1 writer still running, and the third release.
    append(&store, "Deposited", 1, &v1::AccountEvent::Deposited(7)).await;
    append(&store, "Deposited", 3, &eur(1)).await;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    runner.wait_for(4, deadline).await.unwrap();
    runner.stop().await.unwrap();
    assert_eq!(
        *seen.0.lock().unwrap(),
        [
            (V3Event::Opened, 1),
            (eur(500), 1),
            (eur(700), 1),
            (eur(1), 3)
        ]
    );
}

/// Without the upcasters, an old event is refused, not decoded as if it were current.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runner_without_upcasters_stops_on_an_older_event() {
    let store = MemoryStore::new();
    append(&store, "Deposited", 1, &v1::AccountEvent::Deposited(5)).await;
    let seen = Seen::default();
    let runner = ProjectionRunner::builder(
        "deposits",
        seen.clone(),
        store.clone(),
        MemoryCheckpointStore::new(),
    )
    .aggregate::<AccountV3>()
    .start()
    .unwrap();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while !runner.is_finished() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    match runner.stop().await {
        Err(RunnerError::Decode { source, .. }) => {
            assert!(matches!(*source, RepoError::Upcast(_)), "{source:?}");
        }
        other => panic!("expected a decode error, got {:?}", other.map(|_| ())),
    }
    assert!(seen.0.lock().unwrap().is_empty());
}
