//! Ship stock: `POST /warehouse/products/{sku}/decrease` with `{"quantity": N}` (or the page's
//! form), answered with the product's new quantity. Shipping more than is in stock is refused
//! with 409 ("insufficient quantity"); an unknown SKU answers 404.

use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::post;
use serde::{Deserialize, Serialize};
use switchyard::aggregates::{CommandResult, Events, MessageHandler};
use switchyard::{Message, Router as Services};

use crate::app::App;
use crate::http::{RequestOptions, Submitted};
use crate::page::FormTarget;
use crate::product::{Product, ProductEvent, Refusal};
use crate::quantity::{QuantityChanged, answer_quantity_change};
use crate::read_model::RowChange;

/// The service name of the command.
pub(crate) const SERVICE: &str = "decrease_quantity";

/// The command: `quantity` fewer are in stock.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DecreaseQuantity {
    /// How many were shipped; at least 1.
    pub quantity: u64,
}

/// The event: `by` fewer are in stock, which leaves `quantity`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuantityDecreased {
    /// How many were shipped.
    pub by: u64,
    /// The quantity in stock after it.
    pub quantity: u64,
}

impl QuantityDecreased {
    /// The product holds the quantity the event left.
    pub(crate) fn apply_to(&self, product: &mut Product) {
        product.quantity = self.quantity;
    }

    /// Its row in the list: the quantity the event left.
    pub(crate) fn row(&self, sku: &str, version: i64) -> RowChange {
        RowChange {
            sku: sku.to_owned(),
            name: None,
            quantity: self.quantity,
            version,
        }
    }
}

/// The handler: at most what is in stock; the quantity never goes below zero.
fn decrease(product: &Product, message: &Message) -> CommandResult<ProductEvent> {
    let DecreaseQuantity { quantity: by } = message.request()?;
    let quantity = product
        .quantity
        .checked_sub(by)
        .ok_or(Refusal::InsufficientQuantity {
            available: product.quantity,
            asked: by,
        })?;
    Ok(
        Events::one(ProductEvent::QuantityDecreased(QuantityDecreased {
            by,
            quantity,
        }))
        .reply_with(&quantity),
    )
}

/// Registers the command's service: on an existing product only.
pub(crate) fn register(services: Services, products: &MessageHandler<Product>) -> Services {
    services.service(SERVICE, products.on_existing(decrease))
}

/// Adds the route.
pub(crate) fn route(router: axum::Router<App>) -> axum::Router<App> {
    router.route("/warehouse/products/{sku}/decrease", post(handle))
}

async fn handle(
    State(app): State<App>,
    Path(sku): Path<String>,
    options: RequestOptions,
    submitted: Submitted<QuantityChanged>,
) -> Response {
    answer_quantity_change(
        &app,
        sku,
        SERVICE,
        submitted,
        &options,
        FormTarget::Decrease,
        |quantity| DecreaseQuantity { quantity },
    )
    .await
}
