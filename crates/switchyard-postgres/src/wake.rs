//! What the wake-up of subscriptions (feature `projections`) runs on: connections of their own,
//! outside the pool, each driven by a background task that connects again after a failure and
//! stops with the store.
//!
//! Two tasks use it: the notifier (`notify.rs`), which tells every process's listeners that
//! events were committed, and the listener (`listen.rs`), which hears it and publishes the
//! readable head to subscriptions.

use std::future::Future;
use std::time::Duration;

use futures::StreamExt;
use futures::stream::BoxStream;
use tokio::sync::oneshot;
use tokio_postgres::{AsyncMessage, Client, Config};

/// The first pause before connecting again; it doubles up to [`MAX_RECONNECT_PAUSE`].
const MIN_RECONNECT_PAUSE: Duration = Duration::from_millis(100);
/// The longest pause between connection attempts.
const MAX_RECONNECT_PAUSE: Duration = Duration::from_secs(5);

/// How to open a connection of its own: the store's configuration, TLS and schema.
#[derive(Clone)]
pub(crate) struct Target {
    pub(crate) config: Config,
    #[cfg(feature = "tls")]
    pub(crate) tls: Option<rustls::ClientConfig>,
    pub(crate) schema: String,
}

/// The messages a connection receives besides answers (notifications, notices).
pub(crate) type Messages = BoxStream<'static, Result<AsyncMessage, tokio_postgres::Error>>;

/// Opens a connection of its own: its client, and its messages, which must be polled for the
/// client to get answers.
pub(crate) async fn connect(target: &Target) -> Result<(Client, Messages), tokio_postgres::Error> {
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

/// How a session on a connection of its own ended.
pub(crate) enum Ended {
    /// No connection could be had: the next attempt waits longer.
    NotConnected(tokio_postgres::Error),
    /// The connection was lost after it worked (with the driver's error, or `None`: closed by
    /// the server): the next attempt waits the shortest pause.
    Lost(Option<tokio_postgres::Error>),
}

/// Runs `session` again and again, pausing between failures, until `stopped` fires (its
/// sender, held by the store, is dropped).
pub(crate) async fn reconnecting<F, S>(
    what: &'static str,
    session: F,
    mut stopped: oneshot::Receiver<()>,
) where
    F: Fn() -> S,
    S: Future<Output = Ended>,
{
    let mut pause = MIN_RECONNECT_PAUSE;
    loop {
        let ended = tokio::select! {
            _ = &mut stopped => return,
            ended = session() => ended,
        };
        match ended {
            Ended::NotConnected(error) => {
                pause = (pause * 2).min(MAX_RECONNECT_PAUSE);
                tracing::warn!(%error, retry_in = ?pause, "{what} could not connect");
            }
            Ended::Lost(error) => {
                pause = MIN_RECONNECT_PAUSE;
                let error = error.map(|error| error.to_string());
                tracing::warn!(?error, retry_in = ?pause, "{what} lost its connection");
            }
        }
        tokio::select! {
            _ = &mut stopped => return,
            () = tokio::time::sleep(pause) => {}
        }
    }
}

/// Spawns `task` on the current Tokio runtime; `None` outside one. The task gets the receiver
/// whose sender is returned: dropping it stops the task.
pub(crate) fn spawn<F, T>(task: F) -> Option<oneshot::Sender<()>>
where
    F: FnOnce(oneshot::Receiver<()>) -> T,
    T: Future<Output = ()> + Send + 'static,
{
    let runtime = tokio::runtime::Handle::try_current().ok()?;
    let (stop, stopped) = oneshot::channel();
    runtime.spawn(task(stopped));
    Some(stop)
}
