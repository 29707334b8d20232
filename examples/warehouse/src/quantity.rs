//! What receiving and shipping share on the HTTP side: the body `{"quantity": N}`, its checks,
//! and the answer with the quantity the command left.

use axum::Json;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use switchyard::Message;

use crate::app::{App, Executed};
use crate::http::{ApiError, Origin, RequestOptions, Submitted, check_sku};
use crate::page::{FormTarget, form_answer};

/// The body of `/increase` and `/decrease`.
#[derive(Clone, Debug, Deserialize)]
pub(crate) struct QuantityChanged {
    pub(crate) quantity: u64,
}

/// The answer: the product, its quantity after the command, its version and the command's
/// position.
#[derive(Debug, Serialize)]
pub(crate) struct QuantityAnswer {
    sku: String,
    #[serde(flatten)]
    executed: Executed,
}

/// Answers `/increase` or `/decrease` on product `sku`: runs command `service` with the request
/// `command` makes of the body's quantity ([`change_quantity`]), then answers JSON with the
/// quantity it left, or, for the page's form, sends the browser back to the page or shows the
/// error beside the form `target`.
pub(crate) async fn answer_quantity_change<C: Serialize>(
    app: &App,
    sku: String,
    service: &'static str,
    Submitted { body, origin }: Submitted<QuantityChanged>,
    options: &RequestOptions,
    target: fn(String) -> FormTarget,
    command: impl FnOnce(u64) -> C,
) -> Response {
    let outcome = change_quantity(app, &sku, service, body, options, command).await;
    match origin {
        Origin::Json => outcome.map(Json).into_response(),
        Origin::Form => form_answer(app, options, outcome.map(drop), target(sku)).await,
    }
}

/// Runs command `service` on product `sku` with the request `command` makes of the body's
/// quantity, once the SKU and the quantity (at least 1) are checked.
async fn change_quantity<C: Serialize>(
    app: &App,
    sku: &str,
    service: &'static str,
    body: Result<QuantityChanged, ApiError>,
    options: &RequestOptions,
    command: impl FnOnce(u64) -> C,
) -> Result<QuantityAnswer, ApiError> {
    check_sku(sku)?;
    let QuantityChanged { quantity } = body?;
    if quantity == 0 {
        return Err(ApiError::Unreadable(
            "invalid quantity 0: give a quantity of at least 1".to_owned(),
        ));
    }
    let message = Message::new(service)
        .with_aggregate_id(sku)
        .with_request(&command(quantity));
    let executed = app.execute(sku, message, options).await?;
    Ok(QuantityAnswer {
        sku: sku.to_owned(),
        executed,
    })
}
