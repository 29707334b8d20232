//! One reply vocabulary: a service handler and an aggregate command answer the same error the
//! same way, through `IntoResponse`.

use std::sync::Arc;

use switchyard_aggregates::repo::Repo;
use switchyard_aggregates::store::{MemoryStore, StoreError};
use switchyard_aggregates::{AggregateRuntime, CommandResult, Events, MessageHandler, RepoError};
use switchyard_messaging::{IntoResponse, Message, Node, PayloadError, Response, Router};

use crate::fixture::Tally;

/// A user's error type choosing its responses.
enum Refusal {
    Locked,
    Stale { expected: i64 },
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        match self {
            Self::Locked => Response::forbidden("locked"),
            Self::Stale { expected } => Response::Conflict {
                expected,
                actual: None,
            },
        }
    }
}

fn refusal(msg: &Message) -> Option<Refusal> {
    match msg.log_fields().get("refuse") {
        Some("locked") => Some(Refusal::Locked),
        Some("stale") => Some(Refusal::Stale { expected: 7 }),
        _ => None,
    }
}

fn add(_: &Tally, msg: &Message) -> CommandResult<u64> {
    let amount: u64 = msg.request()?;
    if let Some(refusal) = refusal(msg) {
        return Err(refusal.into());
    }
    Ok(Events::one(amount))
}

async fn add_service(msg: Message) -> Result<Message, PayloadError> {
    let amount: u64 = msg.request()?;
    Ok(msg.ok_with(&amount))
}

async fn guarded_service(msg: Message) -> Result<Message, Refusal> {
    match refusal(&msg) {
        Some(refusal) => Err(refusal),
        None => Ok(msg.ok()),
    }
}

fn node() -> Node {
    let runtime = AggregateRuntime::new(Repo::<Tally>::event_sourced(Arc::new(MemoryStore::new())));
    let tallies = MessageHandler::new(runtime);
    let node = Node::new("responses");
    node.register(
        Router::new("tally")
            .service("add_command", tallies.on_maybe_new(add))
            .service("add_service", add_service)
            .service("guarded_service", guarded_service)
            .authorize(|_| Ok(())),
    )
    .unwrap();
    node
}

async fn answer(node: &Node, msg: Message) -> Response {
    node.dispatch(msg.with_aggregate_id("t-1"))
        .await
        .response()
        .cloned()
        .unwrap()
}

#[tokio::test]
async fn the_same_question_mark_answers_the_same_validation_error_in_a_handler_and_a_command() {
    let node = node();
    for unreadable in [
        Message::new("unreadable"),
        Message::new("unreadable").with_request("not a number"),
    ] {
        let from_service = answer(&node, unreadable.clone().to_service("add_service")).await;
        let from_command = answer(&node, unreadable.to_service("add_command")).await;
        assert!(
            matches!(from_service, Response::ValidationError(_)),
            "{from_service}"
        );
        assert_eq!(from_service, from_command);
    }
}

#[tokio::test]
async fn a_user_error_type_chooses_its_response_in_a_handler_and_a_command() {
    let node = node();
    let cases = [
        ("locked", Response::forbidden("locked")),
        (
            "stale",
            Response::Conflict {
                expected: 7,
                actual: None,
            },
        ),
    ];
    for (refuse, expected) in cases {
        for service in ["guarded_service", "add_command"] {
            let msg = Message::new(service)
                .with_request(&1_u64)
                .with_log_field("refuse", refuse);
            assert_eq!(answer(&node, msg).await, expected, "{service}, {refuse}");
        }
    }
}

#[tokio::test]
async fn loading_a_missing_aggregate_as_existing_answers_not_found() {
    let bank = crate::fixture::bank();
    let repo = bank.accounts.runtime().repo();
    let missing = repo.load_existing("nobody").await.unwrap_err();
    assert!(
        matches!(&missing, RepoError::NotFound { id, stream } if id == "nobody" && stream == "account-nobody")
    );
    assert_eq!(
        missing.into_response(),
        Response::NotFound {
            id: "nobody".into()
        }
    );
    bank.node.dispatch(crate::fixture::opening("here")).await;
    assert_eq!(repo.load_existing("here").await.unwrap().version, 0);
}

#[test]
fn a_repo_error_answers_by_kind() {
    let conflict = RepoError::Conflict {
        expected: 3,
        actual: Some(4),
    };
    assert_eq!(
        conflict.into_response(),
        Response::Conflict {
            expected: 3,
            actual: Some(4)
        }
    );
    let store = RepoError::Store(StoreError::backend(std::io::Error::other("disk full")));
    assert_eq!(
        store.into_response(),
        Response::error("event store backend failed: disk full")
    );
    let codec = RepoError::Codec {
        stream: "tally-1".into(),
        reason: "bad bytes".into(),
    };
    assert_eq!(
        codec.into_response(),
        Response::error("aggregate `tally-1`: bad bytes")
    );
}

#[tokio::test]
async fn a_command_for_an_id_that_breaks_the_names_rule_is_a_validation_error_saying_the_rule() {
    let node = node();
    let huge = "x".repeat(1 << 20);
    for (id, problem) in [
        ("t\0nul", "contains the control character '\\0' at byte 1"),
        (
            huge.as_str(),
            "is 1048576 bytes long, over the limit of 256",
        ),
    ] {
        let msg = Message::new("add_command")
            .with_request(&1_u64)
            .with_aggregate_id(id);
        let answered = node.dispatch(msg).await;
        let Some(Response::ValidationError(reason)) = answered.response() else {
            panic!("expected a validation error, got {:?}", answered.response());
        };
        assert_eq!(
            reason.to_string(),
            format!(
                "aggregate id {problem}: an aggregate id is 1 to 256 bytes of UTF-8 without \
                 control characters"
            )
        );
    }
}
