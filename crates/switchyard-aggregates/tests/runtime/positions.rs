//! A command's reply carries the global position of the last event it appended.

use switchyard_aggregates::store::GlobalReader as _;

use crate::fixture::*;

/// The position the store's global order shows for the last event recorded so far.
async fn last_position(bank: &Bank) -> u64 {
    let events = bank.store.read_all(0, 1_000).await.unwrap();
    events.last().map(|event| event.position).unwrap()
}

#[tokio::test]
async fn a_reply_carries_the_position_of_the_last_event_appended() {
    let bank = bank();
    let reply = bank.node.dispatch(opening("acc-1")).await;
    assert_eq!(reply.position(), Some(last_position(&bank).await));
    // Two events in one append, after another stream's: the reply names the last of them.
    bank.node.dispatch(opening("acc-2")).await;
    let reply = bank.node.dispatch(command("open_funded", "acc-3", 5)).await;
    assert!(
        reply.response().is_some_and(|r| r.is_success()),
        "{reply:?}"
    );
    assert_eq!(reply.position(), Some(last_position(&bank).await));
    let reply = bank.node.dispatch(command("deposit", "acc-1", 10)).await;
    assert_eq!(reply.position(), Some(last_position(&bank).await));
}

#[tokio::test]
async fn a_reply_that_appended_nothing_carries_no_position() {
    let bank = bank();
    bank.node.dispatch(opening("acc-1")).await;
    let refused = bank.node.dispatch(command("withdraw", "acc-1", 10)).await;
    assert!(refused.response().is_some_and(|r| r.is_error()));
    assert_eq!(refused.position(), None);
    let read = bank.node.dispatch(command("balance", "acc-1", 0)).await;
    assert_eq!(read.position(), None);
}
