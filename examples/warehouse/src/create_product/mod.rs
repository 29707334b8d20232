//! Create a product: `POST /warehouse/products` with `{"sku": "...", "name": "..."}` (or the
//! page's form), answered `201 Created` with the new product. A SKU already taken answers 409.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde::{Deserialize, Serialize};
use switchyard::aggregates::{CommandResult, Events, MessageHandler};
use switchyard::{Message, Router as Services};

use crate::app::{App, Executed};
use crate::http::{ApiError, Origin, RequestOptions, Submitted, check_sku};
use crate::page::{FormTarget, form_answer};
use crate::product::{Product, ProductEvent};
use crate::read_model::RowChange;

/// The service name of the command.
pub(crate) const SERVICE: &str = "create_product";

/// The longest product name, in characters.
const MAX_NAME_CHARS: usize = 200;

/// The command: a product with this SKU and name, and nothing in stock.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CreateProduct {
    /// Its SKU: its id from now on.
    pub sku: String,
    /// Its name.
    pub name: String,
}

/// The event: the product exists, with nothing in stock.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProductCreated {
    /// Its name.
    pub name: String,
}

impl ProductCreated {
    /// A product just created has its name and nothing in stock.
    pub(crate) fn apply_to(&self, product: &mut Product) {
        product.name.clone_from(&self.name);
        product.quantity = 0;
    }

    /// Its row in the list: its name, a quantity of 0.
    pub(crate) fn row(&self, sku: &str, version: i64) -> RowChange {
        RowChange {
            sku: sku.to_owned(),
            name: Some(self.name.clone()),
            quantity: 0,
            version,
        }
    }
}

/// The handler: a new product always accepts its creation (the runtime refuses a SKU taken).
fn create(_: &Product, message: &Message) -> CommandResult<ProductEvent> {
    let CreateProduct { name, .. } = message.request()?;
    Ok(Events::one(ProductEvent::Created(ProductCreated { name })))
}

/// Registers the command's service: on a new product only.
pub(crate) fn register(services: Services, products: &MessageHandler<Product>) -> Services {
    services.service(SERVICE, products.on_new(create))
}

/// Adds the route.
pub(crate) fn route(router: axum::Router<App>) -> axum::Router<App> {
    router.route("/warehouse/products", post(handle))
}

/// The new product, as the JSON answer shows it.
#[derive(Serialize)]
struct Created {
    sku: String,
    name: String,
    #[serde(flatten)]
    executed: Executed,
}

fn checked(request: CreateProduct) -> Result<CreateProduct, ApiError> {
    check_sku(&request.sku)?;
    let name = request.name.trim();
    if name.is_empty()
        || name.chars().count() > MAX_NAME_CHARS
        || name.chars().any(char::is_control)
    {
        return Err(ApiError::Unreadable(format!(
            "invalid name: a product's name is 1 to {MAX_NAME_CHARS} characters, without control characters"
        )));
    }
    Ok(CreateProduct {
        sku: request.sku,
        name: name.to_owned(),
    })
}

async fn handle(
    State(app): State<App>,
    options: RequestOptions,
    Submitted { body, origin }: Submitted<CreateProduct>,
) -> Response {
    let outcome = async {
        let request = checked(body?)?;
        let message = Message::new(SERVICE)
            .with_aggregate_id(request.sku.clone())
            .with_request(&request);
        let executed = app.execute(&request.sku, message, &options).await?;
        Ok::<_, ApiError>(Created {
            sku: request.sku,
            name: request.name,
            executed,
        })
    }
    .await;
    match origin {
        Origin::Json => match outcome {
            Ok(created) => (StatusCode::CREATED, Json(created)).into_response(),
            Err(error) => error.into_response(),
        },
        Origin::Form => form_answer(&app, &options, outcome.map(drop), FormTarget::Create).await,
    }
}
