//! The warehouse of elixir_cqrs_example on Switchyard: products with quantities, created,
//! received and shipped through an HTTP/JSON API and a server-rendered page, in the seed's
//! three modes (`memory-sync`, `persisted-sync`, `persisted-async`).
//!
//! The code is organised by vertical slice, as the seed recommends: each feature is a folder
//! holding its command, its event, its handler, its part of the read model and its HTTP route
//! ([`create_product`], [`increase_quantity`], [`decrease_quantity`], [`product_list`],
//! [`product_page`]). What they share sits beside them: the aggregate ([`product`]), the read
//! model's tables, the page's layout, the HTTP errors. `docs/guides/warehouse.md` walks through
//! it.
//!
//! [`serve`] starts a server (the binary's default command, also what the tests and the
//! benchmark start in-process on `127.0.0.1:0`); [`project`] runs the product list's projection
//! alone, for mode `persisted-async` with `--projector separate`.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod app;
mod config;
pub mod create_product;
pub mod decrease_quantity;
mod error;
mod http;
pub mod increase_quantity;
mod page;
pub mod product;
pub mod product_list;
pub mod product_page;
mod progress;
mod quantity;
mod read_model;
mod storage;

use std::net::SocketAddr;
use std::sync::Arc;

use switchyard::aggregates::MessageHandler;
use switchyard::aggregates::store::{EventStore, GlobalReader};
use switchyard::projections::{ProjectionRunner, RunnerError};
use switchyard::{Node, Router as Services};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::app::App;
#[doc(inline)]
pub use crate::config::{Config, Database, Mode, Projector};
#[doc(inline)]
pub use crate::error::StartError;
use crate::product::Product;
use crate::progress::Progress;
use crate::read_model::ProductsProjection;
#[doc(inline)]
pub use crate::read_model::{PROJECTION, ProductRow, ReadModelError};
use crate::storage::Stores;

/// Starts a warehouse as `config` says and serves it on `config.listen` until
/// [`Server::shutdown`]. Returns the address bound (port 0 picks a free one) and the server.
///
/// # Errors
///
/// [`StartError`]: the mode and database do not go together, a store cannot be opened, the
/// address cannot be bound.
pub async fn serve(config: Config) -> Result<(SocketAddr, Server), StartError> {
    let stores = storage::open(&config).await?;
    let node = Node::new("warehouse");
    let products = MessageHandler::<Product>::event_sourced(stores.events.clone());
    let services = [
        create_product::register,
        increase_quantity::register,
        decrease_quantity::register,
    ]
    .into_iter()
    .fold(Services::new("warehouse"), |services, register| {
        register(services, &products)
    })
    // The HTTP front end is the only caller: every call it makes is allowed.
    .authorize(|_| Ok(()));
    node.register(services)
        .map_err(|error| StartError::Register(error.into()))?;

    let runner = match (config.mode, config.projector) {
        (Mode::PersistedAsync, Projector::Separate) => None,
        _ => Some(Arc::new(
            start_projection(&stores, stores.followed(&config, false), &config)
                .map_err(StartError::Projection)?,
        )),
    };
    let progress = match &runner {
        Some(runner) => Progress::Local(runner.clone()),
        None => Progress::Separate(stores.checkpoints.clone()),
    };
    let app = App::new(
        node,
        config.mode,
        stores.events.clone(),
        stores.table.clone(),
        progress,
        config.timeout,
    );
    let router = [
        product_list::route,
        product_page::route,
        create_product::route,
        increase_quantity::route,
        decrease_quantity::route,
    ]
    .into_iter()
    .fold(axum::Router::new(), |router, route| route(router))
    .fallback(http::no_route)
    .with_state(app);

    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| StartError::Listen {
            address: config.listen,
            source,
        })?;
    let address = listener.local_addr().map_err(|source| StartError::Listen {
        address: config.listen,
        source,
    })?;
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await
    });
    Ok((
        address,
        Server {
            events: stores.events,
            runner,
            stop,
            task,
        },
    ))
}

/// A running server, made by [`serve`].
pub struct Server {
    events: Arc<dyn EventStore>,
    /// The projection's runner in this process, also held by the routes until they stop.
    runner: Option<Arc<ProjectionRunner<ProductsProjection>>>,
    stop: oneshot::Sender<()>,
    task: JoinHandle<std::io::Result<()>>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server").finish_non_exhaustive()
    }
}

impl Server {
    /// The event store the server writes: the source of truth the product list follows.
    pub fn events(&self) -> &Arc<dyn EventStore> {
        &self.events
    }

    /// Stops accepting connections, lets the requests in flight finish, then stops the
    /// projection running in this process and releases its lease, so a server started next on
    /// the same database takes it over at once. Returns once all that is done.
    ///
    /// # Errors
    ///
    /// The server's I/O error, if it stopped on one.
    pub async fn shutdown(self) -> std::io::Result<()> {
        let _ = self.stop.send(());
        let served = self.task.await.map_err(std::io::Error::other)?;
        // The routes are gone with the server's task, and their share of the runner with them.
        if let Some(runner) = self.runner.and_then(Arc::into_inner)
            && let Err(error) = runner.stop().await
        {
            tracing::warn!(error = %error, "the product list's projection had stopped on an error");
        }
        served
    }
}

fn start_projection(
    stores: &Stores,
    events: Arc<dyn GlobalReader>,
    config: &Config,
) -> Result<ProjectionRunner<ProductsProjection>, RunnerError> {
    ProjectionRunner::builder(
        PROJECTION,
        ProductsProjection {
            table: stores.table.clone(),
        },
        events,
        stores.checkpoints.clone(),
    )
    .aggregate::<Product>()
    .lease_ttl(config.lease_ttl)
    .start()
}

/// The product list's projection, running alone (`warehouse project`), made by [`project`].
pub struct Projection {
    runner: ProjectionRunner<ProductsProjection>,
}

impl std::fmt::Debug for Projection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Projection")
            .field("runner", &self.runner)
            .finish()
    }
}

impl Projection {
    /// The position of the last event the product list has seen.
    pub fn position(&self) -> u64 {
        self.runner.position()
    }

    /// Stops the projection and releases its lease, so another projector takes over at once.
    ///
    /// # Errors
    ///
    /// The error the projection had stopped on by itself.
    pub async fn stop(self) -> Result<(), RunnerError> {
        self.runner.stop().await.map(drop)
    }
}

/// Runs the product list's projection of the warehouse `config` names, apart from any server:
/// for mode `persisted-async` with [`Projector::Separate`]. It takes the projection's lease
/// (waiting while another projector holds it), then follows the store from its checkpoint.
///
/// # Errors
///
/// [`StartError::NotAsync`] for another mode, and the stores' errors.
pub async fn project(config: Config) -> Result<Projection, StartError> {
    if config.mode != Mode::PersistedAsync {
        return Err(StartError::NotAsync);
    }
    let stores = storage::open(&config).await?;
    // The server writes the events; this process only reads them.
    let events = stores.followed(&config, true);
    let runner = start_projection(&stores, events, &config).map_err(StartError::Projection)?;
    Ok(Projection { runner })
}
