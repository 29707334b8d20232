//! Snapshots, state-based aggregates and event metadata.

use std::sync::Arc;

use proptest::prelude::*;
use serde::{Deserialize, Serialize};
use switchyard_aggregates::repo::Repo;
use switchyard_aggregates::store::{
    EventReader, GlobalReader, MemoryStore, SnapshotStore, StateStore, StoredState,
};
use switchyard_aggregates::{Aggregate, AggregateRuntime, AggregateState, MessageHandler};
use switchyard_messaging::Message;

use crate::fixture::*;

#[tokio::test]
async fn snapshots_are_taken_and_loading_starts_from_them() {
    let store = MemoryStore::new();
    let repo = Repo::<Account>::event_sourced(Arc::new(store.clone()))
        .with_snapshots(Arc::new(store.clone()), 10);
    let mut state = AggregateState::default();
    for n in 0..25 {
        repo.commit(
            "s",
            &mut state,
            vec![AccountEvent::Deposited(n)],
            &Message::new("d"),
            Default::default(),
        )
        .await
        .unwrap();
    }
    let snapshot = store.load_snapshot("account-s").await.unwrap().unwrap();
    assert_eq!(snapshot.version, 19);
    let loaded = repo.load("s").await.unwrap().unwrap();
    assert_eq!(loaded.version, 24);
    assert_eq!(loaded.state.balance, (0..25).sum::<u64>());
    assert_eq!(loaded.state, state.state);
}

/// The same aggregate after a change of its state's layout.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct AccountV2 {
    balance: u64,
    deposits: u32,
}

impl Aggregate for AccountV2 {
    type Event = AccountEvent;
    const NAME: &'static str = "account";
    const STATE_SCHEMA_VERSION: u32 = 2;
    fn apply(&mut self, event: &AccountEvent) {
        if let AccountEvent::Deposited(n) = event {
            self.balance += n;
            self.deposits += 1;
        }
    }
}

#[tokio::test]
async fn a_snapshot_of_another_schema_or_unreadable_is_ignored() {
    let store = MemoryStore::new();
    let v1 = Repo::<Account>::event_sourced(Arc::new(store.clone()))
        .with_snapshots(Arc::new(store.clone()), 2);
    let mut state = AggregateState::default();
    for n in 1..=4 {
        v1.commit(
            "x",
            &mut state,
            vec![AccountEvent::Deposited(n)],
            &Message::new("d"),
            Default::default(),
        )
        .await
        .unwrap();
    }
    assert_eq!(
        store
            .load_snapshot("account-x")
            .await
            .unwrap()
            .unwrap()
            .schema_version,
        1
    );
    let v2 = Repo::<AccountV2>::event_sourced(Arc::new(store.clone()))
        .with_snapshots(Arc::new(store.clone()), 2);
    let loaded = v2.load("x").await.unwrap().unwrap();
    assert_eq!(
        (loaded.state.balance, loaded.state.deposits, loaded.version),
        (10, 4, 3)
    );

    store
        .save_snapshot(
            "account-x",
            StoredState {
                version: 3,
                schema_version: 1,
                data: vec![1, 2].into(),
            },
        )
        .await
        .unwrap();
    let loaded = v1.load("x").await.unwrap().unwrap();
    assert_eq!((loaded.state.balance, loaded.version), (10, 3));
}

#[tokio::test]
async fn a_state_based_aggregate_keeps_its_state_not_events() {
    let store = MemoryStore::new();
    // The one-call wiring, with the store taken by value.
    let bank = bank_served_by(store.clone(), MessageHandler::state_based(store.clone()));
    assert_eq!(
        bank.node.dispatch(opening("st-1")).await.response(),
        Some(&created("st-1", 0))
    );
    let deposit = command("deposit", "st-1", 9).with_id("dep-st");
    assert_eq!(
        bank.node.dispatch(deposit.clone()).await.response(),
        Some(&ok_at(1))
    );
    assert!(
        store.read_all(0, 10).await.unwrap().is_empty(),
        "no events recorded"
    );
    assert!(!store.has_stream("account-st-1").await.unwrap());
    let stored = store.load_state("account-st-1").await.unwrap().unwrap();
    assert_eq!(stored.version, 1);
    bank.accounts.runtime().unload("st-1").await;
    assert_eq!(balance_of(&bank, "st-1").await, 9);
    // Idempotency survives the reload: the processed ids are part of the state.
    assert_eq!(
        bank.node.dispatch(deposit).await.response(),
        Some(&ok_at(1))
    );
    assert_eq!(balance_of(&bank, "st-1").await, 9);
}

#[tokio::test]
async fn events_carry_the_message_ids_and_user_metadata() {
    let bank = bank();
    let open = opening("md-1").with_id("m-1").with_correlation_id("c-1");
    bank.node.dispatch(open).await;
    let events = bank.store.read_all(0, 10).await.unwrap();
    let metadata = &events[0].metadata;
    assert_eq!(metadata.message_id, "m-1");
    assert_eq!(metadata.correlation_id, "c-1");
    assert_eq!(metadata.causation_id, "c-1");
    assert_eq!(metadata.user.get("app").map(String::as_str), Some("tests"));
    assert_eq!(&*events[0].event_type, "Opened");
}

proptest! {
    /// Loading from a snapshot plus the tail gives the state a full replay gives.
    #[test]
    fn snapshot_and_tail_equal_a_full_replay(amounts in proptest::collection::vec(1..100_u64, 1..40), every in 1..8_u64) {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(async {
            let store = MemoryStore::new();
            let plain = Repo::<Account>::event_sourced(Arc::new(store.clone()));
            let snapshotting = plain.clone().with_snapshots(Arc::new(store.clone()), every);
            let mut state = AggregateState::default();
            for amount in &amounts {
                snapshotting
                    .commit("p", &mut state, vec![AccountEvent::Deposited(*amount)], &Message::new("d"), Default::default())
                    .await
                    .unwrap();
            }
            let replayed = plain.load("p").await.unwrap().unwrap();
            let from_snapshot = snapshotting.load("p").await.unwrap().unwrap();
            prop_assert_eq!(&replayed.state, &from_snapshot.state);
            prop_assert_eq!(replayed.version, from_snapshot.version);
            prop_assert_eq!(replayed.state.balance, amounts.iter().sum::<u64>());
            Ok(())
        })?;
    }
}

#[tokio::test]
async fn a_snapshot_from_before_a_soft_delete_is_not_used() {
    use switchyard_aggregates::store::{DeleteMode, ExpectedVersion};
    let store = MemoryStore::new();
    let repo = Repo::<Account>::event_sourced(Arc::new(store.clone()))
        .with_snapshots(Arc::new(store.clone()), 2);
    let mut state = AggregateState::default();
    for n in 1..=4 {
        repo.commit(
            "sd",
            &mut state,
            vec![AccountEvent::Deposited(n)],
            &Message::new("d"),
            Default::default(),
        )
        .await
        .unwrap();
    }
    repo.delete("sd", DeleteMode::Soft, ExpectedVersion::Exactly(3))
        .await
        .unwrap();
    assert!(repo.load("sd").await.unwrap().is_none());
    // The stream continues after the deletion; only the new event is visible.
    let mut old = state.clone();
    repo.commit(
        "sd",
        &mut old,
        vec![AccountEvent::Deposited(100)],
        &Message::new("d"),
        Default::default(),
    )
    .await
    .unwrap();
    let loaded = repo.load("sd").await.unwrap().unwrap();
    assert_eq!((loaded.state.balance, loaded.version), (100, 4));
}

#[tokio::test]
async fn a_hard_delete_removes_the_snapshot_from_a_separate_snapshot_store() {
    use switchyard_aggregates::store::{DeleteMode, ExpectedVersion};
    let events = MemoryStore::new();
    let snapshots = MemoryStore::new();
    let repo = Repo::<Account>::event_sourced(Arc::new(events.clone()))
        .with_snapshots(Arc::new(snapshots.clone()), 2);
    let mut state = AggregateState::default();
    for n in 1..=4 {
        repo.commit(
            "hd",
            &mut state,
            vec![AccountEvent::Deposited(n)],
            &Message::new("d"),
            Default::default(),
        )
        .await
        .unwrap();
    }
    assert!(
        snapshots
            .load_snapshot("account-hd")
            .await
            .unwrap()
            .is_some()
    );
    repo.delete("hd", DeleteMode::Hard, ExpectedVersion::Exactly(3))
        .await
        .unwrap();
    assert_eq!(snapshots.load_snapshot("account-hd").await.unwrap(), None);

    // Created again, past the old snapshot's version: loading must not start from it.
    let mut fresh = AggregateState::default();
    for _ in 1..=5 {
        repo.commit(
            "hd",
            &mut fresh,
            vec![AccountEvent::Deposited(100)],
            &Message::new("d"),
            Default::default(),
        )
        .await
        .unwrap();
    }
    let loaded = repo.load("hd").await.unwrap().unwrap();
    assert_eq!((loaded.state.balance, loaded.version), (500, 4));
}

#[tokio::test]
async fn deleting_a_state_based_aggregate_removes_its_state() {
    use switchyard_aggregates::store::{DeleteMode, ExpectedVersion};
    use switchyard_messaging::Response;
    let store = MemoryStore::new();
    let runtime = AggregateRuntime::new(Repo::<Account>::state_based(Arc::new(store.clone())));
    let bank = bank_with(store.clone(), runtime);
    bank.node.dispatch(opening("sd-1")).await;
    bank.node.dispatch(command("deposit", "sd-1", 5)).await;

    let stale = bank
        .accounts
        .delete_stream("sd-1", DeleteMode::Soft, ExpectedVersion::Exactly(0))
        .await;
    assert!(
        matches!(
            stale,
            Err(switchyard_aggregates::RepoError::Conflict {
                expected: 0,
                actual: Some(1)
            })
        ),
        "{stale:?}"
    );
    bank.accounts
        .delete_stream("sd-1", DeleteMode::Soft, ExpectedVersion::Exactly(1))
        .await
        .unwrap();
    assert_eq!(store.load_state("account-sd-1").await.unwrap(), None);
    assert_eq!(
        bank.node
            .dispatch(command("deposit", "sd-1", 1))
            .await
            .response(),
        Some(&Response::NotFound { id: "sd-1".into() })
    );
    assert_eq!(
        bank.node.dispatch(opening("sd-1")).await.response(),
        Some(&created("sd-1", 0)),
        "created again from scratch"
    );
}

/// A snapshot store whose deletes fail (its backend is down for writes).
struct OldSnapshots(MemoryStore);

impl SnapshotStore for OldSnapshots {
    fn save_snapshot<'a>(
        &'a self,
        stream: &'a str,
        snapshot: StoredState,
    ) -> futures::future::BoxFuture<'a, Result<(), switchyard_aggregates::store::StoreError>> {
        self.0.save_snapshot(stream, snapshot)
    }

    fn load_snapshot<'a>(
        &'a self,
        stream: &'a str,
    ) -> futures::future::BoxFuture<
        'a,
        Result<Option<StoredState>, switchyard_aggregates::store::StoreError>,
    > {
        self.0.load_snapshot(stream)
    }

    fn delete_snapshot<'a>(
        &'a self,
        _stream: &'a str,
    ) -> futures::future::BoxFuture<'a, Result<(), switchyard_aggregates::store::StoreError>> {
        Box::pin(async {
            Err(switchyard_aggregates::store::StoreError::backend(
                "snapshot store is read-only",
            ))
        })
    }
}

#[tokio::test]
async fn a_hard_delete_whose_snapshot_cannot_be_removed_deletes_nothing() {
    use switchyard_aggregates::RepoError;
    use switchyard_aggregates::store::{DeleteMode, ExpectedVersion, StoreError};
    let events = MemoryStore::new();
    let repo = Repo::<Account>::event_sourced(Arc::new(events.clone()))
        .with_snapshots(Arc::new(OldSnapshots(MemoryStore::new())), 1);
    let mut state = AggregateState::default();
    repo.commit(
        "old",
        &mut state,
        vec![AccountEvent::Deposited(1)],
        &Message::new("d"),
        Default::default(),
    )
    .await
    .unwrap();
    let refused = repo
        .delete("old", DeleteMode::Hard, ExpectedVersion::Any)
        .await;
    assert!(
        matches!(refused, Err(RepoError::Store(StoreError::Backend { .. }))),
        "{refused:?}"
    );
    assert!(
        events.has_stream("account-old").await.unwrap(),
        "the stream is kept while its snapshot cannot be removed"
    );
}
