//! The router: every resource's routes, request ids, version echo, and Stripe's 404
//! for unknown URLs.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderValue, Method, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use http_body_util::BodyExt;

use crate::ctx::API_VERSION;
use crate::error::{ApiError, ErrorType};
use crate::http::app::{App, RequestId};
use crate::http::{admin, authenticate, charges, customers, payment_intents, refunds};
use crate::ids;

pub fn router(app: App) -> Router {
    Router::new()
        .merge(admin::routes())
        .merge(customers::routes())
        .merge(crate::http::events::routes())
        .merge(crate::http::webhook_endpoints::routes())
        .merge(crate::http::payment_methods::routes())
        .merge(payment_intents::routes())
        .merge(crate::http::setup_intents::routes())
        .merge(crate::http::confirmation_tokens::routes())
        .merge(crate::http::customer_sessions::routes())
        .merge(charges::routes())
        .merge(crate::http::balance_transactions::routes())
        .merge(refunds::routes())
        .merge(authenticate::routes())
        .merge(crate::http::assets::routes())
        .merge(crate::http::cors::preflights())
        .fallback(unknown_route)
        .method_not_allowed_fallback(unknown_route)
        .layer(crate::http::cors::layer())
        .layer(middleware::from_fn(stamp))
        .with_state(app)
}

async fn unknown_route(method: Method, uri: Uri) -> Response {
    ApiError::new(
        404,
        ErrorType::InvalidRequestError,
        format!(
            "Unrecognized request URL ({method}: {}). Please see https://stripe.com/docs or we can help at https://support.stripe.com/.",
            uri.path()
        ),
    )
    .into_response()
}

/// Gives every request an id and echoes the API version, on every response; and
/// closes the connection after an answer given before the body was read.
async fn stamp(req: Request, next: Next) -> Response {
    // A response sent before its request's body was read (a 401, a 404, a 413)
    // leaves the rest of the body on the connection, so hyper closes it; saying
    // `Connection: close` keeps clients from sending their next request into it.
    let declared: Option<u64> = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let read = Arc::new(AtomicU64::new(0));
    let (parts, body) = req.into_parts();
    let counter = read.clone();
    let body = Body::new(body.map_frame(move |frame| {
        if let Some(data) = frame.data_ref() {
            counter.fetch_add(data.len() as u64, Ordering::Relaxed);
        }
        frame
    }));
    let mut response = tagged(Request::from_parts(parts, body), next).await;
    if declared.is_some_and(|n| read.load(Ordering::Relaxed) < n) {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

async fn tagged(mut req: Request, next: Next) -> Response {
    let request_id = ids::new_id("req");
    let version = req
        .headers()
        .get("stripe-version")
        .cloned()
        .unwrap_or_else(|| HeaderValue::from_static(API_VERSION));
    req.extensions_mut().insert(RequestId(request_id.clone()));
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let mut response = next.run(req).await;
    tracing::debug!(%method, %path, status = response.status().as_u16(), request_id, "request");
    let headers = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        headers.insert("request-id", v);
    }
    headers.insert("stripe-version", version);
    response
}
