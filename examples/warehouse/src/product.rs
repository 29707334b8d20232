//! The product: the warehouse's one aggregate, its state, and the event type that gathers the
//! events of every slice that changes it.
//!
//! Each slice owns its event (a struct in its own folder, such as
//! [`crate::create_product::ProductCreated`]) and says how it changes the
//! product (its `apply_to`) and the product list (its `row`); this file only names them in the
//! enum the store records, so the aggregate can fold them in order.

use serde::{Deserialize, Serialize};
use switchyard::Payload;
use switchyard::aggregates::Aggregate;
use switchyard::messaging::{IntoResponse, Response};

use crate::create_product::ProductCreated;
use crate::decrease_quantity::QuantityDecreased;
use crate::increase_quantity::QuantityIncreased;
use crate::read_model::RowChange;

/// A product in the warehouse, as its events leave it: its name and how many are in stock.
#[derive(Debug, Default)]
pub struct Product {
    /// Its name, given when it was created.
    pub name: String,
    /// How many are in stock; never below zero.
    pub quantity: u64,
}

/// Every event a product records, one variant per slice that records one. Recorded under the
/// variant's name (`Created`, `QuantityIncreased`, `QuantityDecreased`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ProductEvent {
    /// The product was created ([`crate::create_product`]).
    Created(ProductCreated),
    /// Stock was received ([`crate::increase_quantity`]).
    QuantityIncreased(QuantityIncreased),
    /// Stock was shipped ([`crate::decrease_quantity`]).
    QuantityDecreased(QuantityDecreased),
}

impl ProductEvent {
    /// The product list's row for product `sku` as it stands after this event, recorded at
    /// `version` of its stream.
    pub(crate) fn row(&self, sku: &str, version: i64) -> RowChange {
        match self {
            Self::Created(event) => event.row(sku, version),
            Self::QuantityIncreased(event) => event.row(sku, version),
            Self::QuantityDecreased(event) => event.row(sku, version),
        }
    }
}

impl Aggregate for Product {
    type Event = ProductEvent;
    const NAME: &'static str = "product";

    fn apply(&mut self, event: &ProductEvent) {
        match event {
            ProductEvent::Created(event) => event.apply_to(self),
            ProductEvent::QuantityIncreased(event) => event.apply_to(self),
            ProductEvent::QuantityDecreased(event) => event.apply_to(self),
        }
    }
}

/// The SKU of the product whose stream is `stream` (`"product-{sku}"`: a product's aggregate
/// id is its SKU).
pub(crate) fn sku_of_stream(stream: &str) -> &str {
    stream
        .strip_prefix(Product::NAME)
        .and_then(|rest| rest.strip_prefix('-'))
        .unwrap_or(stream)
}

/// Why a product refuses a change of its quantity: the caller's to fix, answered 409.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum Refusal {
    /// Shipping more than is in stock: the quantity never goes below zero.
    #[error("insufficient quantity: {available} in stock, {asked} asked for")]
    InsufficientQuantity {
        /// In stock.
        available: u64,
        /// Asked to ship.
        asked: u64,
    },
    /// Receiving more than a quantity can hold (2^63 - 1, what the databases store).
    #[error("too many: {available} in stock, {asked} more would pass the largest quantity")]
    TooMany {
        /// In stock.
        available: u64,
        /// Asked to receive.
        asked: u64,
    },
}

impl IntoResponse for Refusal {
    /// A validation error carrying the refusal itself, so the HTTP layer answers it typed.
    fn into_response(self) -> Response {
        match Payload::encode(&self) {
            Ok(payload) => Response::ValidationError(payload),
            Err(_) => Response::ValidationError(self.to_string().into()),
        }
    }
}

/// The largest quantity: what a signed 64-bit column holds.
pub(crate) const MAX_QUANTITY: u64 = i64::MAX as u64;
