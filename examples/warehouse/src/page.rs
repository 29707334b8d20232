//! The web page, server-rendered with maud: the product list with its quantities, a form to add
//! a product, forms to receive and ship each, errors beside the form that caused them, and in
//! mode `persisted-async` how far the list lags behind the store. Plain forms, no JavaScript.
//!
//! The ids and classes are a contract with the browser test: `form#create-product` with inputs
//! `sku` and `name`; per product a row `#product-{sku}` holding `.quantity` and the forms
//! `.increase` and `.decrease`, each with an input `quantity`; an error in `.error` beside its
//! form; `#lag` with the list's position and the store's head.

use axum::response::{Html, IntoResponse, Redirect, Response};
use maud::{DOCTYPE, Markup, html};

use crate::app::{App, ListView};
use crate::http::{ApiError, RequestOptions};
use crate::read_model::ProductRow;

/// The form a failed command came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum FormTarget {
    Create,
    Increase(String),
    Decrease(String),
}

/// A command's error, shown beside the form it came from.
#[derive(Clone, Debug)]
pub(crate) struct FormError {
    pub(crate) target: FormTarget,
    pub(crate) message: String,
}

const STYLE: &str = "body{font-family:sans-serif;margin:2em;max-width:60em}\
table{border-collapse:collapse;margin-top:1em}td,th{padding:.3em .8em;text-align:left;\
border-bottom:1px solid #ddd}.quantity{text-align:right;font-weight:bold}\
.error{color:#b00020;margin:.2em 0}input[name=quantity]{width:5em}#lag{color:#555}";

fn layout(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                title { (title) }
                style { (STYLE) }
            }
            body { (body) }
        }
    }
}

fn error_beside(error: Option<&FormError>, target: &FormTarget) -> Markup {
    html! {
        @if let Some(error) = error.filter(|error| &error.target == target) {
            p class="error" role="alert" { (error.message) }
        }
    }
}

fn quantity_form(
    row: &ProductRow,
    class: &str,
    label: &str,
    error: Option<&FormError>,
    target: &FormTarget,
) -> Markup {
    html! {
        form class=(class) method="post" action={ "/warehouse/products/" (row.sku) "/" (class) } {
            input name="quantity" type="number" min="1" value="1" required aria-label={ (label) " quantity" };
            " "
            button type="submit" { (label) }
            (error_beside(error, target))
        }
    }
}

fn product_row(row: &ProductRow, error: Option<&FormError>) -> Markup {
    let increase = FormTarget::Increase(row.sku.clone());
    let decrease = FormTarget::Decrease(row.sku.clone());
    html! {
        tr id={ "product-" (row.sku) } {
            td class="sku" { a href={ "/warehouse/products/" (row.sku) } { (row.sku) } }
            td class="name" { (row.name) }
            td class="quantity" { (row.quantity) }
            td { (quantity_form(row, "increase", "Receive", error, &increase)) }
            td { (quantity_form(row, "decrease", "Ship", error, &decrease)) }
        }
    }
}

fn products_table(rows: &[ProductRow], error: Option<&FormError>) -> Markup {
    html! {
        table id="products" {
            thead { tr { th { "SKU" } th { "Name" } th { "Quantity" } th { "Receive" } th { "Ship" } } }
            tbody {
                @for row in rows { (product_row(row, error)) }
            }
        }
    }
}

/// The page at `/`: the list, the forms, and `error` beside the form it came from.
pub(crate) fn list_page(view: &ListView, error: Option<&FormError>) -> Markup {
    layout(
        "Warehouse",
        html! {
            h1 { "Warehouse" }
            @if view.show_lag {
                p id="lag" {
                    "The product list has seen the store up to position "
                    span class="position" { (view.position) }
                    " of "
                    span class="head" { (view.head) }
                    // Positions are ordered, not counted (PostgreSQL's carry transaction ids),
                    // so the page says whether the list is behind, not by how many events.
                    @if view.position >= view.head { " (caught up)." } @else { " (catching up)." }
                }
            }
            form id="create-product" method="post" action="/warehouse/products" {
                input name="sku" placeholder="SKU" required aria-label="SKU";
                " "
                input name="name" placeholder="Name" required aria-label="Name";
                " "
                button type="submit" { "Add product" }
                (error_beside(error, &FormTarget::Create))
            }
            @if view.products.is_empty() {
                p id="empty" { "No products yet: add one above." }
            }
            (products_table(&view.products, error))
        },
    )
}

/// The page of one product: its row and its forms.
pub(crate) fn product_page(row: &ProductRow) -> Markup {
    layout(
        &row.name,
        html! {
            h1 { (row.name) }
            p { a href="/" { "All products" } }
            (products_table(std::slice::from_ref(row), None))
        },
    )
}

/// The answer to a command sent from the page's form: back to the page (303) when it was
/// applied, else the page with the error beside the form, under the error's status.
pub(crate) async fn form_answer(
    app: &App,
    options: &RequestOptions,
    outcome: Result<(), ApiError>,
    target: FormTarget,
) -> Response {
    let Err(error) = outcome else {
        return Redirect::to("/").into_response();
    };
    match app.list(options).await {
        Ok(view) => {
            let shown = FormError {
                target,
                message: error.to_string(),
            };
            (
                error.status(),
                Html(list_page(&view, Some(&shown)).into_string()),
            )
                .into_response()
        }
        Err(unlisted) => unlisted.into_response(),
    }
}
