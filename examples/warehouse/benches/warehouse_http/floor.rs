//! The floor: the same axum server, on the same runtime, answering the warehouse's command
//! routes with a static JSON body of the app's own response's size, touching no store.

use std::net::SocketAddr;

use axum::Router;
use axum::http::header;
use axum::routing::post;
use bytes::Bytes;

/// Serves the floor on a free loopback port of the current runtime; gives its address.
pub(crate) async fn serve(body: Bytes) -> SocketAddr {
    let answer = move || {
        let body = body.clone();
        async move { ([(header::CONTENT_TYPE, "application/json")], body) }
    };
    let router = Router::new()
        .route("/warehouse/products/{sku}/increase", post(answer.clone()))
        .route("/warehouse/products/{sku}/decrease", post(answer));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a loopback port");
    let address = listener.local_addr().expect("the floor's address");
    tokio::spawn(async move { axum::serve(listener, router).await });
    address
}
