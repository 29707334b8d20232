//! What the fault tests run: a node program (an event-sourced account aggregate placed by
//! rendezvous, optionally a scheduler whose alarms print their deliveries), a client that sends
//! deposits with explicit message ids and retries each failed one with the same id until it is
//! acknowledged, and the check of the store afterwards.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use switchyard::aggregates::store::{EventStore, GlobalReader};
use switchyard::aggregates::{Aggregate, CommandResult, Events, MessageHandler};
use switchyard::cluster::{Cluster, ClusterConfig};
use switchyard::messaging::{DispatchOptions, Response};
use switchyard::postgres::{PostgresOptions, PostgresStore};
use switchyard::scheduler::{Scheduler, SchedulerConfig, assigns};
use switchyard::sqlite::SqliteStore;
use switchyard::{Message, Node, Router};
use tokio::io::AsyncBufReadExt;

use crate::children::{ROLE, report};
use crate::hold::{HOLD_AFTER, holding};

const SECRET: &[u8] = b"fault tests, thirty-two bytes ok";
const CLUSTER: &str = "faults";

/// How many accounts the deposits spread over.
pub(crate) const ACCOUNTS: u64 = 24;

/// The environment of a node or client child.
pub(crate) const NAME: &str = "SY_NAME";
/// The address the child binds (its port 0 on loopback, fixed ports in a namespace).
pub(crate) const BIND: &str = "SY_BIND";
/// A member to join through, if any.
pub(crate) const SEED: &str = "SY_SEED";
/// The shared SQLite file holding events and alarms.
pub(crate) const SQLITE: &str = "SY_SQLITE";
/// The shared PostgreSQL server, and the schema of this test.
pub(crate) const POSTGRES_URL: &str = "SY_POSTGRES_URL";
pub(crate) const POSTGRES_SCHEMA: &str = "SY_POSTGRES_SCHEMA";

/// The ports a node uses inside its own namespace, where nothing else listens.
pub(crate) const RPC_PORT: u16 = 7100;
pub(crate) const GOSSIP_PORT: u16 = 7200;

#[derive(Default)]
pub(crate) struct Account;

#[derive(Clone, Serialize, Deserialize)]
pub(crate) enum AccountEvent {
    Deposited(u64),
}

impl Aggregate for Account {
    type Event = AccountEvent;
    const NAME: &'static str = "account";

    fn apply(&mut self, _: &AccountEvent) {}
}

/// The cluster settings of every process of these tests: 100 ms gossip, as the cluster's own
/// suite uses, so a silent node is declared dead within a few seconds.
pub(crate) fn cluster_config(
    bind: SocketAddr,
    gossip: SocketAddr,
    seed: Option<String>,
) -> ClusterConfig {
    ClusterConfig::new(CLUSTER, SECRET.to_vec())
        .rpc_addr(bind)
        .gossip_addr(gossip)
        .seeds(seed)
        .gossip_interval(Duration::from_millis(100))
        .connect_timeout(Duration::from_millis(500))
        .drain_timeout(Duration::from_secs(1))
}

/// The addresses a child binds, from [`BIND`]: port 0 on loopback, the fixed ports elsewhere.
fn bind_addrs() -> (SocketAddr, SocketAddr) {
    let ip: std::net::IpAddr = std::env::var(BIND).unwrap().parse().unwrap();
    let (rpc, gossip) = if ip.is_loopback() {
        (0, 0)
    } else {
        (RPC_PORT, GOSSIP_PORT)
    };
    (SocketAddr::new(ip, rpc), SocketAddr::new(ip, gossip))
}

/// Starts `node`'s cluster on this child's addresses ([`BIND`]), seeded by [`SEED`] if set.
async fn join_cluster(node: &Node) -> Cluster {
    let (rpc, gossip) = bind_addrs();
    let config = cluster_config(rpc, gossip, std::env::var(SEED).ok());
    Cluster::start(node.clone(), config).await.unwrap()
}

/// Runs the role [`ROLE`] names: `node` or `client`.
pub(crate) fn child_main() {
    let role = std::env::var(ROLE).unwrap();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            match role.as_str() {
                "node" => node_main().await,
                "client" => client_main().await,
                other => panic!("unknown role {other}"),
            }
        });
}

/// The events store of this run: the shared SQLite file, or the test's PostgreSQL schema.
pub(crate) async fn open_events() -> Arc<dyn EventStore> {
    if let Ok(path) = std::env::var(SQLITE) {
        return Arc::new(SqliteStore::open(path).unwrap());
    }
    let url = std::env::var(POSTGRES_URL).unwrap();
    let schema = std::env::var(POSTGRES_SCHEMA).unwrap();
    Arc::new(postgres(&url, &schema).await)
}

/// A store on `schema`, without migrating it (the test did, before starting any node).
pub(crate) async fn postgres(url: &str, schema: &str) -> PostgresStore {
    PostgresStore::connect_with(url, PostgresOptions::default().schema(schema).pool_size(4))
        .await
        .unwrap()
}

async fn node_main() {
    let name = std::env::var(NAME).unwrap();
    let node = Node::builder(&name)
        .default_timeout(Duration::from_secs(2))
        .build();
    let cluster = join_cluster(&node).await;
    let accounts = MessageHandler::<Account>::event_sourced(open_events().await);
    let me = name.clone();
    let deposit = move |_: &Account, msg: &Message| -> CommandResult<AccountEvent> {
        let amount: u64 = msg.request()?;
        Ok(Events::one(AccountEvent::Deposited(amount)).reply_with(&me))
    };
    let deposit = accounts.on_maybe_new(deposit);
    let accounts = match std::env::var(HOLD_AFTER) {
        Ok(after) => {
            Router::new("accounts").service("deposit", holding(deposit, after.parse().unwrap()))
        }
        Err(_) => Router::new("accounts").service("deposit", deposit),
    };
    node.register(
        accounts
            .authorize(|_| Ok(()))
            .choose_node(cluster.placement()),
    )
    .unwrap();
    // Alarms ring a private service: each scheduler delivers on its own node, so a delivery
    // printed twice can only come from two schedulers holding one alarm.
    let _scheduler = match std::env::var(SQLITE) {
        Ok(path) => {
            node.register(
                Router::new("alarms")
                    .private("ring", ring)
                    .authorize(|_| Ok(())),
            )
            .unwrap();
            // A 1 s window: every scheduler reads the store each second and holds the alarms
            // due within 2 s, so all three race for each alarm the test saves, ahead of its due
            // time (a sweep would find it only once overdue, and the first sweep would win).
            let config = SchedulerConfig::default()
                .window(Duration::from_secs(1))
                .sweep_interval(Some(Duration::from_secs(1)));
            Some(Scheduler::start(node.clone(), SqliteStore::open(path).unwrap(), config).unwrap())
        }
        Err(_) => None,
    };
    report(&format!("ready {}", cluster.gossip_addr()));
    serve_commands(&cluster, None).await;
}

async fn ring(msg: Message) -> Message {
    let attempts: u32 = msg
        .assigned(assigns::DISPATCH_ATTEMPTS)
        .ok()
        .flatten()
        .unwrap_or_default();
    report(&format!("alarm {} {attempts}", msg.id()));
    msg.ok()
}

async fn client_main() {
    let node = Node::builder(std::env::var(NAME).unwrap()).build();
    let cluster = join_cluster(&node).await;
    report(&format!("ready {}", cluster.gossip_addr()));
    serve_commands(&cluster, Some(&node)).await;
}

/// Answers the test's commands until its stdin closes: `members` (the connected members'
/// names), and, on a client, `deposits FROM COUNT`.
async fn serve_commands(cluster: &Cluster, client: Option<&Node>) {
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let words: Vec<&str> = line.split_whitespace().collect();
        match (words.as_slice(), client) {
            (["members"], _) => report(&format!("members {}", connected_members(cluster))),
            (["deposits", from, count], Some(node)) => {
                let from: u64 = from.parse().unwrap();
                let count: u64 = count.parse().unwrap();
                let load = Load {
                    workers: CLIENT_WORKERS,
                    attempt_timeout: CLIENT_ATTEMPT_TIMEOUT,
                };
                let outcome = deposits(node, from..from + count, load, |ack| {
                    report(&format!(
                        "acked {} {} {}",
                        ack.id,
                        ack.node.as_deref().unwrap_or("?"),
                        ack.attempts
                    ));
                })
                .await;
                report(&format!("batch {}", outcome.summary()));
            }
            _ => panic!("unknown command {line}"),
        }
    }
}

/// The names of the members this node holds a connection to, sorted, joined by commas (`-` for
/// none).
pub(crate) fn connected_members(cluster: &Cluster) -> String {
    let mut names: Vec<String> = cluster
        .members()
        .into_iter()
        .filter(|member| member.connected)
        .map(|member| member.id.name().to_owned())
        .collect();
    names.sort();
    if names.is_empty() {
        "-".to_owned()
    } else {
        names.join(",")
    }
}

/// One acknowledged deposit.
#[derive(Clone, Debug)]
pub(crate) struct Ack {
    pub(crate) id: String,
    /// The node that recorded it, when the answer says (a repeated message's answer may not).
    pub(crate) node: Option<String>,
    pub(crate) attempts: u32,
}

/// What a batch of deposits came to.
#[derive(Debug, Default)]
pub(crate) struct Outcome {
    pub(crate) acked: Vec<Ack>,
    /// Ids never acknowledged within the attempts allowed.
    pub(crate) unacked: Vec<String>,
    /// Failed attempts, by kind of answer.
    pub(crate) failures: BTreeMap<String, usize>,
}

impl Outcome {
    pub(crate) fn summary(&self) -> String {
        let failures: Vec<String> = self
            .failures
            .iter()
            .map(|(kind, count)| format!("{kind}={count}"))
            .collect();
        format!(
            "acked={} unacked={} failed_attempts={} [{}]",
            self.acked.len(),
            self.unacked.len(),
            self.failures.values().sum::<usize>(),
            failures.join(" ")
        )
    }
}

/// How many attempts a deposit gets: enough to outlast the detection of a dead or cut-off node
/// (a few seconds), bounded so a test cannot hang.
const MAX_ATTEMPTS: u32 = 25;
const RETRY_PAUSE: Duration = Duration::from_millis(100);

/// Deposits the client process keeps in flight at once, and how long each attempt may take
/// there: calls cut by a partition get no answer, so they end by their deadline.
const CLIENT_WORKERS: usize = 6;
const CLIENT_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(2);

/// How a batch of deposits is sent.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Load {
    /// Deposits in flight at once.
    pub(crate) workers: usize,
    /// The deadline of each attempt.
    pub(crate) attempt_timeout: Duration,
}

/// The deposit with message id `dep-<i>`, of 1, to account `acc-<i % ACCOUNTS>`.
pub(crate) fn deposit_message(i: u64) -> Message {
    Message::new("deposit")
        .with_id(format!("dep-{i}"))
        .with_aggregate_id(format!("acc-{}", i % ACCOUNTS))
        .with_request(&1_u64)
}

/// Sends the deposits numbered `range`, `load.workers` at a time, each retried with its own
/// message id until acknowledged (at most [`MAX_ATTEMPTS`] times); `on_ack` hears each
/// acknowledgement as it comes.
pub(crate) async fn deposits(
    node: &Node,
    range: std::ops::Range<u64>,
    load: Load,
    on_ack: impl Fn(&Ack) + Send + Sync,
) -> Outcome {
    let next = std::sync::atomic::AtomicU64::new(range.start);
    let outcome = std::sync::Mutex::new(Outcome::default());
    let worker = || async {
        loop {
            let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            if i >= range.end {
                return;
            }
            let (ack, failures) = deposit_until_acked(node, i, load.attempt_timeout).await;
            let mut outcome = outcome.lock().unwrap();
            for failure in failures {
                *outcome.failures.entry(failure).or_default() += 1;
            }
            match ack {
                Some(ack) => {
                    on_ack(&ack);
                    outcome.acked.push(ack);
                }
                None => outcome.unacked.push(format!("dep-{i}")),
            }
        }
    };
    futures::future::join_all((0..load.workers).map(|_| worker())).await;
    outcome.into_inner().unwrap()
}

/// Deposit `i`, sent until acknowledged; the kinds of the failed attempts.
async fn deposit_until_acked(
    node: &Node,
    i: u64,
    attempt_timeout: Duration,
) -> (Option<Ack>, Vec<String>) {
    let mut failures = Vec::new();
    for attempt in 1..=MAX_ATTEMPTS {
        let reply = node
            .dispatch_with(
                deposit_message(i),
                DispatchOptions::with_timeout(attempt_timeout),
            )
            .await;
        match reply.success() {
            Ok(_) => {
                let ack = Ack {
                    id: reply.id().to_owned(),
                    node: reply.answer_opt::<String>().ok().flatten(),
                    attempts: attempt,
                };
                return (Some(ack), failures);
            }
            Err(_) => failures.push(failure_kind(reply.response())),
        }
        tokio::time::sleep(RETRY_PAUSE).await;
    }
    (None, failures)
}

/// The kind of a failed attempt's answer: `unknown` is an error saying the outcome is unknown
/// (the connection to the serving node was lost after the call left), `timeout` a call that
/// waited out its deadline.
fn failure_kind(response: Option<&Response>) -> String {
    match response {
        Some(Response::ServiceTimeout { .. }) => "timeout".into(),
        Some(error @ Response::Error(_)) if error.to_string().contains("is unknown") => {
            "unknown".into()
        }
        Some(Response::Error(_)) => "error".into(),
        Some(Response::NoNodesAvailable(_)) => "no_nodes".into(),
        Some(Response::ServiceUnavailable(_)) => "unavailable".into(),
        Some(Response::Conflict { .. }) => "conflict".into(),
        Some(other) => format!("{other:?}").chars().take(24).collect(),
        None => "no_response".into(),
    }
}

/// How many events each message id recorded in `store`, over every stream.
pub(crate) async fn recorded_by_message(store: &dyn GlobalReader) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    let mut from = 0;
    loop {
        let page = store.read_all(from, 1_000).await.unwrap();
        let Some(last) = page.last() else {
            return counts;
        };
        from = last.position + 1;
        for event in &page {
            *counts.entry(event.metadata.message_id.clone()).or_default() += 1;
        }
    }
}

/// Checks that every acknowledged deposit recorded exactly one event, and that no event came
/// from anything else: the store holds the acknowledged deposits, each once.
pub(crate) fn assert_exactly_once(acked: &[Ack], recorded: &BTreeMap<String, usize>) {
    let missing: Vec<&str> = acked
        .iter()
        .filter(|ack| !recorded.contains_key(&ack.id))
        .map(|ack| ack.id.as_str())
        .collect();
    assert!(
        missing.is_empty(),
        "acknowledged but not stored: {missing:?}"
    );
    let doubled: Vec<(&String, &usize)> = recorded.iter().filter(|(_, n)| **n != 1).collect();
    assert!(doubled.is_empty(), "stored more than once: {doubled:?}");
    let acked_ids: std::collections::BTreeSet<&str> =
        acked.iter().map(|ack| ack.id.as_str()).collect();
    assert_eq!(acked_ids.len(), acked.len(), "a deposit acknowledged twice");
    let stray: Vec<&String> = recorded
        .keys()
        .filter(|id| !acked_ids.contains(id.as_str()))
        .collect();
    assert!(stray.is_empty(), "stored but never acknowledged: {stray:?}");
}
