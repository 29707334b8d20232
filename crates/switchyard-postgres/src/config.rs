//! How a store connects: schema, pool, timeouts, retries and TLS.

use std::time::Duration;

/// The schema a store uses unless told otherwise.
pub const DEFAULT_SCHEMA: &str = "switchyard";

/// Options for [`PostgresStore::connect_with`](crate::PostgresStore::connect_with).
///
/// ```
/// use std::time::Duration;
/// use switchyard_postgres::PostgresOptions;
///
/// let options = PostgresOptions::default()
///     .schema("billing")
///     .pool_size(32)
///     .connect_timeout(Duration::from_secs(2));
/// assert_eq!(options.schema_name(), "billing");
/// assert_eq!(options.max_connections(), 32);
/// ```
#[derive(Clone, Debug)]
#[must_use]
pub struct PostgresOptions {
    pub(crate) schema: String,
    pub(crate) pool_size: usize,
    pub(crate) connect_timeout: Duration,
    pub(crate) wait_timeout: Duration,
    pub(crate) retries: usize,
    pub(crate) retry_min_delay: Duration,
    pub(crate) retry_max_delay: Duration,
    pub(crate) migrate: bool,
    pub(crate) read_all_wait: Duration,
    #[cfg(feature = "tls")]
    pub(crate) tls: Option<rustls::ClientConfig>,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        Self {
            schema: DEFAULT_SCHEMA.to_owned(),
            pool_size: 16,
            connect_timeout: Duration::from_secs(5),
            wait_timeout: Duration::from_secs(30),
            retries: 5,
            retry_min_delay: Duration::from_millis(20),
            retry_max_delay: Duration::from_secs(1),
            migrate: true,
            read_all_wait: Duration::from_secs(1),
            #[cfg(feature = "tls")]
            tls: None,
        }
    }
}

impl PostgresOptions {
    /// The schema holding the store's tables (`"switchyard"` by default). It is created if
    /// missing. 1 to 63 lowercase ASCII letters, digits and underscores, not starting with a
    /// digit; anything else is refused by `connect_with`.
    pub fn schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = schema.into();
        self
    }

    /// The most connections the store opens (16 by default, at least 1). A quarter of them (1 to
    /// 8) write batches of concurrent appends, each batch in one statement and one commit; the
    /// others serve reads.
    pub fn pool_size(mut self, pool_size: usize) -> Self {
        self.pool_size = pool_size.max(1);
        self
    }

    /// How long setting up one connection may take, all of it: the TCP connection, TLS,
    /// authentication and the session's first query (5 s by default). A server that takes
    /// longer (one that accepts TCP and never answers, or a wrong address) is reported as
    /// [`PostgresError::ConnectTimeout`](crate::PostgresError::ConnectTimeout) when connecting,
    /// naming this setting and the address, and is not tried again: each retry would wait as
    /// long again.
    ///
    /// 5 s: a server answers a connection's set-up within milliseconds on a local network and
    /// well under a second across regions, so 5 s leaves room for a busy server and a TLS
    /// handshake over a slow link, while a hung server or a wrong address is reported in
    /// seconds, not half a minute. A `connect_timeout` in the URL bounds the TCP connection
    /// alone.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long a call waits for a free connection when all are busy (30 s by default).
    pub fn wait_timeout(mut self, timeout: Duration) -> Self {
        self.wait_timeout = timeout;
        self
    }

    /// How many times an operation is tried again after a failure that left nothing done (the
    /// server unreachable, the connection lost before the statement was sent, or a read's
    /// connection lost): 5 by default, 0 for none. Retries back off exponentially with jitter
    /// between `min` and `max` delay (20 ms and 1 s by default).
    pub fn retries(mut self, retries: usize, min_delay: Duration, max_delay: Duration) -> Self {
        self.retries = retries;
        self.retry_min_delay = min_delay;
        self.retry_max_delay = max_delay.max(min_delay);
        self
    }

    /// Whether connecting applies the store's migrations (on by default). Off, the schema must
    /// already be migrated, e.g. by [`PostgresStore::migrate`](crate::PostgresStore::migrate)
    /// from a deployment step.
    pub fn migrate(mut self, migrate: bool) -> Self {
        self.migrate = migrate;
        self
    }

    /// How long `read_all` waits for transactions that hold back events committed before it
    /// was called (1 s by default; zero: never wait).
    ///
    /// `read_all` returns only events below the oldest transaction still running on the
    /// server (see the crate docs), so an event committed a moment ago is held back while an
    /// older append is still committing. Waiting for those, `read_all` returns everything
    /// committed before the call (up to its limit) as soon as they end, typically within a
    /// millisecond; a transaction left open longer than this wait holds the events after it
    /// back until a later call.
    pub fn read_all_wait(mut self, wait: Duration) -> Self {
        self.read_all_wait = wait;
        self
    }

    /// Connects with TLS, verified as `config` says (feature `tls`; rustls with the `ring`
    /// provider). Add `sslmode=require` to the URL to refuse a server that does not offer TLS;
    /// with the default `prefer`, a plaintext server is accepted.
    #[cfg(feature = "tls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
    pub fn tls(mut self, config: rustls::ClientConfig) -> Self {
        self.tls = Some(config);
        self
    }

    /// The schema.
    pub fn schema_name(&self) -> &str {
        &self.schema
    }

    /// The connect timeout ([`connect_timeout`](Self::connect_timeout)).
    pub fn connect_timeout_duration(&self) -> Duration {
        self.connect_timeout
    }

    /// The pool's size.
    pub fn max_connections(&self) -> usize {
        self.pool_size
    }
}

/// Whether `schema` is a plain lowercase identifier, so it never needs quoting.
pub(crate) fn valid_schema(schema: &str) -> bool {
    let mut chars = schema.chars();
    chars
        .next()
        .is_some_and(|first| first.is_ascii_lowercase() || first == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && schema.len() <= 63
}

/// A rustls client configuration with the `ring` provider that trusts `roots`: the usual
/// argument of [`PostgresOptions::tls`].
///
/// # Errors
///
/// When the provider supports none of rustls' safe protocol versions (it always does).
#[cfg(feature = "tls")]
#[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
pub fn tls_config(roots: rustls::RootCertStore) -> Result<rustls::ClientConfig, rustls::Error> {
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

#[cfg(test)]
mod tests {
    use super::valid_schema;

    #[test]
    fn it_accepts_plain_lowercase_identifiers_only() {
        for good in ["switchyard", "_x", "t_0123abcd", &"a".repeat(63)] {
            assert!(valid_schema(good), "{good}");
        }
        for bad in [
            "",
            "1abc",
            "Upper",
            "with space",
            "quo\"te",
            "semi;colon",
            &"a".repeat(64),
        ] {
            assert!(!valid_schema(bad), "{bad}");
        }
    }
}
