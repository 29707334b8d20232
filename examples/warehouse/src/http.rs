//! What every route shares: the errors and the status each answers, a command's body read from
//! JSON or from an HTML form, and the headers and query a command or a query takes.

use axum::Json;
use axum::extract::{Form, FromRequest, FromRequestParts, Query, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use switchyard::messaging::names::{self, NameKind};

use crate::product::Refusal;

/// Why a request failed, each with the status it answers.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ApiError {
    /// 400: the body or a header could not be read, or says something impossible.
    #[error("{0}")]
    Unreadable(String),
    /// 404: no product has this SKU.
    #[error("unknown product: no product has the SKU {sku}")]
    UnknownProduct { sku: String },
    /// 404: no route has this path and method.
    #[error(
        "no route for {method} {path}: the API is GET and POST /warehouse/products, GET /warehouse/products/{{sku}}, POST /warehouse/products/{{sku}}/increase and /decrease"
    )]
    NoRoute { method: String, path: String },
    /// 409: a product with this SKU exists already.
    #[error("product {sku} exists already")]
    AlreadyExists { sku: String },
    /// 409: shipping more than is in stock.
    #[error("insufficient quantity: {sku} has {available} in stock, {asked} were asked for")]
    InsufficientQuantity {
        sku: String,
        available: u64,
        asked: u64,
    },
    /// 409: another refusal of the product's.
    #[error("{sku}: {refusal}")]
    Refused { sku: String, refusal: Refusal },
    /// 409: another command changed the product first, more often than the retries allow.
    #[error(
        "the product changed meanwhile (expected version {expected}, found {actual:?}): try again"
    )]
    Conflict { expected: i64, actual: Option<i64> },
    /// 503: no answer, or the product list did not catch up, before the deadline. The command
    /// may still have been applied: retry with the same `Idempotency-Key`.
    #[error(
        "timed out: {0}; the command may still be applied, retry with the same Idempotency-Key"
    )]
    Timeout(String),
    /// 503: the service or the store cannot take requests now.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// 500: the warehouse failed.
    #[error("internal error: {0}")]
    Internal(String),
}

/// The JSON body of an error.
#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'static str,
    message: &'a str,
}

impl ApiError {
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            Self::Unreadable(_) => StatusCode::BAD_REQUEST,
            Self::UnknownProduct { .. } | Self::NoRoute { .. } => StatusCode::NOT_FOUND,
            Self::AlreadyExists { .. }
            | Self::InsufficientQuantity { .. }
            | Self::Refused { .. }
            | Self::Conflict { .. } => StatusCode::CONFLICT,
            Self::Timeout(_) | Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Self::Unreadable(_) => "unreadable",
            Self::UnknownProduct { .. } => "unknown_product",
            Self::NoRoute { .. } => "no_route",
            Self::AlreadyExists { .. } => "already_exists",
            Self::InsufficientQuantity { .. } => "insufficient_quantity",
            Self::Refused { .. } => "refused",
            Self::Conflict { .. } => "conflict",
            Self::Timeout(_) => "timeout",
            Self::Unavailable(_) => "unavailable",
            Self::Internal(_) => "internal",
        }
    }

    pub(crate) fn internal(error: &(dyn std::error::Error + 'static)) -> Self {
        let mut text = error.to_string();
        let mut source = error.source();
        while let Some(cause) = source {
            text.push_str(": ");
            text.push_str(&cause.to_string());
            source = cause.source();
        }
        Self::Internal(text)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let message = self.to_string();
        let body = ErrorBody {
            error: self.kind(),
            message: &message,
        };
        (self.status(), Json(body)).into_response()
    }
}

/// How a command's body came: as JSON (answered with JSON) or from the page's form (answered
/// with a redirect to the page, or the page with the error beside the form).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Origin {
    Json,
    Form,
}

/// A command's body, read from JSON or from a form (`application/x-www-form-urlencoded`), or
/// why it could not be read: the route answers the error in the body's own way.
pub(crate) struct Submitted<T> {
    pub(crate) body: Result<T, ApiError>,
    pub(crate) origin: Origin,
}

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequest<S> for Submitted<T> {
    type Rejection = std::convert::Infallible;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let form = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .is_some_and(|value| value.starts_with("application/x-www-form-urlencoded"));
        Ok(if form {
            Self {
                body: Form::<T>::from_request(request, state)
                    .await
                    .map(|Form(body)| body)
                    .map_err(|rejection| ApiError::Unreadable(rejection.body_text())),
                origin: Origin::Form,
            }
        } else {
            Self {
                body: Json::<T>::from_request(request, state)
                    .await
                    .map(|Json(body)| body)
                    .map_err(|rejection| ApiError::Unreadable(rejection.body_text())),
                origin: Origin::Json,
            }
        })
    }
}

/// The header naming a retried command: its value becomes the command's message id, so the
/// command is applied once however often it is sent.
pub(crate) const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// The header (or query parameter) asking to read one's own writes in mode
/// `persisted-async`: `strong` waits until the product list has seen the command (or, for a
/// query, everything the store held when it came).
pub(crate) const CONSISTENCY: &str = "consistency";

/// The query parameter `consistency`.
#[derive(Deserialize)]
struct ConsistencyQuery {
    consistency: Option<String>,
}

/// What a request asks besides its body: an idempotency key, strong consistency, HTML.
#[derive(Clone, Debug)]
pub(crate) struct RequestOptions {
    /// The `Idempotency-Key` header, checked as a message id.
    pub(crate) idempotency_key: Result<Option<String>, String>,
    /// `Consistency: strong` or `?consistency=strong`.
    pub(crate) strong: bool,
    /// Whether the client accepts HTML (a browser).
    pub(crate) html: bool,
}

impl<S: Send + Sync> FromRequestParts<S> for RequestOptions {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        // An unreadable query asks for nothing.
        let strong_query = Query::<ConsistencyQuery>::try_from_uri(&parts.uri)
            .ok()
            .and_then(|Query(query)| query.consistency)
            .is_some_and(|consistency| consistency.eq_ignore_ascii_case("strong"));
        Ok(Self {
            idempotency_key: idempotency_key(&parts.headers),
            strong: strong_query
                || header_text(&parts.headers, CONSISTENCY)
                    .is_some_and(|value| value.trim().eq_ignore_ascii_case("strong")),
            html: accepts_html(&parts.headers),
        })
    }
}

fn header_text<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|value| value.to_str().ok())
}

fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, String> {
    let Some(value) = headers.get(IDEMPOTENCY_KEY) else {
        return Ok(None);
    };
    let key = value
        .to_str()
        .map_err(|_| "the Idempotency-Key header must be visible ASCII".to_owned())?;
    if key.is_empty() {
        return Err(
            "the Idempotency-Key header is empty: give a unique key per command".to_owned(),
        );
    }
    names::check(NameKind::MessageId, key).map_err(|error| error.to_string())?;
    Ok(Some(key.to_owned()))
}

/// Whether the `Accept` header names HTML (as browsers' do); JSON otherwise.
fn accepts_html(headers: &HeaderMap) -> bool {
    header_text(headers, header::ACCEPT.as_str()).is_some_and(|accept| accept.contains("text/html"))
}

impl RequestOptions {
    /// The idempotency key, or the 400 a malformed one answers.
    pub(crate) fn key(&self) -> Result<Option<&str>, ApiError> {
        match &self.idempotency_key {
            Ok(key) => Ok(key.as_deref()),
            Err(why) => Err(ApiError::Unreadable(why.clone())),
        }
    }
}

/// The longest SKU, in bytes.
pub(crate) const MAX_SKU_BYTES: usize = 64;

/// Checks a SKU: 1 to [`MAX_SKU_BYTES`] ASCII letters, digits, `-`, `_` or `.`, so it reads
/// the same in a URL, an HTML id and a stream name.
pub(crate) fn check_sku(sku: &str) -> Result<(), ApiError> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    if sku.is_empty() || sku.len() > MAX_SKU_BYTES || !sku.chars().all(allowed) {
        return Err(ApiError::Unreadable(format!(
            "invalid SKU {sku:?}: a SKU is 1 to {MAX_SKU_BYTES} ASCII letters, digits, '-', '_' or '.'"
        )));
    }
    Ok(())
}

/// The answer to a request no route takes: a JSON 404 like every other error.
pub(crate) async fn no_route(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError::NoRoute {
        method: method.to_string(),
        path: uri.path().to_owned(),
    }
}
