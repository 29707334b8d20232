//! Panics, store failures and slow commits end only the aggregate concerned.

use std::sync::Arc;

use switchyard_aggregates::AggregateRuntime;
use switchyard_aggregates::repo::Repo;
use switchyard_aggregates::store::ExpectedVersion;
use switchyard_messaging::{Message, Response};

use crate::faulty::{Faulty, faulty_bank, poll_once};
use crate::fixture::*;

#[tokio::test]
async fn a_panicking_command_ends_only_its_aggregate() {
    let bank = bank();
    bank.node.dispatch(opening("p-1")).await;
    bank.node.dispatch(opening("p-2")).await;
    bank.node.dispatch(command("deposit", "p-1", 4)).await;
    let reply = bank
        .node
        .dispatch(Message::new("boom").with_aggregate_id("p-1"))
        .await;
    match reply.response() {
        Some(Response::Error(reason)) => {
            assert!(reason.to_string().contains("the command broke"), "{reason}");
        }
        other => panic!("expected an error, got {other:?}"),
    }
    tokio::task::yield_now().await;
    assert!(!bank.accounts.runtime().is_live("p-1"));
    assert!(bank.accounts.runtime().is_live("p-2"));
    assert_eq!(balance_of(&bank, "p-1").await, 4, "reloaded from the store");
}

#[tokio::test]
async fn a_failing_store_answers_an_error_and_the_aggregate_reloads() {
    let (faulty, bank) = faulty_bank();
    bank.node.dispatch(opening("f-1")).await;
    *faulty.fail.lock().unwrap() = true;
    let reply = bank.node.dispatch(command("deposit", "f-1", 1)).await;
    match reply.response() {
        Some(Response::Error(reason)) => {
            assert!(reason.to_string().contains("disk on fire"), "{reason}")
        }
        other => panic!("expected an error, got {other:?}"),
    }
    tokio::task::yield_now().await;
    assert!(!bank.accounts.runtime().is_live("f-1"));
    *faulty.fail.lock().unwrap() = false;
    assert_eq!(
        bank.node
            .dispatch(command("deposit", "f-1", 1))
            .await
            .response(),
        Some(&ok_at(1))
    );
}

#[tokio::test]
async fn an_undecodable_stream_answers_an_error() {
    let bank = bank();
    start_stream(&bank.store, "bad", vec![undecodable_event()]).await;
    let reply = bank.node.dispatch(command("deposit", "bad", 1)).await;
    match reply.response() {
        Some(Response::Error(reason)) => {
            assert!(reason.to_string().contains("does not decode"), "{reason}")
        }
        other => panic!("expected an error, got {other:?}"),
    }
}

#[tokio::test]
async fn a_delete_queued_behind_a_failing_load_still_deletes() {
    use switchyard_aggregates::store::{DeleteMode, EventReader as _};
    let (faulty, bank) = faulty_bank();
    // Events that do not decode: every load of this aggregate fails.
    start_stream(&faulty.inner, "bad", vec![undecodable_event()]).await;
    faulty.loads.hold();
    let deposit = bank.spawn_deposit("bad", 1);
    faulty.loads.until_waiting(1).await;
    // The deposit holds the aggregate while it loads; the delete waits behind it.
    let runtime = bank.accounts.runtime();
    let mut delete = std::pin::pin!(runtime.delete("bad", DeleteMode::Hard, ExpectedVersion::Any));
    assert!(poll_once(&mut delete).await.is_pending());
    faulty.loads.release();

    let reply = deposit.await.unwrap();
    match reply.response() {
        Some(Response::Error(reason)) => {
            assert!(reason.to_string().contains("does not decode"), "{reason}")
        }
        other => panic!("expected the load's error, got {other:?}"),
    }
    delete
        .await
        .expect("the delete needs no state, so the failed load does not stop it");
    assert!(!faulty.inner.has_stream("account-bad").await.unwrap());
}

#[tokio::test]
async fn a_delete_leaves_no_cached_state_to_continue_the_stream() {
    use switchyard_aggregates::store::{DeleteMode, EventReader as _};
    let (faulty, bank) = faulty_bank();
    let runtime = bank.accounts.runtime();
    bank.node.dispatch(opening("z")).await;
    assert!(runtime.unload("z").await);

    faulty.deletes.hold();
    let mut delete = std::pin::pin!(runtime.delete("z", DeleteMode::Soft, ExpectedVersion::Any));
    assert!(poll_once(&mut delete).await.is_pending());
    // A command arrives while the delete is under way, and every task gets to run.
    let mut deposit = std::pin::pin!(bank.node.dispatch(command("deposit", "z", 1)));
    assert!(poll_once(&mut deposit).await.is_pending());
    faulty.deletes.until_waiting(1).await;
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    faulty.deletes.release();
    delete.await.unwrap();
    // Concurrent with the delete, the command may run before it or after it.
    let during = deposit.await;
    assert!(
        matches!(
            during.response(),
            Some(Response::NotFound { .. } | Response::OkAt { version: 1, .. })
        ),
        "{:?}",
        during.response()
    );

    // Nothing kept the state from before the delete: a deposit must not continue the
    // soft-deleted stream at its last version.
    let after = bank.node.dispatch(command("deposit", "z", 1)).await;
    assert_eq!(
        after.response(),
        Some(&Response::NotFound { id: "z".into() })
    );
    assert!(!faulty.inner.has_stream("account-z").await.unwrap());
}

/// An aggregate whose `apply` panics on one event.
#[derive(Default)]
struct Fragile;

impl switchyard_aggregates::Aggregate for Fragile {
    type Event = u8;
    const NAME: &'static str = "fragile";
    fn apply(&mut self, event: &u8) {
        assert!(*event != 13, "unlucky thirteen");
    }
}

#[tokio::test]
async fn a_panic_in_apply_is_answered_with_its_reason_also_when_loading() {
    use switchyard_aggregates::{CommandResult, Events, MessageHandler};
    use switchyard_messaging::{Node, Router};
    let runtime = AggregateRuntime::new(Repo::<Fragile>::event_sourced(Arc::new(
        switchyard_aggregates::store::MemoryStore::new(),
    )));
    let handler = MessageHandler::new(runtime);
    fn record(_: &Fragile, msg: &Message) -> CommandResult<u8> {
        Ok(Events::one(msg.request()?))
    }
    let node = Node::new("fragile");
    node.register(
        Router::new("fragile")
            .service("record", handler.on_maybe_new(record))
            .authorize(|_| Ok(())),
    )
    .unwrap();
    let record = |n: u8| {
        node.dispatch(
            Message::new("record")
                .with_aggregate_id("f-1")
                .with_request(&n),
        )
    };
    let error = |reply: Message| match reply.response() {
        Some(Response::Error(reason)) => reason.to_string(),
        other => panic!("expected an error, got {other:?}"),
    };

    // The event is recorded, then applying it panics: answered with the caller's own message.
    let sent = Message::new("record")
        .with_aggregate_id("f-1")
        .with_request(&13_u8);
    let answered = node.dispatch(sent.clone()).await;
    assert_eq!(answered.id(), sent.id(), "the caller's message");
    assert_eq!(answered.correlation_id(), sent.correlation_id());
    let reason = error(answered);
    assert!(reason.contains("unlucky thirteen"), "{reason}");
    assert!(reason.contains("`record`"), "{reason}");
    tokio::task::yield_now().await;
    assert!(!handler.runtime().is_live("f-1"));
    // Every load replays it.
    let reason = error(record(1).await);
    assert!(reason.contains("unlucky thirteen"), "{reason}");
    assert!(reason.contains("loading"), "{reason}");
}

/// A snapshot store that takes `delay` to save.
struct SlowSnapshots {
    inner: switchyard_aggregates::store::MemoryStore,
    delay: std::time::Duration,
}

impl switchyard_aggregates::store::SnapshotStore for SlowSnapshots {
    fn save_snapshot<'a>(
        &'a self,
        stream: &'a str,
        snapshot: switchyard_aggregates::store::StoredState,
    ) -> futures::future::BoxFuture<'a, Result<(), switchyard_aggregates::store::StoreError>> {
        Box::pin(async move {
            tokio::time::sleep(self.delay).await;
            self.inner.save_snapshot(stream, snapshot).await
        })
    }

    fn load_snapshot<'a>(
        &'a self,
        stream: &'a str,
    ) -> futures::future::BoxFuture<
        'a,
        Result<
            Option<switchyard_aggregates::store::StoredState>,
            switchyard_aggregates::store::StoreError,
        >,
    > {
        self.inner.load_snapshot(stream)
    }

    fn delete_snapshot<'a>(
        &'a self,
        stream: &'a str,
    ) -> futures::future::BoxFuture<'a, Result<(), switchyard_aggregates::store::StoreError>> {
        self.inner.delete_snapshot(stream)
    }
}

#[tokio::test(start_paused = true)]
async fn a_slow_snapshot_store_does_not_fail_commits() {
    use std::time::Duration;
    use switchyard_aggregates::store::{MemoryStore, SnapshotStore as _};
    let faulty = Faulty::default();
    *faulty.delay.lock().unwrap() = Some(Duration::from_millis(30));
    let snapshots = MemoryStore::new();
    let slow = SlowSnapshots {
        inner: snapshots.clone(),
        delay: Duration::from_millis(30),
    };
    let repo = Repo::event_sourced(Arc::new(faulty.clone())).with_snapshots(Arc::new(slow), 1);
    let bank = bank_with(faulty.inner.clone(), AggregateRuntime::new(repo));
    let accounts = bank
        .accounts
        .clone()
        .commit_timeout(Duration::from_millis(50));
    let node = switchyard_messaging::Node::new("slow-snapshots");
    node.register(router(&accounts)).unwrap();

    // The append and the snapshot take 30 ms each: each within the commit timeout, together
    // beyond it.
    assert_eq!(
        node.dispatch(opening("s-1")).await.response(),
        Some(&created("s-1", 0))
    );
    assert_eq!(
        node.dispatch(command("deposit", "s-1", 2)).await.response(),
        Some(&ok_at(1))
    );
    assert!(accounts.runtime().is_live("s-1"), "not reloaded");
    // The last snapshot is saved after the answer; a command queued behind it waits for it.
    assert_eq!(balance_of(&bank, "s-1").await, 2);
    let snapshot = snapshots
        .load_snapshot("account-s-1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(snapshot.version, 1, "the snapshots were saved");
}
