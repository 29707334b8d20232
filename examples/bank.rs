//! A bank account as an event-sourced aggregate behind router services: open an account,
//! deposit, withdraw (an overdraft is refused), read the balance, and send one command twice to
//! see it answered once. A policy reacts to large withdrawals by asking for a review. The events
//! end up in a new SQLite file (its path is printed first), or in PostgreSQL when given a URL,
//! and are read back, decoded, at the end.
//!
//! The read side (module `read_model`, at the end): a balance read model kept in memory by a
//! projection and served as a query service, read right after a withdrawal at the withdrawal's
//! position (read your writes).
//!
//! Run it from the repository root:
//!
//! ```text
//! cargo run --example bank
//! cargo run --example bank -- --database-url postgres://user@127.0.0.1:5432/bank
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use switchyard::aggregates::store::EventStore;
use switchyard::aggregates::{Aggregate, CommandResult, DecodedEvent, Events, MessageHandler};
use switchyard::messaging::{IntoResponse, Response};
use switchyard::projections::{BoxError, CheckpointStore, Policy, ProjectionRunner};
use switchyard::{Message, Node, Router};

#[derive(Default, Serialize, Deserialize)]
struct Account {
    owner: String,
    balance: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
enum AccountEvent {
    Opened { owner: String },
    Deposited { amount: u64 },
    Withdrawn { amount: u64 },
}

impl Aggregate for Account {
    type Event = AccountEvent;
    const NAME: &'static str = "account";

    fn apply(&mut self, event: &AccountEvent) {
        match event {
            AccountEvent::Opened { owner } => self.owner.clone_from(owner),
            AccountEvent::Deposited { amount } => self.balance += amount,
            AccountEvent::Withdrawn { amount } => self.balance -= amount,
        }
    }
}

fn open(_: &Account, msg: &Message) -> CommandResult<AccountEvent> {
    let owner: String = msg.request()?;
    Ok(Events::one(AccountEvent::Opened { owner }))
}

fn deposit(_: &Account, msg: &Message) -> CommandResult<AccountEvent> {
    let amount: u64 = msg.request()?;
    Ok(Events::one(AccountEvent::Deposited { amount }))
}

/// Why the bank refuses a command: its own error type, which chooses the response its values
/// answer, so a command returns it with `?` like any other error.
#[derive(Debug, thiserror::Error)]
enum BankError {
    #[error("insufficient funds: {owner} has {balance}, asked {asked}")]
    InsufficientFunds {
        owner: String,
        balance: u64,
        asked: u64,
    },
}

impl IntoResponse for BankError {
    /// An overdraft is a request this account cannot accept: a validation error, the caller's to
    /// fix. Not `Error` (the bank did not fail), not `Forbidden` (that is the router's
    /// `authorize` refusing the caller), not `Conflict` (a version race, which a retry may win;
    /// retrying an overdraft fails alike).
    fn into_response(self) -> Response {
        Response::ValidationError(self.to_string().into())
    }
}

fn withdraw(account: &Account, msg: &Message) -> CommandResult<AccountEvent> {
    let amount: u64 = msg.request()?;
    covered(account, amount)?;
    Ok(Events::one(AccountEvent::Withdrawn { amount }))
}

fn covered(account: &Account, amount: u64) -> Result<(), BankError> {
    if amount > account.balance {
        return Err(BankError::InsufficientFunds {
            owner: account.owner.clone(),
            balance: account.balance,
            asked: amount,
        });
    }
    Ok(())
}

fn balance(account: &Account, _: &Message) -> CommandResult<AccountEvent> {
    Ok(Events::none().reply_with(&account.balance))
}

/// A review of an account, asked for by the policy below.
#[derive(Default)]
struct Review;

#[derive(Clone, Debug, Serialize, Deserialize)]
struct ReviewRequested {
    amount: u64,
}

impl Aggregate for Review {
    type Event = ReviewRequested;
    const NAME: &'static str = "review";
    fn apply(&mut self, _: &ReviewRequested) {}
}

fn request_review(_: &Review, msg: &Message) -> CommandResult<ReviewRequested> {
    let amount: u64 = msg.request()?;
    Ok(Events::one(ReviewRequested { amount }))
}

/// A withdrawal of 50 or more asks for a review of its account. The runner sends the command
/// with an id derived from the event, so a redelivered withdrawal is reviewed once.
struct LargeWithdrawals;

impl Policy for LargeWithdrawals {
    type Event = AccountEvent;

    async fn react(
        &mut self,
        event: &DecodedEvent<AccountEvent>,
    ) -> Result<Vec<Message>, BoxError> {
        let (AccountEvent::Withdrawn { amount }, Some(account)) =
            (&event.event, event.stream.strip_prefix("account-"))
        else {
            return Ok(Vec::new());
        };
        if *amount < 50 {
            return Ok(Vec::new());
        }
        let review = Message::new("request_review")
            .with_aggregate_id(account)
            .with_request(amount);
        Ok(vec![review])
    }
}

fn show(label: &str, reply: &Message) {
    // `success` says which response came back (and why a refusal was refused); `version` reads
    // the version it reports, and `answer_opt` the balance a query returns (`None` for the
    // commands that return nothing).
    let shown = match reply.success() {
        Err(refusal) => format!("refused: {refusal}"),
        Ok(response) => match (reply.version(), reply.answer_opt::<u64>()) {
            (Some(version), Ok(Some(balance))) => {
                format!("ok at version {version}: balance {balance}")
            }
            _ => response.to_string(),
        },
    };
    println!("{label:<32} -> {shown}");
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();

    // One call wires the store, the runtime of live accounts and the command services; events
    // are recorded under their variant names (`Opened`, `Deposited`, `Withdrawn`).
    let (store, checkpoints) = open_store().await?;
    let accounts = MessageHandler::<Account>::event_sourced(store.clone());
    let reviews = MessageHandler::<Review>::event_sourced(store.clone());
    let node = Node::new("bank");
    node.register(
        Router::new("accounts")
            .service("open_account", accounts.on_new(open))
            .service("deposit", accounts.on_existing(deposit))
            .service("withdraw", accounts.on_existing(withdraw))
            .service("balance", accounts.on_existing(balance))
            .service("request_review", reviews.on_maybe_new(request_review))
            .authorize(|_| Ok(())),
    )?;
    // The policy follows the accounts' events (its checkpoint is kept in the same store) and
    // sends its commands through the node.
    let policy = ProjectionRunner::policy(
        "large-withdrawals",
        LargeWithdrawals,
        node.clone(),
        store.clone(),
        checkpoints,
    )
    .aggregate::<Account>()
    .start()?;

    // The read side: the balance read model and its query service.
    let balances = read_model::start(store.clone(), &node)?;

    let id = "acc-42";
    let call = |service: &str| Message::new(service).with_aggregate_id(id);
    show(
        "open_account ada",
        &node
            .dispatch(call("open_account").with_request("ada"))
            .await,
    );
    show(
        "deposit 100",
        &node.dispatch(call("deposit").with_request(&100_u64)).await,
    );
    let withdrawn = node.dispatch(call("withdraw").with_request(&30_u64)).await;
    show("withdraw 30", &withdrawn);
    read_model::show(
        "read_balance after withdraw 30",
        &node
            .dispatch(read_model::balance_after(id, &withdrawn))
            .await,
    );
    show(
        "withdraw 60 (asks for a review)",
        &node.dispatch(call("withdraw").with_request(&60_u64)).await,
    );
    show(
        "withdraw 500",
        &node.dispatch(call("withdraw").with_request(&500_u64)).await,
    );

    let repeated = call("deposit").with_id("deposit-once").with_request(&5_u64);
    show(
        "deposit 5 (message deposit-once)",
        &node.dispatch(repeated.clone()).await,
    );
    show("deposit 5 (same message)", &node.dispatch(repeated).await);
    show("balance", &node.dispatch(call("balance")).await);
    show(
        "deposit to acc-7",
        &node
            .dispatch(
                Message::new("deposit")
                    .with_aggregate_id("acc-7")
                    .with_request(&1_u64),
            )
            .await,
    );

    println!("\nevents of {id}, read back:");
    for recorded in accounts.runtime().repo().events(id).await? {
        println!(
            "  v{} #{} {:<9} {:?} (message {})",
            recorded.version,
            recorded.position,
            recorded.event_type,
            recorded.event,
            recorded.metadata.message_id
        );
    }
    balances.stop().await?;

    // Wait until the policy has passed every event, then read the reviews it asked for.
    let head = store.head().await?;
    policy
        .wait_for(head, tokio::time::Instant::now() + Duration::from_secs(10))
        .await?;
    policy.stop().await?;
    println!("\nreviews of {id}, asked for by the policy:");
    for recorded in reviews.runtime().repo().events(id).await? {
        println!(
            "  {:?} (message {}, caused by {})",
            recorded.event, recorded.metadata.message_id, recorded.metadata.causation_id
        );
    }
    Ok(())
}

/// The events' store and the policy's checkpoint store, one database: PostgreSQL when
/// `--database-url` is given, else a new SQLite file in the temporary directory.
async fn open_store() -> Result<Stores, Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    if let Some(arg) = args.next() {
        if arg == "--database-url" {
            let url = args.next().ok_or("--database-url needs a URL")?;
            println!("store: PostgreSQL at {url}, schema `switchyard`\n");
            let store = Arc::new(switchyard::postgres::PostgresStore::connect(&url).await?);
            return Ok((store.clone(), store));
        }
        return Err(format!("unknown argument `{arg}`; try --database-url postgres://...").into());
    }
    let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?;
    let path = std::env::temp_dir().join(format!("switchyard-bank-{}.db", stamp.as_millis()));
    println!("store: SQLite file {}\n", path.display());
    let store = Arc::new(switchyard::sqlite::SqliteStore::open(&path)?);
    Ok((store.clone(), store))
}

type Stores = (Arc<dyn EventStore>, Arc<dyn CheckpointStore>);

/// The read side: each account's balance, kept in memory by a projection of the accounts'
/// events and served as the query service `read_balance`.
mod read_model {
    use std::collections::BTreeMap;
    use std::sync::Arc;
    use std::time::Duration;

    use switchyard::aggregates::DecodedEvent;
    use switchyard::aggregates::store::EventStore;
    use switchyard::messaging::State;
    use switchyard::projections::{
        BoxError, InMemory, MemoryCheckpointStore, ProjectionRunner, QueryError, QueryMessage,
        ReadModel, View,
    };
    use switchyard::{Message, Node, Router};

    use super::{Account, AccountEvent};

    /// How long a query waits for the read model to reach the position it asks for: well
    /// below the dispatch timeout (5 s), so a read model that lags answers a timeout of its own.
    const READ_WAIT: Duration = Duration::from_secs(1);

    /// Each account's balance, by account id.
    #[derive(Default)]
    pub(super) struct Balances(BTreeMap<String, u64>);

    impl View for Balances {
        type Event = AccountEvent;

        fn apply(&mut self, event: &DecodedEvent<AccountEvent>) -> Result<(), BoxError> {
            let account = event
                .stream
                .strip_prefix("account-")
                .unwrap_or(&event.stream);
            let balance = self.0.entry(account.to_owned()).or_default();
            match event.event {
                AccountEvent::Opened { .. } => {}
                AccountEvent::Deposited { amount } => *balance += amount,
                AccountEvent::Withdrawn { amount } => *balance -= amount,
            }
            Ok(())
        }
    }

    /// The query: an account's balance (`None` for an account the read model has not seen),
    /// once the read model has processed the position the query asks for, if any.
    async fn read_balance(
        msg: Message,
        State(balances): State<ReadModel<Balances>>,
    ) -> Result<Message, QueryError> {
        let account: String = msg.request()?;
        let view = balances.read(&msg).await?;
        Ok(msg.ok_with(&view.0.get(&account)))
    }

    /// Starts the read model's runner on `store` and registers its query service on `node`.
    /// The read model lives in this process's memory, so its checkpoint does too: it is rebuilt
    /// from the store's first event each time the program starts.
    pub(super) fn start(
        store: Arc<dyn EventStore>,
        node: &Node,
    ) -> Result<ProjectionRunner<InMemory<Balances>>, Box<dyn std::error::Error>> {
        let view = InMemory::<Balances>::new();
        let runner = ProjectionRunner::builder(
            "balances",
            view.clone(),
            store,
            MemoryCheckpointStore::new(),
        )
        .aggregate::<Account>()
        .start()?;
        node.register(
            Router::new("balances")
                .with_state(view.serve(&runner))
                .service("read_balance", read_balance)
                .authorize(|_| Ok(())),
        )?;
        Ok(runner)
    }

    /// A query for `account`'s balance that sees the effects of the command `reply` answers.
    pub(super) fn balance_after(account: &str, reply: &Message) -> Message {
        Message::new("read_balance")
            .with_request(account)
            .with_read_after(reply, READ_WAIT)
    }

    pub(super) fn show(label: &str, reply: &Message) {
        let shown = match reply.answer::<Option<u64>>() {
            Ok(Some(balance)) => format!("balance {balance} (read model)"),
            Ok(None) => "no such account in the read model".to_owned(),
            Err(refusal) => format!("refused: {refusal}"),
        };
        println!("{label:<32} -> {shown}");
    }
}
