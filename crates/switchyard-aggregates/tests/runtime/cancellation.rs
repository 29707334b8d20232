//! A command cut short, its caller's future dropped at any await (as a dispatch deadline drops
//! it), leaves no stale state behind: the next command reloads the aggregate from the store,
//! whether or not the store kept the cut command's events.

use std::time::Duration;

use switchyard_aggregates::AggregateRuntime;
use switchyard_aggregates::repo::Repo;
use switchyard_messaging::{DispatchOptions, Response};

use crate::faulty::{Faulty, Gate, faulty_bank};
use crate::fixture::*;

/// Where a deposit is cut short.
#[derive(Clone, Copy, Debug)]
enum Point {
    /// Loading the aggregate, before the store said whether its stream exists.
    Loading,
    /// Loading, once the store said the stream exists.
    Loaded,
    /// Appending, before the store took the events.
    Appending,
    /// Appending, after the store took the events, before the aggregate applied them.
    Appended,
}

fn gate(faulty: &Faulty, point: Point) -> &Gate {
    match point {
        Point::Loading => &faulty.loads,
        Point::Loaded => &faulty.loaded,
        Point::Appending => &faulty.appends,
        Point::Appended => &faulty.appended,
    }
}

/// The deposits the store holds for account `id` (every event after its opening is one).
async fn stored_deposits(faulty: &Faulty, id: &str) -> u64 {
    stream_len(&faulty.inner, id).await as u64 - 1
}

/// Account `id` answers from what the store holds: its balance (a command that appends
/// nothing, so no version conflict would correct a stale copy), then a deposit at the next
/// version, then the balance again.
async fn answers_from_the_store(bank: &Bank, faulty: &Faulty, id: &str, balance: u64) {
    let stored = stored_deposits(faulty, id).await;
    assert_eq!(
        balance_of(bank, id).await,
        balance,
        "the balance the store holds"
    );
    let next = bank.node.dispatch(command("deposit", id, 100)).await;
    assert_eq!(next.response(), Some(&ok_at(stored as i64 + 1)));
    assert_eq!(balance_of(bank, id).await, balance + 100);
}

#[tokio::test]
async fn a_command_cut_short_at_any_await_leaves_no_stale_state() {
    for point in [
        Point::Loading,
        Point::Loaded,
        Point::Appending,
        Point::Appended,
    ] {
        let (faulty, bank) = faulty_bank();
        let id = "cut";
        bank.node.dispatch(opening(id)).await;
        let first = bank.node.dispatch(command("deposit", id, 1)).await;
        assert_eq!(first.response(), Some(&ok_at(1)));
        if matches!(point, Point::Loading | Point::Loaded) {
            // So that the next command loads it.
            assert!(bank.accounts.runtime().unload(id).await);
        }
        gate(&faulty, point).hold();
        let cut = bank.spawn_deposit(id, 10);
        gate(&faulty, point).until_waiting(1).await;
        // Dropping the dispatch drops the command where it waits.
        cut.abort();
        assert!(cut.await.unwrap_err().is_cancelled(), "{point:?}");
        gate(&faulty, point).release();

        let kept = stored_deposits(&faulty, id).await;
        let expected = match point {
            Point::Appended => {
                assert_eq!(kept, 2, "the store kept the cut deposit");
                11
            }
            _ => {
                assert_eq!(kept, 1, "{point:?}: nothing stored");
                1
            }
        };
        answers_from_the_store(&bank, &faulty, id, expected).await;
    }
}

#[tokio::test(start_paused = true)]
async fn a_deadline_firing_mid_append_leaves_no_stale_state() {
    let (faulty, bank) = faulty_bank();
    bank.node.dispatch(opening("late")).await;
    faulty.appended.hold();
    let node = bank.node.clone();
    let deposit = tokio::spawn(async move {
        let options = DispatchOptions::with_timeout(Duration::from_secs(1));
        node.dispatch_with(command("deposit", "late", 10), options)
            .await
    });
    faulty.appended.until_waiting(1).await;
    // The clock moves on while everything waits: the deadline fires with the events stored and
    // not yet applied.
    let reply = deposit.await.unwrap();
    assert!(
        matches!(reply.response(), Some(Response::ServiceTimeout { .. })),
        "{:?}",
        reply.response()
    );
    faulty.appended.release();
    assert_eq!(stored_deposits(&faulty, "late").await, 1);
    answers_from_the_store(&bank, &faulty, "late", 10).await;
}

#[tokio::test]
async fn a_command_cut_short_while_waiting_for_its_aggregate_gives_up_its_place() {
    let faulty = Faulty::default();
    // Room for one waiting command.
    let runtime =
        AggregateRuntime::builder(Repo::event_sourced(std::sync::Arc::new(faulty.clone())))
            .mailbox(1)
            .build();
    let bank = bank_with(faulty.inner.clone(), runtime);
    bank.node.dispatch(opening("line")).await;
    faulty.appends.hold();
    let holding = bank.spawn_deposit("line", 1);
    faulty.appends.until_waiting(1).await;
    let waiting = bank.spawn_deposit("line", 10);
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    waiting.abort();
    assert!(waiting.await.unwrap_err().is_cancelled());
    // The place the cut command held is free again.
    let next = bank.spawn_deposit("line", 100);
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    faulty.appends.release();
    assert_eq!(holding.await.unwrap().response(), Some(&ok_at(1)));
    assert_eq!(next.await.unwrap().response(), Some(&ok_at(2)));
    assert_eq!(balance_of(&bank, "line").await, 101);
}
