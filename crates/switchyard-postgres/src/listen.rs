//! The listener (feature `projections`): publishes the readable head to subscriptions
//! (`GlobalReader::watch_head`), woken by the notifications of every process's notifier
//! (`notify.rs`) on a connection of its own that `LISTEN`s.
//!
//! A notification says that events of the schema were committed; they are readable only once
//! every older transaction has ended (the bound `read_all` stops at). So on each notification
//! the listener reads the readable head and the newest committed position, publishes the
//! former, and while it is below the latter reads again after a short pause (1 ms, doubling to
//! 50 ms): an older transaction is still running, perhaps one that writes no events and will
//! notify nothing. Without notifications it reads again every [`REREAD`], which makes up for a
//! notification lost with its process, or events written by a process without the notifier. A
//! subscription woken by the head reads through `read_all`, so nothing committed late is ever
//! skipped.
//!
//! One listener per store, started by the first `watch_head` and stopped with the store. After
//! its connection broke it connects again and publishes the head at once, which covers
//! whatever was committed meanwhile.

use std::sync::OnceLock;
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::{oneshot, watch};
use tokio_postgres::AsyncMessage;

use crate::wake::{self, Ended, Target};

/// The first pause before reading the head again while an older transaction holds it back;
/// it doubles up to [`MAX_HEAD_PAUSE`]. Most such transactions are appends a moment from
/// their commit.
const MIN_HEAD_PAUSE: Duration = Duration::from_millis(1);
/// The longest pause between reads of a held-back head: the wake-up's delay when a long
/// transaction that writes no events holds the order back.
const MAX_HEAD_PAUSE: Duration = Duration::from_millis(50);
/// How often the head is read without a notification: the longest delay of a wake-up whose
/// notification was lost, for one indexed read per interval.
const REREAD: Duration = Duration::from_secs(2);

/// The store's listener, started on first use.
pub(crate) struct Listener {
    target: Target,
    started: OnceLock<Option<Started>>,
}

/// A running listener: its head, and the end of its task when this is dropped (with the
/// store).
struct Started {
    head: watch::Receiver<u64>,
    _stop: oneshot::Sender<()>,
}

impl Listener {
    pub(crate) fn new(target: Target) -> Self {
        Self {
            target,
            started: OnceLock::new(),
        }
    }

    /// The readable head, published after commits; starts the listener on the first call.
    /// `None` when the first call came from outside a Tokio runtime (nothing could run it).
    pub(crate) fn watch(&self) -> Option<watch::Receiver<u64>> {
        let started = self.started.get_or_init(|| {
            let (publish, head) = watch::channel(0);
            let target = self.target.clone();
            let stop = wake::spawn(move |stopped| async move {
                let session = || listen(target.clone(), publish.clone());
                wake::reconnecting("the subscription listener", session, stopped).await;
            })?;
            Some(Started { head, _stop: stop })
        });
        started.as_ref().map(|started| started.head.clone())
    }
}

/// Listens on one connection until it breaks, publishing the head to `head`.
async fn listen(target: Target, head: watch::Sender<u64>) -> Ended {
    let (client, mut messages) = match wake::connect(&target).await {
        Ok(connected) => connected,
        Err(error) => return Ended::NotConnected(error),
    };
    // Bumped by each notification for this schema.
    let (notify, mut notified) = watch::channel(());
    let receive = async {
        while let Some(message) = messages.next().await {
            if let AsyncMessage::Notification(notification) = message?
                && notification.payload() == target.schema
            {
                notify.send_replace(());
            }
        }
        Ok(())
    };
    let publish = async {
        client
            .query_one(include_str!("sql/listen_session.sql"), &[&target.schema])
            .await?;
        client.batch_execute(include_str!("sql/listen.sql")).await?;
        let heads = client.prepare(include_str!("sql/listen_heads.sql")).await?;
        let read = || async {
            let row = client.query_one(&heads, &[]).await?;
            let position = |index| {
                row.try_get::<_, i64>(index)
                    .map(|p| u64::try_from(p).unwrap_or(0))
            };
            Ok::<_, tokio_postgres::Error>((position(0)?, position(1)?))
        };
        loop {
            // Listening already: what was committed before this read is covered by it.
            notified.borrow_and_update();
            let (mut readable, newest) = read().await?;
            let mut pause = MIN_HEAD_PAUSE;
            loop {
                head.send_if_modified(|published| {
                    let moved = readable > *published;
                    *published = (*published).max(readable);
                    moved
                });
                if readable >= newest {
                    break;
                }
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(MAX_HEAD_PAUSE);
                readable = read().await?.0;
            }
            if let Ok(Err(_)) = tokio::time::timeout(REREAD, notified.changed()).await {
                return Ok(());
            }
        }
    };
    let outcome: Result<(), tokio_postgres::Error> = tokio::select! {
        received = receive => received,
        published = publish => published,
    };
    Ended::Lost(outcome.err())
}
