//! A bank account aggregate and a node serving it; a tally whose events serde does not name;
//! an event no codec reads.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde::{Deserialize, Serialize};
use switchyard_aggregates::repo::Repo;
use switchyard_aggregates::store::{
    EventAppender, EventMetadata, ExpectedVersion, MemoryStore, NewEvent,
};
use switchyard_aggregates::{
    Aggregate, AggregateRuntime, CommandResult, Events, HasAggregateId, MessageHandler,
};
use switchyard_messaging::{Message, Node, Response, Router};

pub(crate) static COMMITS: AtomicUsize = AtomicUsize::new(0);
pub(crate) static ROLLBACKS: AtomicUsize = AtomicUsize::new(0);

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Account {
    pub(crate) open: bool,
    pub(crate) balance: u64,
    pub(crate) closed: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) enum AccountEvent {
    Opened { owner: String },
    Deposited(u64),
    Withdrawn(u64),
    Closed,
}

impl Aggregate for Account {
    type Event = AccountEvent;
    const NAME: &'static str = "account";

    fn apply(&mut self, event: &AccountEvent) {
        match event {
            AccountEvent::Opened { .. } => self.open = true,
            AccountEvent::Deposited(n) => self.balance += n,
            AccountEvent::Withdrawn(n) => self.balance -= n,
            AccountEvent::Closed => self.closed = true,
        }
    }

    fn commit(&self, message: &Message) {
        if message.log_fields().get("count").is_some() {
            COMMITS.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn rollback(&self, message: &Message) {
        if message.log_fields().get("count").is_some() {
            ROLLBACKS.fetch_add(1, Ordering::SeqCst);
        }
    }
}

#[derive(Serialize, Deserialize)]
pub(crate) struct Open {
    pub(crate) account: String,
    pub(crate) owner: String,
}

impl HasAggregateId for Open {
    fn aggregate_id(&self) -> Option<String> {
        Some(self.account.clone())
    }
}

pub(crate) fn open(account: &Account, msg: &Message) -> CommandResult<AccountEvent> {
    if account.open {
        return Err(Response::error("already open"));
    }
    let request: Open = msg.request()?;
    Ok(Events::one(AccountEvent::Opened {
        owner: request.owner,
    }))
}

/// Opens the account with a first deposit: a creation of two events.
pub(crate) fn open_funded(account: &Account, msg: &Message) -> CommandResult<AccountEvent> {
    if account.open {
        return Err(Response::error("already open"));
    }
    let amount: u64 = msg.request()?;
    Ok(Events::many([
        AccountEvent::Opened {
            owner: "ada".into(),
        },
        AccountEvent::Deposited(amount),
    ]))
}

pub(crate) fn deposit(_: &Account, msg: &Message) -> CommandResult<AccountEvent> {
    let amount: u64 = msg.request()?;
    if amount == 0 {
        return Err(Response::error("nothing to deposit"));
    }
    Ok(Events::one(AccountEvent::Deposited(amount)))
}

pub(crate) fn withdraw(account: &Account, msg: &Message) -> CommandResult<AccountEvent> {
    let amount: u64 = msg.request()?;
    if amount > account.balance {
        return Err(Response::error("insufficient funds"));
    }
    Ok(Events::one(AccountEvent::Withdrawn(amount)))
}

pub(crate) fn balance(account: &Account, _: &Message) -> CommandResult<AccountEvent> {
    Ok(Events::none().reply_with(&account.balance))
}

pub(crate) fn close(_: &Account, _: &Message) -> CommandResult<AccountEvent> {
    Ok(Events::one(AccountEvent::Closed))
}

/// Answers `NotFound` itself, to check `on_maybe_new` does not mistake it for a missing stream.
pub(crate) fn lookup_other(_: &Account, msg: &Message) -> CommandResult<AccountEvent> {
    Err(Response::NotFound {
        id: format!(
            "other-of-{}",
            msg.aggregate_meta().id.clone().unwrap_or_default()
        ),
    })
}

pub(crate) fn boom(_: &Account, _: &Message) -> CommandResult<AccountEvent> {
    panic!("the command broke")
}

pub(crate) fn nothing(_: &Account, _: &Message) -> CommandResult<AccountEvent> {
    Ok(Events::none())
}

pub(crate) struct Bank {
    pub(crate) node: Node,
    pub(crate) store: MemoryStore,
    pub(crate) accounts: MessageHandler<Account>,
}

impl Bank {
    /// A deposit of `amount` to account `id`, dispatched on a task of its own.
    pub(crate) fn spawn_deposit(&self, id: &str, amount: u64) -> tokio::task::JoinHandle<Message> {
        let node = self.node.clone();
        let deposit = command("deposit", id, amount);
        tokio::spawn(async move { node.dispatch(deposit).await })
    }
}

pub(crate) fn bank_with(store: MemoryStore, runtime: AggregateRuntime<Account>) -> Bank {
    bank_served_by(store, MessageHandler::new(runtime))
}

pub(crate) fn bank_served_by(store: MemoryStore, accounts: MessageHandler<Account>) -> Bank {
    let accounts = accounts.event_metadata("app", "tests");
    let node = Node::new("bank");
    node.register(router(&accounts)).unwrap();
    Bank {
        node,
        store,
        accounts,
    }
}

pub(crate) fn router(accounts: &MessageHandler<Account>) -> Router {
    Router::new("accounts")
        .service("open", accounts.on_new(open))
        .service(
            "open_typed",
            accounts.clone().id_from_request::<Open>().on_new(open),
        )
        .service(
            "open_generated",
            accounts.clone().generate_missing_id(true).on_new(open),
        )
        .service("open_funded", accounts.on_new(open_funded))
        .service("deposit", accounts.on_existing(deposit))
        .service("deposit_or_open", accounts.on_maybe_new(deposit))
        .service("withdraw", accounts.on_existing(withdraw))
        .service("balance", accounts.on_existing(balance))
        .service("close", accounts.on_existing(close))
        .service("lookup_other", accounts.on_maybe_new(lookup_other))
        .service("boom", accounts.on_existing(boom))
        .service("open_nothing", accounts.on_new(nothing))
        .authorize(|_| Ok(()))
}

pub(crate) fn bank() -> Bank {
    let store = MemoryStore::new();
    let runtime = AggregateRuntime::new(Repo::event_sourced(Arc::new(store.clone())));
    bank_with(store, runtime)
}

pub(crate) fn opening(id: &str) -> Message {
    Message::new("open")
        .with_aggregate_id(id)
        .with_request(&Open {
            account: id.into(),
            owner: "ada".into(),
        })
}

pub(crate) fn command(service: &str, id: &str, amount: u64) -> Message {
    Message::new(service)
        .with_aggregate_id(id)
        .with_request(&amount)
}

pub(crate) fn created(id: &str, version: i64) -> Response {
    Response::Created {
        id: id.into(),
        version: Some(version),
    }
}

pub(crate) fn ok_at(version: i64) -> Response {
    Response::OkAt {
        payload: None,
        version,
    }
}

pub(crate) async fn stream_len(store: &MemoryStore, id: &str) -> usize {
    use futures::StreamExt;
    use switchyard_aggregates::store::EventReader;
    let stream = format!("account-{id}");
    let mut pages = store.read_stream(&stream, 0, 1_000);
    let mut count = 0;
    while let Some(page) = pages.next().await {
        count += page.unwrap().len();
    }
    count
}

pub(crate) async fn balance_of(bank: &Bank, id: &str) -> u64 {
    let reply = bank
        .node
        .dispatch(Message::new("balance").with_aggregate_id(id))
        .await;
    reply
        .response()
        .and_then(Response::payload)
        .unwrap_or_else(|| panic!("no balance: {:?}", reply.response()))
        .decode()
        .unwrap()
}

/// An aggregate whose events (plain numbers) serde does not name: they are recorded under the
/// aggregate's name.
#[derive(Default)]
pub(crate) struct Tally;

impl Aggregate for Tally {
    type Event = u64;
    const NAME: &'static str = "tally";

    fn apply(&mut self, _: &u64) {}
}

/// An event whose data no codec reads.
pub(crate) fn undecodable_event() -> NewEvent {
    NewEvent {
        event_type: "junk".into(),
        schema_version: 1,
        data: vec![9, 9, 9].into(),
    }
}

/// Starts the stream of account `id` with `events`, past the runtime.
pub(crate) async fn start_stream(store: &MemoryStore, id: &str, events: Vec<NewEvent>) {
    store
        .append(
            &format!("account-{id}"),
            ExpectedVersion::NoStream,
            events,
            EventMetadata::default(),
        )
        .await
        .unwrap();
}
