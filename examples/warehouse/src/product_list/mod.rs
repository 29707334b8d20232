//! The product list: `GET /warehouse/products` answers JSON (`{"products": [...], "position":
//! P, "head": H}`), or the page when the client accepts HTML; `GET /` is the page. The list is
//! the read model the projection keeps; `position` is the last event
//! it has seen and `head` the store's last: the list lags while `position < head` (positions
//! are ordered, not counted, so their difference is not a number of events).

use axum::Json;
use axum::extract::State;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;

use crate::app::App;
use crate::http::RequestOptions;
use crate::page::list_page;

/// Adds the routes.
pub(crate) fn route(router: axum::Router<App>) -> axum::Router<App> {
    router
        .route("/", get(page))
        .route("/warehouse/products", get(list))
}

async fn page(State(app): State<App>, options: RequestOptions) -> Response {
    match app.list(&options).await {
        Ok(view) => Html(list_page(&view, None).into_string()).into_response(),
        Err(error) => error.into_response(),
    }
}

async fn list(State(app): State<App>, options: RequestOptions) -> Response {
    if options.html {
        return page(State(app), options).await;
    }
    match app.list(&options).await {
        Ok(view) => Json(view).into_response(),
        Err(error) => error.into_response(),
    }
}
