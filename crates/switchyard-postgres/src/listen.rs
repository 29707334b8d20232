//! The wake-up of subscriptions (`GlobalReader::watch_head`, feature `projections`): a
//! connection of its own `LISTEN`s to the notifications the `events_notify` trigger sends when
//! events commit, and publishes the readable head once it covers them.
//!
//! A notification carries the greatest position its transaction wrote; that position is
//! readable only once every older transaction has ended (the bound `read_all` stops at). So
//! the listener reads the readable head, publishes it, and while it is below a notified
//! position reads again after a short pause (1 ms, doubling to 50 ms): an older transaction is
//! still running, perhaps one that writes no events and will send no notification. A
//! subscription woken by the head reads through `read_all`, so nothing committed late is ever
//! skipped.
//!
//! One listener per store, started by the first `watch_head` and stopped with the store. When
//! its connection breaks it connects again (after 100 ms, doubling to 5 s) and publishes the
//! readable head at once, which covers whatever was committed meanwhile.

use std::sync::OnceLock;
use std::time::Duration;

use futures::StreamExt;
use futures::stream::BoxStream;
use tokio::sync::{oneshot, watch};
use tokio_postgres::{AsyncMessage, Client, Config};

/// The first pause before reading the head again while an older transaction holds it back;
/// it doubles up to [`MAX_HEAD_PAUSE`]. Most such transactions are appends a moment from
/// their commit.
const MIN_HEAD_PAUSE: Duration = Duration::from_millis(1);
/// The longest pause between reads of a held-back head: the wake-up's delay when a long
/// transaction that writes no events holds the order back.
const MAX_HEAD_PAUSE: Duration = Duration::from_millis(50);
/// The first pause before connecting again; it doubles up to [`MAX_RECONNECT_PAUSE`].
const MIN_RECONNECT_PAUSE: Duration = Duration::from_millis(100);
/// The longest pause between connection attempts.
const MAX_RECONNECT_PAUSE: Duration = Duration::from_secs(5);

/// How to open the listening connection: the store's configuration and TLS.
#[derive(Clone)]
pub(crate) struct Target {
    pub(crate) config: Config,
    #[cfg(feature = "tls")]
    pub(crate) tls: Option<rustls::ClientConfig>,
    pub(crate) schema: String,
}

/// The store's listener, started on first use.
pub(crate) struct Listener {
    target: Target,
    started: OnceLock<Started>,
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
    /// `None` outside a Tokio runtime (nothing can run the listener there).
    pub(crate) fn watch(&self) -> Option<watch::Receiver<u64>> {
        if let Some(started) = self.started.get() {
            return Some(started.head.clone());
        }
        let runtime = tokio::runtime::Handle::try_current().ok()?;
        let started = self.started.get_or_init(|| {
            let (publish, head) = watch::channel(0);
            let (stop, stopped) = oneshot::channel();
            runtime.spawn(run(self.target.clone(), publish, stopped));
            Started { head, _stop: stop }
        });
        Some(started.head.clone())
    }
}

/// Follows the notifications until the store is dropped, connecting again after a failure.
async fn run(target: Target, head: watch::Sender<u64>, mut stopped: oneshot::Receiver<()>) {
    let mut pause = MIN_RECONNECT_PAUSE;
    loop {
        let outcome = tokio::select! {
            _ = &mut stopped => return,
            outcome = follow(&target, &head, &mut pause) => outcome,
        };
        if let Err(error) = outcome {
            tracing::warn!(%error, retry_in = ?pause, "subscription listener lost its connection");
        }
        tokio::select! {
            _ = &mut stopped => return,
            () = tokio::time::sleep(pause) => {}
        }
        pause = (pause * 2).min(MAX_RECONNECT_PAUSE);
    }
}

/// Listens on one connection until it breaks. `pause` is reset once it listens.
async fn follow(
    target: &Target,
    head: &watch::Sender<u64>,
    pause: &mut Duration,
) -> Result<(), tokio_postgres::Error> {
    let (client, mut messages) = connect(target).await?;
    // The greatest position notified for this schema.
    let (notify, mut notified) = watch::channel(0_u64);
    let receive = async {
        while let Some(message) = messages.next().await {
            if let AsyncMessage::Notification(notification) = message?
                && let Some(position) = position_in(notification.payload(), &target.schema)
            {
                notify.send_if_modified(|newest| {
                    let moved = position > *newest;
                    *newest = (*newest).max(position);
                    moved
                });
            }
        }
        Ok(())
    };
    let publish = async {
        client
            .query_one(include_str!("sql/listen_session.sql"), &[&target.schema])
            .await?;
        client.batch_execute(include_str!("sql/listen.sql")).await?;
        let readable_head = client
            .prepare(include_str!("sql/readable_head.sql"))
            .await?;
        *pause = MIN_RECONNECT_PAUSE;
        loop {
            // Listening now: what was committed before is covered by the head read next.
            let mut wanted = *notified.borrow_and_update();
            let mut wait = MIN_HEAD_PAUSE;
            loop {
                let readable: i64 = client.query_one(&readable_head, &[]).await?.try_get(0)?;
                let readable = u64::try_from(readable).unwrap_or(0);
                head.send_if_modified(|published| {
                    let moved = readable > *published;
                    *published = (*published).max(readable);
                    moved
                });
                if readable >= wanted {
                    break;
                }
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(MAX_HEAD_PAUSE);
                wanted = wanted.max(*notified.borrow_and_update());
            }
            if notified.changed().await.is_err() {
                return Ok(());
            }
        }
    };
    tokio::select! {
        received = receive => received,
        published = publish => published,
    }
}

/// The position of a notification `"<schema> <position>"` for `schema`.
fn position_in(payload: &str, schema: &str) -> Option<u64> {
    let (from, position) = payload.rsplit_once(' ')?;
    (from == schema).then(|| position.parse().ok()).flatten()
}

type Messages = BoxStream<'static, Result<AsyncMessage, tokio_postgres::Error>>;

/// A connection of its own (not pooled: it must keep listening), with its messages.
async fn connect(target: &Target) -> Result<(Client, Messages), tokio_postgres::Error> {
    #[cfg(feature = "tls")]
    if let Some(tls) = &target.tls {
        let connector = tokio_postgres_rustls::MakeRustlsConnect::new(tls.clone());
        let (client, mut connection) = target.config.connect(connector).await?;
        let messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
        return Ok((client, messages.boxed()));
    }
    let (client, mut connection) = target.config.connect(tokio_postgres::NoTls).await?;
    let messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
    Ok((client, messages.boxed()))
}

#[cfg(test)]
mod tests {
    use super::position_in;

    #[test]
    fn a_notification_is_read_for_its_schema_only() {
        assert_eq!(position_in("billing 42", "billing"), Some(42));
        assert_eq!(position_in("billing 42", "orders"), None);
        assert_eq!(position_in("billing", "billing"), None);
        assert_eq!(position_in("billing x", "billing"), None);
    }
}
