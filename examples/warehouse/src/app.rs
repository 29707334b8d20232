//! The state every route shares: the node commands are dispatched through, the product list,
//! and how far the list has got; and the two things routes do with them: run a command with the
//! consistency the mode and the request ask for, and read the list.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;
use switchyard::aggregates::store::EventStore;
use switchyard::messaging::Response;
use switchyard::{DispatchOptions, Message, Node};
use tokio::time::Instant;

use crate::config::Mode;
use crate::http::{ApiError, RequestOptions};
use crate::product::Refusal;
use crate::progress::Progress;
use crate::read_model::{ProductRow, ProductTable};

/// What the routes share: cheap to clone.
#[derive(Clone)]
pub(crate) struct App {
    inner: Arc<Inner>,
}

struct Inner {
    node: Node,
    mode: Mode,
    events: Arc<dyn EventStore>,
    table: Arc<dyn ProductTable>,
    progress: Progress,
    timeout: Duration,
    /// The greatest position a command answered by this server appended. On PostgreSQL the
    /// store's head is the readable head, below every transaction still open on the server, so
    /// it can stand below an event this server just committed: a strong read waits for this too.
    written: AtomicU64,
}

/// What a command did: the product's version after it, the global position of its last event
/// (none for a repeated command answered from its first run) and the quantity it left.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Executed {
    pub(crate) version: i64,
    pub(crate) position: Option<u64>,
    pub(crate) quantity: Option<u64>,
}

/// The product list and how far it has got: the position of the last event it has seen
/// against the store's head.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct ListView {
    pub(crate) products: Vec<ProductRow>,
    pub(crate) position: u64,
    pub(crate) head: u64,
    /// Whether the page says how far the list lags (mode `persisted-async`).
    #[serde(skip)]
    pub(crate) show_lag: bool,
}

impl App {
    pub(crate) fn new(
        node: Node,
        mode: Mode,
        events: Arc<dyn EventStore>,
        table: Arc<dyn ProductTable>,
        progress: Progress,
        timeout: Duration,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                node,
                mode,
                events,
                table,
                progress,
                timeout,
                written: AtomicU64::new(0),
            }),
        }
    }

    /// Dispatches `message` (with the request's idempotency key as its id) and, in the sync
    /// modes or when the request asks for strong consistency, waits until the product list has
    /// seen its events. `sku` names the product in errors.
    pub(crate) async fn execute(
        &self,
        sku: &str,
        message: Message,
        options: &RequestOptions,
    ) -> Result<Executed, ApiError> {
        let message = match options.key()? {
            Some(key) => message.with_id(key),
            None => message,
        };
        let deadline = Instant::now() + self.inner.timeout;
        let reply = self
            .inner
            .node
            .dispatch_with(message, DispatchOptions::with_timeout(self.inner.timeout))
            .await;
        let executed = executed(sku, &reply)?;
        if let Some(position) = executed.position {
            self.inner.written.fetch_max(position, Ordering::Relaxed);
        }
        if self.inner.mode.is_sync() || options.strong {
            // A repeated command answered from its first run reports no position: its events
            // are at or before what the store and this server had written, so wait for that.
            let position = match executed.position {
                Some(position) => position,
                None => self.written_head().await?,
            };
            self.wait_for(position, deadline).await?;
        }
        Ok(executed)
    }

    /// The store's head, or the last position this server's commands wrote if greater.
    async fn written_head(&self) -> Result<u64, ApiError> {
        let head = self.head().await?;
        Ok(head.max(self.inner.written.load(Ordering::Relaxed)))
    }

    async fn head(&self) -> Result<u64, ApiError> {
        self.inner
            .events
            .head()
            .await
            .map_err(|error| ApiError::Unavailable(format!("the store's head: {error}")))
    }

    async fn wait_for(&self, position: u64, deadline: Instant) -> Result<(), ApiError> {
        self.inner
            .progress
            .wait_for(position, deadline)
            .await
            .map_err(|error| ApiError::Timeout(error.to_string()))
    }

    /// Waits, when the request asks for strong consistency, until the product list has seen
    /// every event the store held when the request came, and every event this server wrote.
    async fn settle(&self, options: &RequestOptions) -> Result<(), ApiError> {
        if options.strong && !self.inner.mode.is_sync() {
            let head = self.written_head().await?;
            self.wait_for(head, Instant::now() + self.inner.timeout)
                .await?;
        }
        Ok(())
    }

    /// The product list, with the list's position against the store's head.
    pub(crate) async fn list(&self, options: &RequestOptions) -> Result<ListView, ApiError> {
        self.settle(options).await?;
        // The position first: the list read after it holds at least what it says.
        let position = self.inner.progress.position().await;
        let products = self
            .inner
            .table
            .list()
            .await
            .map_err(|error| ApiError::internal(&error))?;
        let head = self.written_head().await?.max(position);
        Ok(ListView {
            products,
            position,
            head,
            show_lag: !self.inner.mode.is_sync(),
        })
    }

    /// Product `sku` as the list shows it.
    pub(crate) async fn product(
        &self,
        sku: &str,
        options: &RequestOptions,
    ) -> Result<ProductRow, ApiError> {
        self.settle(options).await?;
        self.inner
            .table
            .get(sku)
            .await
            .map_err(|error| ApiError::internal(&error))?
            .ok_or_else(|| ApiError::UnknownProduct {
                sku: sku.to_owned(),
            })
    }
}

/// The outcome `reply` answers for a command on product `sku`.
fn executed(sku: &str, reply: &Message) -> Result<Executed, ApiError> {
    let position = reply.position();
    match reply.response() {
        Some(Response::OkAt { payload, version }) => Ok(Executed {
            version: *version,
            position,
            quantity: payload.as_ref().and_then(|payload| payload.decode().ok()),
        }),
        Some(Response::Created { version, .. }) => Ok(Executed {
            version: version.unwrap_or_default(),
            position,
            quantity: Some(0),
        }),
        Some(Response::NotFound { .. }) => Err(ApiError::UnknownProduct {
            sku: sku.to_owned(),
        }),
        Some(Response::AlreadyExists { .. }) => Err(ApiError::AlreadyExists {
            sku: sku.to_owned(),
        }),
        Some(Response::Conflict { expected, actual }) => Err(ApiError::Conflict {
            expected: *expected,
            actual: *actual,
        }),
        Some(Response::ValidationError(payload)) => Err(match payload.decode::<Refusal>() {
            Ok(Refusal::InsufficientQuantity { available, asked }) => {
                ApiError::InsufficientQuantity {
                    sku: sku.to_owned(),
                    available,
                    asked,
                }
            }
            Ok(refusal @ Refusal::TooMany { .. }) => ApiError::Refused {
                sku: sku.to_owned(),
                refusal,
            },
            Err(_) => ApiError::Unreadable(payload.as_text().unwrap_or("invalid").to_owned()),
        }),
        Some(Response::MissingId(why)) => Err(ApiError::Unreadable(why.clone())),
        Some(Response::ServiceTimeout { timeout, .. }) => {
            Err(ApiError::Timeout(format!("no answer within {timeout:?}")))
        }
        Some(
            Response::ServiceUnavailable(_)
            | Response::NoNodesAvailable(_)
            | Response::TryAnotherNode(_),
        ) => Err(ApiError::Unavailable(
            reply
                .response()
                .map_or_else(String::new, ToString::to_string),
        )),
        Some(other) => Err(ApiError::Internal(other.to_string())),
        None => Err(ApiError::Internal(
            "the command was not answered".to_owned(),
        )),
    }
}
