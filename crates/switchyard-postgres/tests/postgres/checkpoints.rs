//! The PostgreSQL checkpoint store against the public conformance suite, each check in a fresh
//! schema, and a read model written with its checkpoint in one transaction of the caller's:
//! committed together, lost together when the connection is killed before the commit, refused
//! together once the lease is lost.

use std::time::{Duration, SystemTime};

use switchyard_postgres::{PostgresStore, reset_checkpoint_in, save_checkpoint_in};
use switchyard_projections::checkpoint::{
    Acquire, CheckpointError, CheckpointStore, Lease, ParkedEvent,
};

use crate::support;

switchyard_projections::checkpoint_store_conformance!(async { support::store().await });

/// A store in a fresh schema, a read model table in it, a client of the caller's own on that
/// schema, and the lease of `balances`.
async fn read_model() -> (PostgresStore, tokio_postgres::Client, Lease) {
    let store = support::store().await;
    let client = support::raw_client(&support::url(), store.schema()).await;
    client
        .batch_execute("CREATE TABLE balances (account text PRIMARY KEY, cents bigint NOT NULL)")
        .await
        .unwrap();
    let now = SystemTime::now();
    let Acquire::Acquired(lease) = store
        .acquire("balances", "runner-a", now, now + Duration::from_secs(60))
        .await
        .unwrap()
    else {
        panic!("a new projection is free");
    };
    (store, client, lease)
}

async fn rows(client: &tokio_postgres::Client) -> i64 {
    client
        .query_one("SELECT count(*) FROM balances", &[])
        .await
        .unwrap()
        .get(0)
}

async fn write_read_model(tx: &tokio_postgres::Transaction<'_>, account: &str) {
    tx.execute("INSERT INTO balances VALUES ($1, 100)", &[&account])
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_read_model_and_its_checkpoint_commit_together() {
    let (store, mut client, lease) = read_model().await;
    let tx = client.transaction().await.unwrap();
    write_read_model(&tx, "acc-1").await;
    save_checkpoint_in(&tx, &lease.token, 3).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(rows(&client).await, 1);
    assert_eq!(store.load("balances").await.unwrap(), 3);
}

/// A crash between the read model's write and the commit (here the session killed by the
/// server, as when the runner's process dies) leaves neither written: the runner restarts from
/// the old checkpoint and writes the same effect once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_connection_before_the_commit_leaves_both_unwritten() {
    let (store, mut client, lease) = read_model().await;
    let pid: i32 = client
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    let tx = client.transaction().await.unwrap();
    write_read_model(&tx, "acc-1").await;
    save_checkpoint_in(&tx, &lease.token, 3).await.unwrap();
    let killer = support::raw_client(&support::url(), store.schema()).await;
    let killed: bool = killer
        .query_one("SELECT pg_terminate_backend($1)", &[&pid])
        .await
        .unwrap()
        .get(0);
    assert!(killed);
    assert!(tx.commit().await.is_err(), "the session is gone");
    assert_eq!(rows(&killer).await, 0);
    assert_eq!(store.load("balances").await.unwrap(), 0);
}

/// A dropped transaction rolls back both too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_transaction_leaves_both_unwritten() {
    let (store, mut client, lease) = read_model().await;
    {
        let tx = client.transaction().await.unwrap();
        write_read_model(&tx, "acc-1").await;
        save_checkpoint_in(&tx, &lease.token, 3).await.unwrap();
    }
    assert_eq!(rows(&client).await, 0);
    assert_eq!(store.load("balances").await.unwrap(), 0);
}

/// Once another runner took the lease over, the old runner's transaction is refused at its
/// checkpoint; it rolls back, so its read model write never lands.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_runner_cannot_commit_its_read_model() {
    let (store, mut client, old) = read_model().await;
    let later = SystemTime::now() + Duration::from_secs(120);
    let Acquire::Acquired(new) = store
        .acquire(
            "balances",
            "runner-b",
            later,
            later + Duration::from_secs(60),
        )
        .await
        .unwrap()
    else {
        panic!("the old lease lapsed");
    };
    let tx = client.transaction().await.unwrap();
    write_read_model(&tx, "acc-1").await;
    let refused = save_checkpoint_in(&tx, &old.token, 3).await;
    assert!(
        matches!(refused, Err(CheckpointError::LeaseLost { .. })),
        "{refused:?}"
    );
    assert!(matches!(
        reset_checkpoint_in(&tx, &old.token).await,
        Err(CheckpointError::LeaseLost { .. })
    ));
    tx.rollback().await.unwrap();
    assert_eq!(rows(&client).await, 0);

    let tx = client.transaction().await.unwrap();
    write_read_model(&tx, "acc-1").await;
    save_checkpoint_in(&tx, &new.token, 3).await.unwrap();
    assert!(matches!(
        save_checkpoint_in(&tx, &new.token, 2).await,
        Err(CheckpointError::NotForward { current: 3, .. })
    ));
    tx.commit().await.unwrap();
    assert_eq!(store.load("balances").await.unwrap(), 3);
}

/// A takeover racing a transaction that already saved waits for it (the saved row stays locked):
/// the transaction commits, and only then does the new holder get the lease, in a new
/// generation, from that checkpoint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_takeover_waits_for_the_transaction_that_saved() {
    let (store, mut client, old) = read_model().await;
    let pid: i32 = client
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    let tx = client.transaction().await.unwrap();
    write_read_model(&tx, "acc-1").await;
    save_checkpoint_in(&tx, &old.token, 5).await.unwrap();
    let later = SystemTime::now() + Duration::from_secs(120);
    let other = support::store_in(&store, Default::default()).await;
    let takeover = tokio::spawn(async move {
        other
            .acquire(
                "balances",
                "runner-b",
                later,
                later + Duration::from_secs(60),
            )
            .await
    });
    let observer = support::raw_client(&support::url(), store.schema()).await;
    loop {
        let blocked: i64 = observer
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid))",
                &[&pid],
            )
            .await
            .unwrap()
            .get(0);
        if blocked > 0 {
            break;
        }
        assert!(
            !takeover.is_finished(),
            "the takeover did not wait: {:?}",
            takeover.await
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(!takeover.is_finished());
    tx.commit().await.unwrap();
    let Acquire::Acquired(new) = takeover.await.unwrap().unwrap() else {
        panic!("the old lease lapsed");
    };
    assert!(new.token.generation > old.token.generation);
    assert_eq!(store.load("balances").await.unwrap(), 5);
    assert_eq!(rows(&client).await, 1);
    assert!(matches!(
        store.save(&old.token, 6).await,
        Err(CheckpointError::LeaseLost { .. })
    ));
}

/// A rebuild's reset in the caller's transaction forgets the parked events when it commits,
/// and leaves them when it rolls back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_in_the_callers_transaction_forgets_the_parked_events() {
    let (store, mut client, lease) = read_model().await;
    let parked = ParkedEvent {
        projection: "balances".into(),
        position: 4,
        stream: "account-1".into(),
        version: 3,
        event_type: "Deposited".into(),
        error: "disk full".into(),
        attempts: 2,
        parked_at: SystemTime::UNIX_EPOCH,
    };
    store.park(&lease.token, &parked).await.unwrap();
    assert_eq!(store.load("balances").await.unwrap(), 4);

    let tx = client.transaction().await.unwrap();
    reset_checkpoint_in(&tx, &lease.token).await.unwrap();
    tx.rollback().await.unwrap();
    assert_eq!(store.parked("balances").await.unwrap(), [parked]);

    let tx = client.transaction().await.unwrap();
    reset_checkpoint_in(&tx, &lease.token).await.unwrap();
    tx.commit().await.unwrap();
    assert!(store.parked("balances").await.unwrap().is_empty());
    assert_eq!(store.load("balances").await.unwrap(), 0);
}
