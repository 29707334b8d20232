//! Events recorded by three releases of one aggregate, read by each later one: on every read
//! of the repo, through the runtime's catch-up, and from the global order.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // Tests fail loudly.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::TryStreamExt;
use serde::{Deserialize, Serialize};
use switchyard_messaging::{Message, Node, Payload, Response, Router, codec};

use switchyard_aggregates::repo::{Repo, RepoError, StepError, UpcastError, Upcasters};
use switchyard_aggregates::store::{
    EventAppender, ExpectedVersion, GlobalReader, MemoryStore, NewEvent, RecordedEvent,
    SnapshotStore,
};
use switchyard_aggregates::{
    Aggregate, AggregateState, CommandResult, DecodedEvent, Events, MessageHandler,
};

/// The first release: a deposit is a bare amount.
mod v1 {
    use serde::{Deserialize, Serialize};

    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
    pub(super) enum AccountEvent {
        Opened,
        Deposited(u64),
    }
}

/// The second: deposits carry a currency.
mod v2 {
    use serde::{Deserialize, Serialize};

    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
    pub(super) enum AccountEvent {
        Opened,
        Deposited { amount: u64, currency: String },
    }
}

/// The third: amounts in cents, and an account has an owner.
mod v3 {
    use serde::{Deserialize, Serialize};

    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
    pub(super) enum AccountEvent {
        Opened { owner: String },
        Deposited { cents: u64, currency: String },
    }
}

fn v1_to_v2(old: v1::AccountEvent) -> v2::AccountEvent {
    match old {
        v1::AccountEvent::Opened => v2::AccountEvent::Opened,
        v1::AccountEvent::Deposited(amount) => v2::AccountEvent::Deposited {
            amount,
            currency: "EUR".into(),
        },
    }
}

fn v2_to_v3(old: v2::AccountEvent) -> v3::AccountEvent {
    match old {
        v2::AccountEvent::Opened => v3::AccountEvent::Opened {
            owner: "unknown".into(),
        },
        v2::AccountEvent::Deposited { amount, currency } => v3::AccountEvent::Deposited {
            cents: amount * 100,
            currency,
        },
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct AccountV1 {
    balance: u64,
}

impl Aggregate for AccountV1 {
    type Event = v1::AccountEvent;
    const NAME: &'static str = "account";
    fn apply(&mut self, event: &v1::AccountEvent) {
        if let v1::AccountEvent::Deposited(amount) = event {
            self.balance += amount;
        }
    }
}

#[derive(Debug, Default)]
struct AccountV2 {
    balance: u64,
    currencies: Vec<String>,
}

impl Aggregate for AccountV2 {
    type Event = v2::AccountEvent;
    const NAME: &'static str = "account";
    const EVENT_SCHEMA_VERSION: u32 = 2;
    fn apply(&mut self, event: &v2::AccountEvent) {
        if let v2::AccountEvent::Deposited { amount, currency } = event {
            self.balance += amount;
            self.currencies.push(currency.clone());
        }
    }
}

/// Its state has the layout of `AccountV1`'s, with another meaning (cents): a snapshot of
/// `AccountV1` would decode as one, and must not be taken for one.
#[derive(Debug, Default, Serialize, Deserialize)]
struct AccountV3 {
    cents: u64,
}

impl Aggregate for AccountV3 {
    type Event = v3::AccountEvent;
    const NAME: &'static str = "account";
    const EVENT_SCHEMA_VERSION: u32 = 3;
    const STATE_SCHEMA_VERSION: u32 = 2;
    fn apply(&mut self, event: &v3::AccountEvent) {
        if let v3::AccountEvent::Deposited { cents, .. } = event {
            self.cents += cents;
        }
    }
}

fn to_v2() -> Upcasters<AccountV2> {
    Upcasters::new().step(1, v1_to_v2)
}

fn to_v3() -> Upcasters<AccountV3> {
    Upcasters::new().step(1, v1_to_v2).step(2, v2_to_v3)
}

/// Commits `events` to aggregate `id` through `repo`, as a command of its own.
async fn record<A: Aggregate>(repo: &Repo<A>, id: &str, events: Vec<A::Event>) {
    let mut state = repo.load(id).await.unwrap().unwrap_or_default();
    repo.commit(
        id,
        &mut state,
        events,
        &Message::new("test"),
        BTreeMap::new(),
    )
    .await
    .unwrap();
}

/// A store holding account `a` as the first release recorded it: opened, 5 and 7 deposited.
async fn store_of_v1() -> Arc<MemoryStore> {
    let store = Arc::new(MemoryStore::new());
    let repo = Repo::<AccountV1>::event_sourced(store.clone());
    record(&repo, "a", vec![v1::AccountEvent::Opened]).await;
    record(
        &repo,
        "a",
        vec![
            v1::AccountEvent::Deposited(5),
            v1::AccountEvent::Deposited(7),
        ],
    )
    .await;
    store
}

fn v3_deposit(cents: u64) -> v3::AccountEvent {
    v3::AccountEvent::Deposited {
        cents,
        currency: "EUR".into(),
    }
}

fn v3_history() -> Vec<v3::AccountEvent> {
    vec![
        v3::AccountEvent::Opened {
            owner: "unknown".into(),
        },
        v3_deposit(500),
        v3_deposit(700),
    ]
}

fn events_of<E>(decoded: &[DecodedEvent<E>]) -> Vec<&E> {
    decoded.iter().map(|d| &d.event).collect()
}

#[tokio::test]
async fn stored_v1_events_load_as_v2_through_one_step() {
    let store = store_of_v1().await;
    let repo = Repo::<AccountV2>::event_sourced(store).with_upcasters(to_v2());

    let account = repo.load_existing("a").await.unwrap();
    assert_eq!(account.version, 2);
    assert_eq!(account.state.balance, 12);
    assert_eq!(account.state.currencies, ["EUR", "EUR"]);
    let events = repo.events("a").await.unwrap();
    assert_eq!(
        events[1].event,
        v2::AccountEvent::Deposited {
            amount: 5,
            currency: "EUR".into()
        }
    );
    assert_eq!(
        events[1].schema_version, 1,
        "the version it was recorded with"
    );
}

#[tokio::test]
async fn stored_v1_events_read_as_v3_through_a_chain_of_two_on_every_read() {
    let store = store_of_v1().await;
    // Pages of one event: the stream reads each event in a read of its own.
    let repo = Repo::<AccountV3>::event_sourced(store)
        .with_upcasters(to_v3())
        .with_page_size(1);

    let account = repo.load_existing("a").await.unwrap();
    assert_eq!((account.state.cents, account.version), (1200, 2));
    let all = repo.events("a").await.unwrap();
    assert_eq!(events_of(&all), v3_history().iter().collect::<Vec<_>>());
    let page = repo.events_page("a", 1, 1).await.unwrap();
    assert_eq!(events_of(&page), [&v3_deposit(500)]);
    let streamed: Vec<_> = repo.event_stream("a", 1).try_collect().await.unwrap();
    assert_eq!(events_of(&streamed), [&v3_deposit(500), &v3_deposit(700)]);
}

#[tokio::test]
async fn a_stream_written_by_three_releases_reads_as_the_latest() {
    let store = store_of_v1().await;
    let v2 = Repo::<AccountV2>::event_sourced(store.clone()).with_upcasters(to_v2());
    record(
        &v2,
        "a",
        vec![v2::AccountEvent::Deposited {
            amount: 1,
            currency: "CHF".into(),
        }],
    )
    .await;
    let v3 = Repo::<AccountV3>::event_sourced(store).with_upcasters(to_v3());
    record(&v3, "a", vec![v3_deposit(25)]).await;

    let events = v3.events("a").await.unwrap();
    let versions: Vec<u32> = events.iter().map(|e| e.schema_version).collect();
    assert_eq!(versions, [1, 1, 1, 2, 3]);
    assert_eq!(
        events[3].event,
        v3::AccountEvent::Deposited {
            cents: 100,
            currency: "CHF".into()
        }
    );
    assert_eq!(v3.load_existing("a").await.unwrap().state.cents, 1325);
}

fn deposit(account: &AccountV3, msg: &Message) -> CommandResult<v3::AccountEvent> {
    let cents: u64 = msg.request()?;
    // The reply is the balance the command saw, plus its own deposit.
    Ok(Events::one(v3_deposit(cents)).reply_with(&(account.cents + cents)))
}

#[tokio::test]
async fn the_runtime_catches_up_on_v1_events_through_the_upcasters() {
    let store = store_of_v1().await;
    let repo = Repo::<AccountV3>::event_sourced(store.clone()).with_upcasters(to_v3());
    let accounts = MessageHandler::new(repo);
    let node = Node::new("bank");
    node.register(
        Router::new("accounts")
            .service("deposit", accounts.on_existing(deposit))
            .authorize(|_| Ok(())),
    )
    .unwrap();
    let send = |cents: u64| {
        let message = Message::new("deposit")
            .with_aggregate_id("a")
            .with_request(&cents);
        let node = node.clone();
        async move { node.dispatch(message).await.response().cloned() }
    };
    let answered = |balance: u64, version: i64| Response::OkAt {
        payload: Some(Payload::encode(&balance).unwrap()),
        version,
    };

    // Loaded through the upcasters.
    assert_eq!(send(100).await, Some(answered(1300, 3)));
    // The first release, still running elsewhere with the aggregate loaded at version 3,
    // records a deposit behind the runtime's back: the next command conflicts, and the runtime
    // catches up on that v1 event.
    let mut stale = AggregateState::<AccountV1> {
        version: 3,
        ..Default::default()
    };
    Repo::<AccountV1>::event_sourced(store)
        .commit(
            "a",
            &mut stale,
            vec![v1::AccountEvent::Deposited(2)],
            &Message::new("deposit"),
            BTreeMap::new(),
        )
        .await
        .unwrap();
    assert_eq!(send(1).await, Some(answered(1501, 5)));
}

#[tokio::test]
async fn a_snapshot_of_an_older_state_schema_is_ignored_and_the_stream_upcast() {
    let store = Arc::new(MemoryStore::new());
    let v1 = Repo::<AccountV1>::event_sourced(store.clone()).with_snapshots(store.clone(), 1);
    record(&v1, "a", vec![v1::AccountEvent::Opened]).await;
    record(&v1, "a", vec![v1::AccountEvent::Deposited(5)]).await;
    assert!(
        SnapshotStore::load_snapshot(&*store, "account-a")
            .await
            .unwrap()
            .is_some(),
        "the first release left a snapshot"
    );

    let v3 = Repo::<AccountV3>::event_sourced(store.clone())
        .with_snapshots(store, 1)
        .with_upcasters(to_v3());
    // Taken for one of its own, the snapshot would read 5 cents.
    let account = v3.load_existing("a").await.unwrap();
    assert_eq!((account.state.cents, account.version), (500, 1));
}

#[tokio::test]
async fn without_upcasters_an_older_event_fails_the_read_naming_it() {
    let store = store_of_v1().await;
    let repo = Repo::<AccountV3>::event_sourced(store);

    let Err(RepoError::Upcast(UpcastError::MissingStep {
        event,
        recorded,
        current,
        missing,
    })) = repo.load("a").await
    else {
        panic!("an event without a way to the current version must fail the load");
    };
    assert_eq!((recorded, current, missing), (1, 3, 1));
    assert_eq!(
        (
            &*event.stream,
            event.version,
            event.position,
            &*event.event_type
        ),
        ("account-a", 0, 1, "Opened")
    );
}

#[tokio::test]
async fn a_hole_in_the_chain_is_an_error_naming_the_missing_step() {
    let store = store_of_v1().await;
    let repo =
        Repo::<AccountV3>::event_sourced(store).with_upcasters(Upcasters::new().step(1, v1_to_v2));

    let error = repo.events("a").await.unwrap_err();
    assert!(
        matches!(
            error,
            RepoError::Upcast(UpcastError::MissingStep { missing: 2, .. })
        ),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        "no upcaster takes event 0 of stream `account-a` (`Opened`, position 1) from schema \
         version 2 to 3: it was recorded at version 1 and is read at 3; register a step from \
         version 2"
    );
}

#[derive(Debug, thiserror::Error)]
#[error("deposits of 7 are not allowed")]
struct Unlucky;

#[tokio::test]
async fn a_step_that_fails_fails_the_read_with_its_error() {
    let store = store_of_v1().await;
    let upcasters = Upcasters::<AccountV2>::new().try_step(1, |old: v1::AccountEvent| {
        if old == v1::AccountEvent::Deposited(7) {
            return Err(Unlucky);
        }
        Ok(v1_to_v2(old))
    });
    let repo = Repo::<AccountV2>::event_sourced(store).with_upcasters(upcasters);

    let Err(RepoError::Upcast(UpcastError::Failed {
        event,
        from,
        to,
        source: StepError::Refused(source),
    })) = repo.load("a").await
    else {
        panic!("a refused event must fail the load");
    };
    assert_eq!((event.version, from, to), (2, 1, 2));
    assert!(source.is::<Unlucky>());
}

#[tokio::test]
async fn a_step_whose_old_type_does_not_fit_the_bytes_fails_the_read() {
    let store = store_of_v1().await;
    // The step decodes the v2 layout from bytes of v1.
    let repo = Repo::<AccountV3>::event_sourced(store)
        .with_upcasters(Upcasters::new().step(1, v2_to_v3).step(2, v2_to_v3));

    let error = repo.events_page("a", 1, 1).await.unwrap_err();
    assert!(
        matches!(
            error,
            RepoError::Upcast(UpcastError::Failed {
                from: 1,
                source: StepError::Decode(_),
                ..
            })
        ),
        "{error:?}"
    );
}

#[tokio::test]
async fn an_event_newer_than_the_code_fails_the_read() {
    let store = Arc::new(MemoryStore::new());
    record(
        &Repo::<AccountV3>::event_sourced(store.clone()),
        "a",
        vec![v3_deposit(1)],
    )
    .await;

    let older = Repo::<AccountV2>::event_sourced(store).with_upcasters(to_v2());
    let error = older.load("a").await.unwrap_err();
    assert!(
        matches!(
            error,
            RepoError::Upcast(UpcastError::Newer {
                recorded: 3,
                current: 2,
                ..
            })
        ),
        "{error:?}"
    );
}

/// The global order's events of account `a`, as a subscriber gets them.
async fn global_order(store: &MemoryStore) -> Vec<RecordedEvent> {
    store.read_all(1, 100).await.unwrap()
}

#[tokio::test]
async fn events_of_the_global_order_upcast_and_decode_as_the_repo_reads_them() {
    let store = store_of_v1().await;
    let upcasters = to_v3();

    let mut decoded = Vec::new();
    for recorded in global_order(&store).await {
        let upcast = upcasters.upcast(recorded.clone()).unwrap();
        assert_eq!(upcast.schema_version, 3);
        assert_eq!(
            (&upcast.stream, upcast.position, &upcast.event_type),
            (&recorded.stream, recorded.position, &recorded.event_type)
        );
        let event: v3::AccountEvent = codec::decode(&upcast.data).unwrap();
        assert_eq!(
            upcasters.upcast(upcast).unwrap().data,
            codec::encode(&event).unwrap()
        );
        decoded.push(upcasters.decode(recorded).unwrap().event);
    }
    assert_eq!(decoded, v3_history());
}

#[tokio::test]
async fn an_event_at_the_current_version_is_not_touched() {
    let store = Arc::new(MemoryStore::new());
    // A step that would fail on anything: it must not run.
    let failing = Upcasters::<AccountV3>::new()
        .try_step(1, |_: v1::AccountEvent| Err::<v2::AccountEvent, _>("never"))
        .try_step(2, |_: v2::AccountEvent| Err::<v3::AccountEvent, _>("never"));
    let repo = Repo::<AccountV3>::event_sourced(store.clone()).with_upcasters(failing.clone());
    record(&repo, "a", vec![v3_deposit(9)]).await;

    let recorded = global_order(&store).await.remove(0);
    assert_eq!(failing.upcast(recorded.clone()).unwrap(), recorded);
    assert_eq!(repo.load_existing("a").await.unwrap().state.cents, 9);
}

#[derive(Debug, Deserialize)]
struct LegacyOpened {
    owner: String,
}

#[tokio::test]
async fn a_step_for_one_event_type_wins_over_the_step_for_every_type() {
    let store = store_of_v1().await;
    // Another writer recorded `Opened` at version 1 in a layout of its own.
    let legacy = NewEvent {
        event_type: "LegacyOpened".into(),
        schema_version: 1,
        data: codec::encode(&("bob",)).unwrap().into(),
    };
    EventAppender::append(
        &*store,
        "account-b",
        ExpectedVersion::NoStream,
        vec![legacy],
        Default::default(),
    )
    .await
    .unwrap();

    let upcasters = to_v2().step_for("LegacyOpened", 1, |old: LegacyOpened| {
        assert_eq!(old.owner, "bob");
        v2::AccountEvent::Opened
    });
    let repo = Repo::<AccountV2>::event_sourced(store).with_upcasters(upcasters);
    assert_eq!(
        events_of(&repo.events("b").await.unwrap()),
        [&v2::AccountEvent::Opened]
    );
    // The other types still take the step for every type.
    assert_eq!(repo.load_existing("a").await.unwrap().state.balance, 12);
}

/// The text of the panic `register` raises.
fn panic_of(register: impl FnOnce() + std::panic::UnwindSafe) -> String {
    let panic = std::panic::catch_unwind(register).unwrap_err();
    panic.downcast_ref::<String>().cloned().unwrap_or_default()
}

#[test]
fn a_step_registered_twice_is_refused_as_the_program_sets_up() {
    let text = panic_of(|| drop(to_v3().step(2, v2_to_v3)));
    assert_eq!(
        text,
        "upcaster of `account` from schema version 2 for every event type registered twice"
    );
    let text = panic_of(|| {
        drop(
            to_v3()
                .step_for("Opened", 1, v1_to_v2)
                .step_for("Opened", 1, v1_to_v2),
        );
    });
    assert_eq!(
        text,
        "upcaster of `account` from schema version 1 for `Opened` events registered twice"
    );
}

#[test]
fn a_step_from_the_current_version_or_later_is_refused_as_the_program_sets_up() {
    let text = panic_of(|| drop(Upcasters::<AccountV2>::new().step(2, v2_to_v3)));
    assert_eq!(
        text,
        "upcaster of `account` from schema version 2: the aggregate's EVENT_SCHEMA_VERSION is \
         2, so a step must start below it"
    );
}

#[test]
fn upcasters_show_their_steps() {
    let upcasters = to_v2().step_for("LegacyOpened", 1, |old: LegacyOpened| {
        let _ = old.owner;
        v2::AccountEvent::Opened
    });
    assert_eq!(
        format!("{upcasters:?}"),
        r#"Upcasters { steps: {1: ["LegacyOpened", "*"]} }"#
    );
}
