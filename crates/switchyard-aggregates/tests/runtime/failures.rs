//! Panics, store failures and slow commits end only the aggregate concerned.

use std::sync::Arc;

use switchyard_aggregates::AggregateRuntime;
use switchyard_aggregates::repo::Repo;
use switchyard_aggregates::store::{EventMetadata, ExpectedVersion, NewEvent};
use switchyard_messaging::{Message, Response};

use crate::faulty::Faulty;
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

fn faulty_bank() -> (Faulty, Bank) {
    let faulty = Faulty::default();
    let runtime = AggregateRuntime::new(Repo::event_sourced(Arc::new(faulty.clone())));
    let bank = bank_with(faulty.inner.clone(), runtime);
    (faulty, bank)
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
    use switchyard_aggregates::store::EventAppender as _;
    let bank = bank();
    bank.store
        .append(
            "account-bad",
            ExpectedVersion::NoStream,
            vec![NewEvent {
                event_type: "junk".into(),
                schema_version: 1,
                data: vec![9, 9, 9].into(),
            }],
            EventMetadata::default(),
        )
        .await
        .unwrap();
    let reply = bank.node.dispatch(command("deposit", "bad", 1)).await;
    match reply.response() {
        Some(Response::Error(reason)) => {
            assert!(reason.to_string().contains("does not decode"), "{reason}")
        }
        other => panic!("expected an error, got {other:?}"),
    }
}
