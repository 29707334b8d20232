//! Creating, finding, unloading and deleting aggregates.

use std::sync::Arc;
use std::time::Duration;

use switchyard_aggregates::repo::Repo;
use switchyard_aggregates::store::{DeleteMode, ExpectedVersion, GlobalReader as _, MemoryStore};
use switchyard_aggregates::{AggregateRuntime, HasAggregateId, Unload};
use switchyard_messaging::{DryRun, Message, Payload, Response};

use crate::fixture::*;

#[tokio::test]
async fn a_new_aggregate_is_created_then_commanded() {
    let bank = bank();
    let reply = bank.node.dispatch(opening("acc-1")).await;
    assert_eq!(reply.response(), Some(&created("acc-1", 0)));
    assert_eq!(reply.aggregate_meta().version, Some(0));
    let reply = bank.node.dispatch(command("deposit", "acc-1", 10)).await;
    assert_eq!(reply.response(), Some(&ok_at(1)));
    assert_eq!(balance_of(&bank, "acc-1").await, 10);
}

#[tokio::test]
async fn creating_an_existing_aggregate_is_refused() {
    let bank = bank();
    bank.node.dispatch(opening("acc-1")).await;
    let reply = bank.node.dispatch(opening("acc-1")).await;
    assert_eq!(
        reply.response(),
        Some(&Response::AlreadyExists { id: "acc-1".into() })
    );
    // Also when it is not loaded: the stream exists.
    bank.accounts.runtime().unload("acc-1").await;
    let reply = bank.node.dispatch(opening("acc-1")).await;
    assert_eq!(
        reply.response(),
        Some(&Response::AlreadyExists { id: "acc-1".into() })
    );
    assert_eq!(stream_len(&bank.store, "acc-1").await, 1);
}

#[tokio::test]
async fn a_command_for_a_missing_aggregate_is_not_found() {
    let bank = bank();
    let reply = bank.node.dispatch(command("deposit", "ghost", 1)).await;
    assert_eq!(
        reply.response(),
        Some(&Response::NotFound { id: "ghost".into() })
    );
    assert!(!bank.accounts.runtime().is_live("ghost"));
}

#[tokio::test]
async fn maybe_new_creates_only_when_the_stream_is_missing() {
    let bank = bank();
    let reply = bank
        .node
        .dispatch(command("deposit_or_open", "m-1", 5))
        .await;
    assert_eq!(reply.response(), Some(&created("m-1", 0)));
    let reply = bank
        .node
        .dispatch(command("deposit_or_open", "m-1", 5))
        .await;
    assert_eq!(reply.response(), Some(&ok_at(1)));
    // A command answering NotFound itself is answered as is, and nothing is created.
    let reply = bank
        .node
        .dispatch(Message::new("lookup_other").with_aggregate_id("m-2"))
        .await;
    assert_eq!(
        reply.response(),
        Some(&Response::NotFound {
            id: "other-of-m-2".into()
        })
    );
    assert_eq!(stream_len(&bank.store, "m-2").await, 0);
}

#[tokio::test]
async fn a_creation_that_records_nothing_creates_nothing() {
    let bank = bank();
    let reply = bank
        .node
        .dispatch(Message::new("open_nothing").with_aggregate_id("n-1"))
        .await;
    assert_eq!(reply.response(), Some(&ok_at(-1)));
    assert_eq!(stream_len(&bank.store, "n-1").await, 0);
    tokio::task::yield_now().await;
    assert!(!bank.accounts.runtime().is_live("n-1"));
}

#[tokio::test]
async fn a_rejected_creation_leaves_no_aggregate() {
    let bank = bank();
    let reply = bank
        .node
        .dispatch(
            Message::new("open")
                .with_aggregate_id("r-1")
                .with_request(&"not an Open"),
        )
        .await;
    assert!(matches!(
        reply.response(),
        Some(Response::ValidationError(_))
    ));
    tokio::task::yield_now().await;
    assert!(!bank.accounts.runtime().is_live("r-1"));
    let reply = bank.node.dispatch(opening("r-1")).await;
    assert_eq!(reply.response(), Some(&created("r-1", 0)));
}

#[tokio::test]
async fn a_typed_request_that_names_its_aggregate_reaches_it_with_default_settings() {
    let bank = bank();
    // `open` has the default id settings; the binary request alone would not be searched.
    let request = Open {
        account: "to-1".into(),
        owner: "ada".into(),
    };
    let reply = bank.node.dispatch(request.to_message("open")).await;
    assert_eq!(reply.response(), Some(&created("to-1", 0)));
    let again = bank.node.dispatch(request.to_message("open")).await;
    assert_eq!(
        again.response(),
        Some(&Response::AlreadyExists { id: "to-1".into() })
    );
}

#[tokio::test]
async fn ids_come_from_the_caller_the_request_or_a_json_field() {
    let bank = bank();
    let typed = Message::new("open_typed").with_request(&Open {
        account: "typed-1".into(),
        owner: "ada".into(),
    });
    assert_eq!(
        bank.node.dispatch(typed).await.response(),
        Some(&created("typed-1", 0))
    );

    let json = Message::new("deposit_or_open")
        .with_payload(Payload::from_json(r#"{"id":"json-1","amount":1}"#).unwrap());
    let reply = bank.node.dispatch(json).await;
    // The id is found in the JSON; the command then cannot read the JSON object as an amount.
    assert_eq!(reply.aggregate_meta().id.as_deref(), Some("json-1"));

    let missing = bank
        .node
        .dispatch(Message::new("deposit").with_request(&1_u64))
        .await;
    let Some(Response::MissingId(reason)) = missing.response() else {
        panic!("expected MissingId, got {:?}", missing.response());
    };
    // It says what was tried and names the remedies.
    for part in [
        "binary",
        "`id`",
        "Message::with_aggregate_id",
        "HasAggregateId::to_message",
        "id_from_request",
    ] {
        assert!(reason.contains(part), "{part} not in {reason}");
    }
    let json = Message::new("deposit").with_payload(Payload::from_json(r#"{"amount":1}"#).unwrap());
    let reply = bank.node.dispatch(json).await;
    let Some(Response::MissingId(reason)) = reply.response() else {
        panic!("expected MissingId, got {:?}", reply.response());
    };
    assert!(
        reason.contains("no string or number field `id`"),
        "{reason}"
    );

    let generated = bank
        .node
        .dispatch(Message::new("open_generated").with_request(&Open {
            account: String::new(),
            owner: "x".into(),
        }))
        .await;
    let Some(Response::Created { id, .. }) = generated.response() else {
        panic!("expected a creation, got {:?}", generated.response());
    };
    assert_eq!(uuid::Uuid::parse_str(id).unwrap().get_version_num(), 7);
}

#[tokio::test]
async fn a_typed_creation_without_an_id_creates_nothing_by_default() {
    let bank = bank();
    let typed = Message::new("open").with_request(&Open {
        account: "t-1".into(),
        owner: "ada".into(),
    });
    let reply = bank.node.dispatch(typed).await;
    let Some(Response::MissingId(reason)) = reply.response() else {
        panic!("expected MissingId, got {:?}", reply.response());
    };
    for part in [
        "binary",
        "Message::with_aggregate_id",
        "generate_missing_id(true)",
    ] {
        assert!(reason.contains(part), "{part} not in {reason}");
    }
    assert!(bank.store.read_all(0, 100).await.unwrap().is_empty());

    let without_request = bank.node.dispatch(Message::new("open_nothing")).await;
    assert!(
        matches!(without_request.response(), Some(Response::OkAt { .. })),
        "a message without a request still gets an id: {:?}",
        without_request.response()
    );
}

#[tokio::test]
async fn dry_runs_persist_nothing_and_roll_back() {
    let bank = bank();
    bank.node.dispatch(opening("d-1")).await;
    let before = ROLLBACKS.load(std::sync::atomic::Ordering::SeqCst);
    let reply = bank
        .node
        .validate(command("deposit", "d-1", 7).with_log_field("count", "yes"))
        .await;
    assert_eq!(reply.response(), Some(&ok_at(0)));
    assert!(reply.events().is_empty());
    assert!(ROLLBACKS.load(std::sync::atomic::Ordering::SeqCst) > before);

    let verbose = bank
        .node
        .dispatch(command("deposit", "d-1", 7).with_dry_run(DryRun::Verbose))
        .await;
    assert_eq!(verbose.response(), Some(&ok_at(0)));
    let events: Vec<AccountEvent> = verbose
        .events()
        .iter()
        .map(|e| e.decode().unwrap())
        .collect();
    assert_eq!(events, [AccountEvent::Deposited(7)]);
    assert_eq!(stream_len(&bank.store, "d-1").await, 1);

    let new = bank.node.validate(opening("d-2")).await;
    assert_eq!(new.response(), Some(&ok_at(-1)));
    assert_eq!(stream_len(&bank.store, "d-2").await, 0);
}

#[tokio::test]
async fn commit_runs_only_after_a_successful_append() {
    let bank = bank();
    bank.node.dispatch(opening("c-1")).await;
    let commits = || COMMITS.load(std::sync::atomic::Ordering::SeqCst);
    let before = commits();
    bank.node
        .dispatch(command("withdraw", "c-1", 100).with_log_field("count", "yes"))
        .await;
    assert_eq!(commits(), before, "a rejection commits nothing");
    bank.node
        .dispatch(command("deposit", "c-1", 1).with_log_field("count", "yes"))
        .await;
    assert_eq!(commits(), before + 1);
}

#[tokio::test]
async fn an_unloaded_aggregate_reloads_from_the_store() {
    let bank = bank();
    bank.node.dispatch(opening("u-1")).await;
    bank.node.dispatch(command("deposit", "u-1", 3)).await;
    assert!(bank.accounts.runtime().unload("u-1").await);
    tokio::task::yield_now().await;
    assert!(!bank.accounts.runtime().is_live("u-1"));
    assert!(!bank.accounts.runtime().unload("u-1").await);
    assert_eq!(balance_of(&bank, "u-1").await, 3);
}

#[tokio::test(start_paused = true)]
async fn unload_policies_passivate_aggregates() {
    let store = MemoryStore::new();
    let runtime = AggregateRuntime::builder(Repo::event_sourced(Arc::new(store.clone())))
        .idle_timeout(Duration::from_secs(60))
        .unload_on_event(
            |e| matches!(e, AccountEvent::Closed),
            Duration::from_secs(5),
        )
        .unload_on_state(|account: &Account| {
            if account.balance >= 1_000 {
                Unload::Now
            } else {
                Unload::Never
            }
        })
        .build();
    let bank = bank_with(store, runtime);
    let live = |id: &str| bank.accounts.runtime().is_live(id);

    bank.node.dispatch(opening("idle")).await;
    assert!(live("idle"));
    tokio::time::sleep(Duration::from_secs(61)).await;
    assert!(!live("idle"), "idle for longer than the timeout");

    bank.node.dispatch(opening("closing")).await;
    bank.node.dispatch(command("close", "closing", 0)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(live("closing"), "the delay has not passed");
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(!live("closing"), "unloaded after the Closed event's delay");

    bank.node.dispatch(opening("rich")).await;
    bank.node.dispatch(command("deposit", "rich", 1_000)).await;
    tokio::task::yield_now().await;
    assert!(!live("rich"), "unloaded at once by the state rule");
    assert_eq!(balance_of(&bank, "rich").await, 1_000);
}

#[tokio::test]
async fn deleting_a_stream_unloads_it() {
    let bank = bank();
    bank.node.dispatch(opening("del-1")).await;
    bank.accounts
        .delete_stream("del-1", DeleteMode::Soft, ExpectedVersion::Exactly(0))
        .await
        .unwrap();
    tokio::task::yield_now().await;
    assert!(!bank.accounts.runtime().is_live("del-1"));
    let reply = bank.node.dispatch(command("deposit", "del-1", 1)).await;
    assert_eq!(
        reply.response(),
        Some(&Response::NotFound { id: "del-1".into() })
    );

    bank.node.dispatch(opening("del-2")).await;
    bank.accounts
        .delete_stream("del-2", DeleteMode::Hard, ExpectedVersion::Any)
        .await
        .unwrap();
    let reply = bank.node.dispatch(opening("del-2")).await;
    assert_eq!(reply.response(), Some(&created("del-2", 0)));
}

#[tokio::test]
async fn shutdown_drains_queued_commands() {
    let bank = bank();
    bank.node.dispatch(opening("s-1")).await;
    let calls: Vec<_> = (0..200).map(|_| bank.spawn_deposit("s-1", 1)).collect();
    tokio::task::yield_now().await;
    bank.accounts.runtime().shutdown().await;
    assert_eq!(bank.accounts.runtime().live_count(), 0);
    let mut done = 0;
    for call in calls {
        let reply = call.await.unwrap();
        match reply.response() {
            Some(Response::OkAt { .. }) => done += 1,
            Some(Response::Error(reason)) => assert!(reason.to_string().contains("shut down")),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(stream_len(&bank.store, "s-1").await, 1 + done);
}

/// An aggregate that counts its live instances.
struct Tracked;

static TRACKED: std::sync::atomic::AtomicIsize = std::sync::atomic::AtomicIsize::new(0);

impl Default for Tracked {
    fn default() -> Self {
        TRACKED.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Tracked
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        TRACKED.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

impl switchyard_aggregates::Aggregate for Tracked {
    type Event = u8;
    const NAME: &'static str = "tracked";
    fn apply(&mut self, _: &u8) {}
}

#[tokio::test]
async fn dropping_every_handle_drops_every_aggregate_state() {
    let runtime =
        AggregateRuntime::new(Repo::<Tracked>::event_sourced(Arc::new(MemoryStore::new())));
    let handler = switchyard_aggregates::MessageHandler::new(runtime);
    let node = switchyard_messaging::Node::new("tracked");
    node.register(
        switchyard_messaging::Router::new("tracked")
            .service(
                "create",
                handler.on_new(|_: &Tracked, _: &Message| {
                    Ok(switchyard_aggregates::Events::one(1_u8))
                }),
            )
            .authorize(|_| Ok(())),
    )
    .unwrap();
    for n in 0..3 {
        node.dispatch(Message::new("create").with_aggregate_id(format!("t-{n}")))
            .await;
    }
    assert_eq!(handler.runtime().live_count(), 3);
    assert_eq!(TRACKED.load(std::sync::atomic::Ordering::SeqCst), 3);
    drop(handler);
    drop(node);
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert_eq!(
        TRACKED.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "every cached state is gone"
    );
}

#[tokio::test(start_paused = true)]
async fn a_later_never_cancels_an_earlier_unload_after() {
    let store = MemoryStore::new();
    let runtime = AggregateRuntime::builder(Repo::event_sourced(Arc::new(store.clone())))
        .unload_on_state(|account: &Account| {
            if account.balance == 0 {
                Unload::After(Duration::from_secs(10))
            } else {
                Unload::Never
            }
        })
        .build();
    let bank = bank_with(store, runtime);
    let live = |id: &str| bank.accounts.runtime().is_live(id);

    bank.node.dispatch(opening("n-1")).await; // empty: unload in 10 s
    tokio::time::sleep(Duration::from_secs(1)).await;
    bank.node.dispatch(command("deposit", "n-1", 5)).await; // funded: keep it
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert!(live("n-1"), "the later Never cancelled the After");

    bank.node.dispatch(command("withdraw", "n-1", 5)).await; // empty again: unload in 10 s
    tokio::time::sleep(Duration::from_secs(9)).await;
    assert!(live("n-1"));
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(!live("n-1"), "unloaded 10 s after the last After");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unloaded_or_deleted_aggregate_is_not_live_once_the_call_returns() {
    let bank = bank();
    let runtime = bank.accounts.runtime();
    for n in 0..200 {
        let id = format!("gone-{n}");
        bank.node.dispatch(opening(&id)).await;
        if n % 2 == 0 {
            assert!(runtime.unload(&id).await);
        } else {
            runtime
                .delete(&id, DeleteMode::Soft, ExpectedVersion::Any)
                .await
                .unwrap();
        }
        assert!(!runtime.is_live(&id), "{id} is still live");
    }
}

/// An event one of whose variants does not encode.
#[derive(Clone, Debug, serde::Deserialize)]
enum Odd {
    Fine,
    Broken,
}

impl serde::Serialize for Odd {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Fine => serializer.serialize_unit_variant("Odd", 0, "Fine"),
            Self::Broken => Err(serde::ser::Error::custom("this event breaks encoders")),
        }
    }
}

#[derive(Default)]
struct Oddity;

impl switchyard_aggregates::Aggregate for Oddity {
    type Event = Odd;
    const NAME: &'static str = "oddity";
    fn apply(&mut self, _: &Odd) {}
}

#[tokio::test]
async fn a_verbose_dry_run_answers_an_event_that_does_not_encode() {
    let handler = switchyard_aggregates::MessageHandler::new(AggregateRuntime::new(
        Repo::<Oddity>::event_sourced(Arc::new(MemoryStore::new())),
    ));
    let node = switchyard_messaging::Node::new("odd");
    node.register(
        switchyard_messaging::Router::new("odd")
            .service(
                "make",
                handler.on_maybe_new(|_: &Oddity, _: &Message| {
                    Ok(switchyard_aggregates::Events::many([
                        Odd::Fine,
                        Odd::Broken,
                    ]))
                }),
            )
            .authorize(|_| Ok(())),
    )
    .unwrap();
    let reply = node
        .dispatch(
            Message::new("make")
                .with_aggregate_id("o-1")
                .with_dry_run(DryRun::Verbose),
        )
        .await;
    match reply.response() {
        Some(Response::Error(reason)) => {
            assert!(reason.to_string().contains("could not encode"), "{reason}")
        }
        other => panic!("expected the encoding error, got {other:?}"),
    }
}
