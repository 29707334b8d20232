//! A bank: an account aggregate, its deposit command, and a balance read model served as a
//! query service.

use std::collections::BTreeMap;

use switchyard_aggregates::store::{EventStore, GlobalReader, IntoShared};
use switchyard_aggregates::{CommandResult, DecodedEvent, Events, MessageHandler};
use switchyard_messaging::{Message, Router, State};
use switchyard_projections::{
    BoxError, CheckpointStore, InMemory, ProjectionRunner, QueryError, ReadModel, View,
};

pub(crate) use crate::account::{Account, AccountEvent, PATIENCE};

fn deposit(_: &Account, message: &Message) -> CommandResult<AccountEvent> {
    Ok(Events::one(AccountEvent::Deposited(message.request()?)))
}

/// The commands: `deposit` an amount (the request) into an account (the aggregate id).
pub(crate) fn commands(store: impl IntoShared<dyn EventStore>) -> Router {
    let accounts = MessageHandler::<Account>::event_sourced(store);
    Router::new("accounts")
        .service("deposit", accounts.on_maybe_new(deposit))
        .authorize(|_| Ok(()))
}

/// The read model: each account's balance, by stream.
#[derive(Default)]
pub(crate) struct Balances(pub(crate) BTreeMap<String, u64>);

impl View for Balances {
    type Event = AccountEvent;

    fn apply(&mut self, event: &DecodedEvent<AccountEvent>) -> Result<(), BoxError> {
        let AccountEvent::Deposited(amount) = event.event;
        *self.0.entry(event.stream.to_string()).or_default() += amount;
        Ok(())
    }
}

/// Answers an account's balance (`0` for an account it has not seen).
async fn balance(
    msg: Message,
    State(balances): State<ReadModel<Balances>>,
) -> Result<Message, QueryError> {
    let account: String = msg.request()?;
    let view = balances.read(&msg).await?;
    let balance = view.0.get(&format!("account-{account}")).copied();
    Ok(msg.ok_with(&balance.unwrap_or(0)))
}

/// The query service: `balance` of an account (the request).
pub(crate) fn queries(balances: ReadModel<Balances>) -> Router<ReadModel<Balances>> {
    Router::new("balances")
        .with_state(balances)
        .service("balance", balance)
        .authorize(|_| Ok(()))
}

/// Starts the balance read model's runner on `events`, its checkpoint in `checkpoints`.
pub(crate) fn start_balances(
    events: impl IntoShared<dyn GlobalReader>,
    checkpoints: impl CheckpointStore + 'static,
) -> (ProjectionRunner<InMemory<Balances>>, ReadModel<Balances>) {
    let view = InMemory::<Balances>::new();
    let runner = ProjectionRunner::builder("balances", view.clone(), events, checkpoints)
        .aggregate::<Account>()
        .start()
        .unwrap();
    let balances = view.serve(&runner);
    (runner, balances)
}

/// A deposit command.
pub(crate) fn deposit_of(account: u32, amount: u64) -> Message {
    Message::new("deposit")
        .with_aggregate_id(account.to_string())
        .with_request(&amount)
}

/// A balance query.
pub(crate) fn balance_of(account: u32) -> Message {
    Message::new("balance").with_request(&account.to_string())
}
