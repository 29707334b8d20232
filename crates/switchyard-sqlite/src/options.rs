//! How a store opens its database: durability, readers, batching.

use std::time::Duration;

/// How hard SQLite works to keep an acknowledged write across a power loss.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Synchronous {
    /// Every commit is synced to disk before it is acknowledged: an acknowledged event survives
    /// a crash of the process and a power loss. The default.
    #[default]
    Full,
    /// The log is synced at checkpoints only: an acknowledged event survives a crash of the
    /// process, but the last commits may be lost on a power loss. Faster.
    Normal,
}

impl Synchronous {
    pub(crate) fn pragma(self) -> &'static str {
        match self {
            Self::Full => "FULL",
            Self::Normal => "NORMAL",
        }
    }
}

/// Options for [`SqliteStore::open_with`](crate::SqliteStore::open_with).
///
/// ```
/// use switchyard_sqlite::{SqliteOptions, Synchronous};
///
/// let options = SqliteOptions::default().synchronous(Synchronous::Normal).readers(4);
/// assert_eq!(options.readers_count(), 4);
/// ```
#[derive(Clone, Debug)]
pub struct SqliteOptions {
    synchronous: Synchronous,
    readers: usize,
    max_batch: usize,
    busy_timeout: Duration,
    create_if_missing: bool,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        Self {
            synchronous: Synchronous::Full,
            readers: 2,
            max_batch: 512,
            busy_timeout: Duration::from_secs(5),
            create_if_missing: true,
        }
    }
}

impl SqliteOptions {
    /// The durability of commits ([`Synchronous::Full`] by default).
    pub fn synchronous(mut self, synchronous: Synchronous) -> Self {
        self.synchronous = synchronous;
        self
    }

    /// The number of reader threads, each with its own connection (2 by default, at least 1).
    /// Readers never wait for the writer.
    pub fn readers(mut self, readers: usize) -> Self {
        self.readers = readers.max(1);
        self
    }

    /// The most writes committed in one transaction (512 by default, at least 1). Concurrent
    /// writes are batched up to this many: those queued while the previous transaction
    /// committed, then, while fewer than that transaction held, those still arriving, until
    /// 200 µs pass without one (its writers, answered, writing again). A lone writer's write is
    /// committed at once.
    pub fn max_batch(mut self, max_batch: usize) -> Self {
        self.max_batch = max_batch.max(1);
        self
    }

    /// How long a connection waits for another process holding the database's lock (5 s by
    /// default).
    pub fn busy_timeout(mut self, busy_timeout: Duration) -> Self {
        self.busy_timeout = busy_timeout;
        self
    }

    /// Whether opening may start a new store (yes by default): create a missing file, and
    /// create the schema in an empty one. Off, opening refuses a missing file
    /// ([`SqliteError::Missing`](crate::SqliteError::Missing)) and a file that holds no
    /// Switchyard store, such as one truncated to 0 bytes
    /// ([`SqliteError::NoStore`](crate::SqliteError::NoStore)), leaving it untouched: what a
    /// restart or a tool that expects data wants
    /// ([`SqliteStore::open_existing`](crate::SqliteStore::open_existing)).
    pub fn create_if_missing(mut self, create: bool) -> Self {
        self.create_if_missing = create;
        self
    }

    /// The durability setting.
    pub fn synchronous_mode(&self) -> Synchronous {
        self.synchronous
    }

    /// The number of reader threads.
    pub fn readers_count(&self) -> usize {
        self.readers
    }

    pub(crate) fn batch_limit(&self) -> usize {
        self.max_batch
    }

    pub(crate) fn creates(&self) -> bool {
        self.create_if_missing
    }

    pub(crate) fn busy(&self) -> Duration {
        self.busy_timeout
    }
}
