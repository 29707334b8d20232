//! An aggregate served on SQLite: the names its events are stored under, and reading them back.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // Tests fail loudly.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use switchyard_aggregates::{Aggregate, CommandResult, Events, MessageHandler};
use switchyard_messaging::{Message, Node, Response, Router};
use switchyard_sqlite::SqliteStore;

#[derive(Default)]
struct Account {
    balance: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
enum AccountEvent {
    Opened { owner: String },
    Deposited(u64),
}

impl Aggregate for Account {
    type Event = AccountEvent;
    const NAME: &'static str = "account";
    fn apply(&mut self, event: &AccountEvent) {
        if let AccountEvent::Deposited(amount) = event {
            self.balance += amount;
        }
    }
}

fn open(_: &Account, msg: &Message) -> CommandResult<AccountEvent> {
    Ok(Events::one(AccountEvent::Opened {
        owner: msg.request()?,
    }))
}

fn deposit(_: &Account, msg: &Message) -> CommandResult<AccountEvent> {
    Ok(Events::one(AccountEvent::Deposited(msg.request()?)))
}

#[tokio::test]
async fn events_are_stored_under_their_variant_name_and_read_back_decoded() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bank.db");
    let store = Arc::new(SqliteStore::open(&path).unwrap());
    let accounts = MessageHandler::<Account>::event_sourced(store.clone());
    let node = Node::new("bank");
    node.register(
        Router::new("accounts")
            .service("open", accounts.on_new(open))
            .service("deposit", accounts.on_existing(deposit))
            .authorize(|_| Ok(())),
    )
    .unwrap();
    let opened = Message::new("open")
        .with_aggregate_id("acc-1")
        .with_id("m-1")
        .with_request("ada");
    assert!(
        node.dispatch(opened)
            .await
            .response()
            .is_some_and(Response::is_success)
    );
    let deposited = Message::new("deposit")
        .with_aggregate_id("acc-1")
        .with_id("m-2")
        .with_request(&5_u64);
    assert!(
        node.dispatch(deposited)
            .await
            .response()
            .is_some_and(Response::is_success)
    );

    // The rows themselves, read with another connection.
    let connection = rusqlite::Connection::open(&path).unwrap();
    let mut select = connection
        .prepare("SELECT event_type FROM events ORDER BY position")
        .unwrap();
    let types: Vec<String> = select
        .query_map([], |row| row.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(types, ["Opened", "Deposited"]);

    let events = accounts.runtime().repo().events("acc-1").await.unwrap();
    let decoded: Vec<_> = events.iter().map(|e| e.event.clone()).collect();
    assert_eq!(
        decoded,
        [
            AccountEvent::Opened {
                owner: "ada".into()
            },
            AccountEvent::Deposited(5)
        ]
    );
    assert_eq!(events[1].version, 1);
    assert_eq!(&*events[1].event_type, "Deposited");
    assert_eq!(events[1].metadata.message_id, "m-2");
    let page = accounts
        .runtime()
        .repo()
        .events_page("acc-1", 1, 10)
        .await
        .unwrap();
    assert_eq!(page.len(), 1);
    assert_eq!(page[0].event, AccountEvent::Deposited(5));
}
