//! The notifier (feature `projections`): after appends commit, tells the listeners of every
//! process, through `NOTIFY`, that the schema has new events.
//!
//! The notification is sent after the append's commit, on a connection of its own, not inside
//! the append's transaction: PostgreSQL commits notifying transactions one at a time (a lock
//! held through the commit orders its notification queue), which capped commits at a few
//! hundred per second in a trial here, against thousands without. The notifier's transactions
//! write nothing else and commit without waiting for the disk, so they hold that lock
//! briefly; commits made while one is under way share the next. A notification lost (the
//! process dies between the commit and it) delays a wake-up and loses no event: listeners read
//! the head again on their own every few seconds.

use std::future::Future;
use std::sync::{Arc, OnceLock};

use switchyard_aggregates::store::AppendError;
use tokio::sync::{Notify, oneshot};

use crate::wake::{self, Ended, Target};

/// The store's notifier, started by the first append.
pub(crate) struct Notifier {
    target: Target,
    started: OnceLock<Option<Started>>,
}

struct Started {
    committed: Arc<Notify>,
    _stop: oneshot::Sender<()>,
}

impl Notifier {
    pub(crate) fn new(target: Target) -> Self {
        Self {
            target,
            started: OnceLock::new(),
        }
    }

    /// Runs `append`, then, when it may have written (it did, or its outcome is unknown), has
    /// the listeners told. Never waits for the notification.
    pub(crate) async fn after<T>(
        &self,
        append: impl Future<Output = Result<T, AppendError>>,
        writes: bool,
    ) -> Result<T, AppendError> {
        let outcome = append.await;
        if writes && matches!(outcome, Ok(_) | Err(AppendError::Unknown { .. })) {
            self.committed();
        }
        outcome
    }

    fn committed(&self) {
        let started = self.started.get_or_init(|| {
            let committed = Arc::new(Notify::new());
            let target = self.target.clone();
            let signal = committed.clone();
            let stop = wake::spawn(move |stopped| async move {
                let session = || notify(target.clone(), signal.clone());
                wake::reconnecting("the subscription notifier", session, stopped).await;
            })?;
            Some(Started {
                committed,
                _stop: stop,
            })
        });
        if let Some(started) = started {
            // Stores one permit when the notifier is busy: the commits meanwhile share the next
            // notification.
            started.committed.notify_one();
        }
    }
}

/// Sends a notification after each signal, on one connection, until it breaks.
async fn notify(target: Target, committed: Arc<Notify>) -> Ended {
    let (client, mut messages) = match wake::connect(&target).await {
        Ok(connected) => connected,
        Err(error) => return Ended::NotConnected(error),
    };
    let drive = async {
        while let Some(message) = futures::StreamExt::next(&mut messages).await {
            message?;
        }
        Ok(())
    };
    let send = async {
        client
            .query_one(include_str!("sql/notify_session.sql"), &[])
            .await?;
        let statement = client.prepare(include_str!("sql/notify.sql")).await?;
        loop {
            committed.notified().await;
            client.query_one(&statement, &[&target.schema]).await?;
        }
    };
    let outcome: Result<(), tokio_postgres::Error> = tokio::select! {
        driven = drive => driven,
        sent = send => sent,
    };
    Ended::Lost(outcome.err())
}
