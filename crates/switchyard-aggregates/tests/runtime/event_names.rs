//! The names events are recorded under: their serde variant name unless overridden.

use serde::{Deserialize, Serialize};
use switchyard_aggregates::store::{GlobalReader, MemoryStore};
use switchyard_aggregates::{Aggregate, CommandResult, Events, MessageHandler};
use switchyard_messaging::{Message, Node, Router};

use crate::fixture::{Account, AccountEvent, Tally};

/// The same event type, once in a module and once in another, as after a module rename.
mod before {
    #[derive(Clone, serde::Serialize, serde::Deserialize)]
    pub(crate) enum Event {
        Opened,
        Deposited(u64),
    }
}

mod after {
    pub(crate) mod renamed {
        #[derive(Clone, serde::Serialize, serde::Deserialize)]
        pub(crate) enum Event {
            Opened,
            Deposited(u64),
        }
    }
}

#[derive(Default)]
struct Before;

impl Aggregate for Before {
    type Event = before::Event;
    const NAME: &'static str = "moved";
    fn apply(&mut self, _: &before::Event) {}
}

#[derive(Default)]
struct After;

impl Aggregate for After {
    type Event = after::renamed::Event;
    const NAME: &'static str = "moved";
    fn apply(&mut self, _: &after::renamed::Event) {}
}

#[test]
fn each_variant_is_named_after_itself() {
    let names = [
        Account::event_type(&AccountEvent::Opened {
            owner: "ada".into(),
        }),
        Account::event_type(&AccountEvent::Deposited(1)),
        Account::event_type(&AccountEvent::Withdrawn(1)),
        Account::event_type(&AccountEvent::Closed),
    ];
    assert_eq!(names, ["Opened", "Deposited", "Withdrawn", "Closed"]);
}

#[test]
fn names_survive_a_module_rename() {
    assert_eq!(
        Before::event_type(&before::Event::Deposited(1)),
        After::event_type(&after::renamed::Event::Deposited(1))
    );
    assert_eq!(Before::event_type(&before::Event::Opened), "Opened");
    assert!(!After::event_type(&after::renamed::Event::Opened).contains("::"));
}

#[test]
fn an_unnamed_event_is_named_after_its_aggregate() {
    assert_eq!(Tally::event_type(&7), "tally");
}

#[derive(Default)]
struct Renamed;

#[derive(Clone, Serialize, Deserialize)]
enum RenamedEvent {
    Credited(u64),
    #[serde(rename = "Closed")]
    Shut,
}

impl Aggregate for Renamed {
    type Event = RenamedEvent;
    const NAME: &'static str = "renamed";
    fn apply(&mut self, _: &RenamedEvent) {}
    fn event_type(event: &RenamedEvent) -> &'static str {
        match event {
            RenamedEvent::Credited(_) => "Deposited",
            RenamedEvent::Shut => "Closed",
        }
    }
}

fn credit_and_close(_: &Renamed, _: &Message) -> CommandResult<RenamedEvent> {
    Ok(Events::many([
        RenamedEvent::Credited(1),
        RenamedEvent::Shut,
    ]))
}

fn open_and_deposit(_: &Account, _: &Message) -> CommandResult<AccountEvent> {
    Ok(Events::many([
        AccountEvent::Opened {
            owner: "ada".into(),
        },
        AccountEvent::Deposited(5),
    ]))
}

async fn stored_types(store: &MemoryStore) -> Vec<String> {
    let events = store.read_all(0, 10).await.unwrap();
    events.iter().map(|e| e.event_type.to_string()).collect()
}

#[tokio::test]
async fn stored_rows_carry_the_variant_name_or_the_override() {
    let store = MemoryStore::new();
    let accounts = MessageHandler::<Account>::event_sourced(store.clone());
    let renamed = MessageHandler::<Renamed>::event_sourced(store.clone());
    let node = Node::new("names");
    node.register(
        Router::new("names")
            .service("open", accounts.on_new(open_and_deposit))
            .service("credit", renamed.on_new(credit_and_close))
            .authorize(|_| Ok(())),
    )
    .unwrap();
    node.dispatch(Message::new("open").with_aggregate_id("a"))
        .await;
    assert_eq!(stored_types(&store).await, ["Opened", "Deposited"]);
    node.dispatch(Message::new("credit").with_aggregate_id("r"))
        .await;
    assert_eq!(
        stored_types(&store).await,
        ["Opened", "Deposited", "Deposited", "Closed"]
    );
}
