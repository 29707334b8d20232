//! The seed's scenarios as data, run in each mode on each store: create, receive, ship, refuse
//! below zero, unknown products, unreadable requests, idempotent retries, and the page's forms.

use reqwest::Method;
use reqwest::header::{ACCEPT, CONTENT_TYPE, LOCATION};
use serde_json::Value;

use crate::support::{Running, Target, holds, start};

/// A request's body.
#[derive(Clone, Copy)]
enum Body {
    None,
    Json(&'static str),
    Form(&'static str),
    Text(&'static str),
}

/// One request and what it must answer.
struct Step {
    method: Method,
    path: &'static str,
    body: Body,
    key: Option<&'static str>,
    html: bool,
    status: u16,
    /// A JSON value the answer must hold ([`holds`]).
    json: Option<&'static str>,
    /// Text the answer must contain.
    text: Option<&'static str>,
}

fn step(method: Method, path: &'static str, body: Body) -> Step {
    Step {
        method,
        path,
        body,
        key: None,
        html: false,
        status: 200,
        json: None,
        text: None,
    }
}

fn get(path: &'static str) -> Step {
    step(Method::GET, path, Body::None)
}

fn post(path: &'static str, json: &'static str) -> Step {
    step(Method::POST, path, Body::Json(json))
}

fn post_form(path: &'static str, form: &'static str) -> Step {
    Step {
        html: true,
        ..step(Method::POST, path, Body::Form(form))
    }
}

impl Step {
    fn status(self, status: u16) -> Self {
        Self { status, ..self }
    }
    fn json(self, json: &'static str) -> Self {
        Self {
            json: Some(json),
            ..self
        }
    }
    fn text(self, text: &'static str) -> Self {
        Self {
            text: Some(text),
            ..self
        }
    }
    fn key(self, key: &'static str) -> Self {
        Self {
            key: Some(key),
            ..self
        }
    }
    fn html(self) -> Self {
        Self { html: true, ..self }
    }
}

const PRODUCTS: &str = "/warehouse/products";
const BOLT: &str = "/warehouse/products/bolt";
const RECEIVE_BOLT: &str = "/warehouse/products/bolt/increase";
const SHIP_BOLT: &str = "/warehouse/products/bolt/decrease";

/// The seed's scenarios, and what the API adds to them.
fn scenario() -> Vec<Step> {
    vec![
        get(PRODUCTS).json(r#"{"products": []}"#),
        // Create a product: it has nothing in stock.
        post(PRODUCTS, r#"{"sku": "bolt", "name": "Bolt"}"#)
            .status(201)
            .json(r#"{"sku": "bolt", "name": "Bolt", "quantity": 0, "version": 0}"#),
        post(PRODUCTS, r#"{"sku": "bolt", "name": "Another"}"#)
            .status(409)
            .json(r#"{"error": "already_exists"}"#),
        // Receive and ship.
        post(RECEIVE_BOLT, r#"{"quantity": 10}"#).json(r#"{"sku": "bolt", "quantity": 10, "version": 1}"#),
        post(SHIP_BOLT, r#"{"quantity": 4}"#).json(r#"{"quantity": 6, "version": 2}"#),
        // Below zero is refused, and changes nothing.
        post(SHIP_BOLT, r#"{"quantity": 7}"#)
            .status(409)
            .json(r#"{"error": "insufficient_quantity"}"#)
            .text("insufficient quantity: bolt has 6 in stock, 7 were asked for"),
        get(BOLT).json(r#"{"sku": "bolt", "name": "Bolt", "quantity": 6, "version": 2}"#),
        // Unknown products.
        post("/warehouse/products/nut/increase", r#"{"quantity": 1}"#)
            .status(404)
            .json(r#"{"error": "unknown_product"}"#),
        post("/warehouse/products/nut/decrease", r#"{"quantity": 1}"#).status(404),
        get("/warehouse/products/nut").status(404).json(r#"{"error": "unknown_product"}"#),
        // Routes that do not exist.
        get("/warehouse/nothing").status(404).json(r#"{"error": "no_route"}"#),
        post("/warehouse/products/bolt/increase/twice", r#"{"quantity": 1}"#).status(404),
        // Unreadable requests.
        post(SHIP_BOLT, r#"{"quantity": "#).status(400).json(r#"{"error": "unreadable"}"#),
        post(SHIP_BOLT, r#"{"quantity": -1}"#).status(400),
        post(SHIP_BOLT, r#"{"quantity": 0}"#).status(400),
        post(SHIP_BOLT, r#"{"amount": 1}"#).status(400),
        step(Method::POST, SHIP_BOLT, Body::Text("1")).status(400),
        post(PRODUCTS, r#"{"sku": "a bolt", "name": "Bolt"}"#).status(400),
        post(PRODUCTS, r#"{"sku": "washer", "name": "  "}"#).status(400),
        post(SHIP_BOLT, r#"{"quantity": 1}"#).key("").status(400),
        // A retried command is applied once.
        post(SHIP_BOLT, r#"{"quantity": 1}"#)
            .key("ship-bolt-1")
            .json(r#"{"quantity": 5, "version": 3}"#),
        post(SHIP_BOLT, r#"{"quantity": 1}"#)
            .key("ship-bolt-1")
            .json(r#"{"version": 3}"#),
        post(PRODUCTS, r#"{"sku": "nut", "name": "Nut"}"#).key("create-nut").status(201),
        post(PRODUCTS, r#"{"sku": "nut", "name": "Nut"}"#).key("create-nut").status(201),
        get(PRODUCTS).json(
            r#"{"products": [
                {"sku": "bolt", "name": "Bolt", "quantity": 5, "version": 3},
                {"sku": "nut", "name": "Nut", "quantity": 0, "version": 0}
            ]}"#,
        ),
        // The page, and its forms: applied, answered with a redirect to the page.
        get("/").html().text(r#"<tr id="product-bolt">"#),
        get(PRODUCTS).html().text(r#"<form id="create-product""#),
        get(BOLT).html().text(r#"<td class="quantity">5</td>"#),
        post_form(PRODUCTS, "sku=washer&name=Washer").status(303),
        post_form("/warehouse/products/washer/increase", "quantity=3").status(303),
        post_form("/warehouse/products/washer/decrease", "quantity=1").status(303),
        get(PRODUCTS).html().text(r#"<tr id="product-washer">"#),
        get("/warehouse/products/washer").json(r#"{"quantity": 2, "version": 2}"#),
        // A refused form answers the page with the error beside the form.
        post_form("/warehouse/products/washer/decrease", "quantity=5")
            .status(409)
            .text(r#"<p class="error" role="alert">insufficient quantity: washer has 2 in stock, 5 were asked for</p>"#),
        post_form("/warehouse/products/washer/decrease", "quantity=").status(400).text(r#"class="error""#),
        post_form(PRODUCTS, "sku=washer&name=Washer").status(409).text("exists already"),
    ]
}

async fn run(running: &Running, step: &Step) {
    let mut request = running.request(step.method.clone(), step.path);
    request = match step.body {
        Body::None => request,
        Body::Json(json) => request.header(CONTENT_TYPE, "application/json").body(json),
        Body::Form(form) => request
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(form),
        Body::Text(text) => request.header(CONTENT_TYPE, "text/plain").body(text),
    };
    if let Some(key) = step.key {
        request = request.header("Idempotency-Key", key);
    }
    if step.html {
        request = request.header(ACCEPT, "text/html,application/xhtml+xml");
    }
    if running.strong_reads && step.method == Method::GET {
        request = request.header("Consistency", "strong");
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let location = response.headers().get(LOCATION).cloned();
    let text = response.text().await.unwrap();
    let what = format!("{} {} {:?}", step.method, step.path, step.key);
    assert_eq!(status, step.status, "{what} answered {text}");
    if status == 303 {
        assert_eq!(location.unwrap(), "/", "{what} redirects to the page");
    }
    if let Some(expected) = step.json {
        let expected: Value = serde_json::from_str(expected).unwrap();
        let actual: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        assert!(
            holds(&actual, &expected),
            "{what} answered {text}, not {expected}"
        );
    }
    if let Some(expected) = step.text {
        assert!(
            text.contains(expected),
            "{what} answered {text}, without {expected}"
        );
    }
}

async fn check(target: Target) {
    let running = start(target).await;
    for step in &scenario() {
        run(&running, step).await;
    }
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seed_scenarios_pass_in_memory_sync() {
    check(Target::MemorySync).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seed_scenarios_pass_in_persisted_sync_on_sqlite() {
    check(Target::SqliteSync).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seed_scenarios_pass_in_persisted_async_on_sqlite() {
    check(Target::SqliteAsync).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seed_scenarios_pass_in_persisted_sync_on_postgres() {
    check(Target::PostgresSync).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seed_scenarios_pass_in_persisted_async_on_postgres() {
    check(Target::PostgresAsync).await;
}

/// In the sync modes every response comes after the list has seen the command: a read without
/// asking for consistency sees it at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_mode_reads_its_writes_without_asking() {
    for target in [Target::MemorySync, Target::SqliteSync] {
        let running = start(target).await;
        running
            .post(PRODUCTS, serde_json::json!({"sku": "bolt", "name": "Bolt"}))
            .await;
        for n in 1..=20_u64 {
            let (_, answered) = running
                .post(RECEIVE_BOLT, serde_json::json!({"quantity": 1}))
                .await;
            assert_eq!(answered["quantity"], n);
            let plain = running.request(Method::GET, BOLT).send().await.unwrap();
            let row: Value = plain.json().await.unwrap();
            assert_eq!(row["quantity"], n, "{target:?}");
        }
        running.shutdown().await;
    }
}

/// In mode `persisted-async`, a command asking for strong consistency answers once the list
/// has seen it, so a plain read after it sees it; the page says where the list is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persisted_async_waits_for_a_command_that_asks_for_strong_consistency() {
    let running = start(Target::SqliteAsync).await;
    let strong = |path: &str| {
        running
            .request(Method::POST, path)
            .query(&[("consistency", "strong")])
    };
    let created = strong(PRODUCTS)
        .json(&serde_json::json!({"sku": "bolt", "name": "Bolt"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    for n in 1..=20_u64 {
        let received = strong(RECEIVE_BOLT)
            .json(&serde_json::json!({"quantity": 1}))
            .send()
            .await
            .unwrap();
        assert_eq!(received.status(), 200);
        let row: Value = running
            .request(Method::GET, BOLT)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(row["quantity"], n);
    }
    let page = running
        .request(Method::GET, "/")
        .header("Consistency", "strong")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains(r#"<p id="lag">"#)
            && page.contains(r#"<span class="position">21</span> of <span class="head">21</span>"#),
        "{page}"
    );
    running.shutdown().await;
}
