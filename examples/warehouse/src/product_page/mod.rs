//! One product: `GET /warehouse/products/{sku}` answers its row as JSON (`{"sku", "name",
//! "quantity", "version"}`), or its page when the client accepts HTML; an unknown SKU answers
//! 404.

use axum::Json;
use axum::extract::{Path, State};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;

use crate::app::App;
use crate::http::{RequestOptions, check_sku};
use crate::page::product_page;

/// Adds the route.
pub(crate) fn route(router: axum::Router<App>) -> axum::Router<App> {
    router.route("/warehouse/products/{sku}", get(show))
}

async fn show(
    State(app): State<App>,
    Path(sku): Path<String>,
    options: RequestOptions,
) -> Response {
    let found = async {
        check_sku(&sku)?;
        app.product(&sku, &options).await
    }
    .await;
    match found {
        Ok(row) if options.html => Html(product_page(&row).into_string()).into_response(),
        Ok(row) => Json(row).into_response(),
        Err(error) => error.into_response(),
    }
}
