//! The store handle: a pool of connections to one schema.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use backon::ExponentialBuilder;
use deadpool::Runtime;
use deadpool::managed::{QueueMode, Timeouts};

use crate::append::Appender;
use crate::config::{PostgresOptions, valid_schema};
use crate::db::Database;
use crate::error::{ConnectTimeout, Failure, PostgresError};
use crate::pool::{Manager, Pool};

/// Events, snapshots and states in PostgreSQL. Cheap to clone: clones share the pool.
///
/// With the `events` feature it implements every store trait of `switchyard-aggregates`
/// (`EventReader`, `EventAppender`, `EventDeleter`, `GlobalReader`, `SnapshotStore`,
/// `StateStore`); see the [crate docs](crate) for how it appends and orders events.
///
/// # Examples
///
/// ```no_run
/// use switchyard_postgres::{PostgresOptions, PostgresStore};
///
/// # async fn run() -> Result<(), switchyard_postgres::PostgresError> {
/// let store = PostgresStore::connect_with(
///     "postgres://app@db.internal/app",
///     PostgresOptions::default().schema("billing").pool_size(32),
/// )
/// .await?;
/// assert_eq!(store.schema(), "billing");
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct PostgresStore {
    inner: Arc<Inner>,
}

/// What the clones of one store share: the parts it is composed of, each owning its own rules.
struct Inner {
    database: Database,
    appender: Appender,
    schema: String,
    read_all_wait: Duration,
    /// The wake-up of subscriptions: the listener started by the first `watch_head`, the
    /// notifier by the first append.
    #[cfg(feature = "projections")]
    listener: crate::listen::Listener,
    #[cfg(feature = "projections")]
    notifier: crate::notify::Notifier,
}

impl fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let status = self.inner.database.pool().status();
        f.debug_struct("PostgresStore")
            .field("schema", &self.inner.schema)
            .field("connections", &status.size)
            .field("max_connections", &status.max_size)
            .finish()
    }
}

impl PostgresStore {
    /// Connects to the database at `url` (`postgres://user:password@host:port/database`, or a
    /// `key=value` string) with the default [`PostgresOptions`]: schema `switchyard`, created
    /// and migrated if needed.
    ///
    /// # Errors
    ///
    /// When the URL is invalid, the server cannot be reached (after the configured retries) or
    /// the schema cannot be migrated.
    pub async fn connect(url: &str) -> Result<Self, PostgresError> {
        Self::connect_with(url, PostgresOptions::default()).await
    }

    /// Connects to the database at `url` with `options`.
    ///
    /// # Errors
    ///
    /// As [`connect`](Self::connect), and when the schema name is invalid.
    pub async fn connect_with(url: &str, options: PostgresOptions) -> Result<Self, PostgresError> {
        if !valid_schema(&options.schema) {
            return Err(PostgresError::Schema {
                schema: options.schema,
            });
        }
        let mut config: tokio_postgres::Config = url
            .parse()
            .map_err(|source| PostgresError::Url { source })?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(options.connect_timeout);
        }
        if config.get_application_name().is_none() {
            config.application_name("switchyard");
        }
        let timed_out = ConnectTimeout::new(address(&config), options.connect_timeout);
        #[cfg(feature = "projections")]
        let (listener, notifier) = {
            let target = crate::wake::Target {
                config: config.clone(),
                #[cfg(feature = "tls")]
                tls: options.tls.clone(),
                schema: options.schema.clone(),
            };
            (
                crate::listen::Listener::new(target.clone()),
                crate::notify::Notifier::new(target),
            )
        };
        let manager = manager(config, &options);
        let pool = Pool::builder(manager)
            .max_size(options.pool_size)
            .runtime(Runtime::Tokio1)
            // The most recently used connection first: its prepared statements and plans are warm.
            .queue_mode(QueueMode::Lifo)
            .timeouts(Timeouts {
                wait: Some(options.wait_timeout),
                create: Some(options.connect_timeout),
                recycle: Some(options.connect_timeout),
            })
            .build()
            .map_err(|source| PostgresError::Pool { source })?;
        let mut backoff = ExponentialBuilder::default()
            .with_min_delay(options.retry_min_delay)
            .with_max_delay(options.retry_max_delay)
            .with_jitter();
        backoff = if options.retries == 0 {
            backoff.with_max_times(0)
        } else {
            backoff.with_max_times(options.retries)
        };
        let database = Database::new(pool, backoff, timed_out);
        // A quarter of the connections commit batches of appends; the rest serve reads.
        let appender = Appender::start(database.clone(), (options.pool_size / 4).clamp(1, 8));
        let store = Self {
            inner: Arc::new(Inner {
                database,
                appender,
                schema: options.schema,
                read_all_wait: options.read_all_wait,
                #[cfg(feature = "projections")]
                listener,
                #[cfg(feature = "projections")]
                notifier,
            }),
        };
        if options.migrate {
            store.migrate().await?;
        } else {
            // Still prove the server is there, as a migrating connect would.
            let database = store.database();
            database
                .retrying(|| async { database.conn().await.map(drop) })
                .await
                .map_err(connect_failed)?;
        }
        Ok(store)
    }

    /// Applies the migrations this schema lacks (what connecting does unless
    /// [`PostgresOptions::migrate`] turned it off). Safe to run from several processes at once,
    /// and again: an up-to-date schema is left as it is.
    ///
    /// # Errors
    ///
    /// When no connection can be had, a migration fails (all of this run's are rolled back),
    /// or the schema is newer than this library.
    pub async fn migrate(&self) -> Result<(), PostgresError> {
        let database = self.database();
        let mut conn = database
            .retrying(|| database.conn())
            .await
            .map_err(connect_failed)?;
        crate::migrations::run(&mut conn.client, &self.inner.schema).await
    }

    /// The schema holding the store's tables.
    pub fn schema(&self) -> &str {
        &self.inner.schema
    }

    /// The latest migration this library applies.
    pub fn schema_version() -> i32 {
        crate::migrations::latest()
    }

    /// Closes the pool: connections are closed as they come back, and every later call fails.
    pub fn close(&self) {
        self.inner.database.pool().close();
    }

    /// The access to the database every part of the store shares.
    pub(crate) fn database(&self) -> &Database {
        &self.inner.database
    }

    /// The append path.
    pub(crate) fn appender(&self) -> &Appender {
        &self.inner.appender
    }

    /// How long `read_all` waits for the transactions holding back earlier commits.
    pub(crate) fn read_all_wait(&self) -> Duration {
        self.inner.read_all_wait
    }

    /// The wake-up of subscriptions.
    #[cfg(feature = "projections")]
    pub(crate) fn listener(&self) -> &crate::listen::Listener {
        &self.inner.listener
    }

    /// The notifier of the listeners, told after each append.
    #[cfg(feature = "projections")]
    pub(crate) fn notifier(&self) -> &crate::notify::Notifier {
        &self.inner.notifier
    }
}

/// The error of a connection that could not be had when setting the store up.
fn connect_failed(failure: Failure) -> PostgresError {
    match failure.into_source().downcast::<ConnectTimeout>() {
        Ok(timed_out) => PostgresError::ConnectTimeout(*timed_out),
        Err(source) => PostgresError::Connect { source },
    }
}

/// The servers `config` names, as `host:port`, for error messages.
fn address(config: &tokio_postgres::Config) -> String {
    use tokio_postgres::config::Host;
    let ports = config.get_ports();
    let port = |index: usize| {
        ports
            .get(index)
            .or_else(|| ports.first())
            .copied()
            .unwrap_or(5432)
    };
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(index, host)| match host {
            Host::Tcp(name) => format!("{name}:{}", port(index)),
            #[cfg(unix)]
            Host::Unix(dir) => format!("{}/.s.PGSQL.{}", dir.display(), port(index)),
        })
        .collect();
    if hosts.is_empty() {
        format!("localhost:{}", port(0))
    } else {
        hosts.join(", ")
    }
}

fn manager(config: tokio_postgres::Config, options: &PostgresOptions) -> Manager {
    #[cfg(feature = "tls")]
    if let Some(tls) = &options.tls {
        let connector = tokio_postgres_rustls::MakeRustlsConnect::new(tls.clone());
        return Manager::new(config, connector, options.schema.clone());
    }
    Manager::new(config, tokio_postgres::NoTls, options.schema.clone())
}

// The handle is shared across tasks and threads.
const _: () = {
    const fn assert_send_sync<T: Send + Sync + Clone + 'static>() {}
    assert_send_sync::<PostgresStore>();
};
