//! `/v1/customers`, with a customer's PaymentMethods: thin handlers over
//! [`crate::resources::customer`] and [`crate::resources::payment_method`].

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::http::app::{App, SecretRequest};
use crate::http::payment_methods;
use crate::params;
use crate::resources::common::list::ListParams;
use crate::resources::customer::{self, CustomerListFilters, CustomerParams};
use crate::resources::payment_method;
use crate::resources::search::SearchParams;
use crate::{execute, read};

pub fn routes() -> Router<App> {
    Router::new()
        .route("/v1/customers", get(list).post(create))
        .route("/v1/customers/search", get(search))
        .route(
            "/v1/customers/{id}",
            get(retrieve).post(update).delete(delete),
        )
        .route(
            "/v1/customers/{id}/payment_methods",
            get(list_payment_methods),
        )
        .route(
            "/v1/customers/{id}/payment_methods/{payment_method}",
            get(retrieve_payment_method),
        )
}

async fn create(State(app): State<App>, req: SecretRequest) -> Response {
    let params: CustomerParams = params!(req);
    execute!(app, req, |ctx| customer::create(&mut ctx, &params).await)
}

async fn retrieve(State(app): State<App>, Path(id): Path<String>, req: SecretRequest) -> Response {
    if let Err(e) = req.params::<NoParams>() {
        return e.into_response();
    }
    read!(app, req, |ctx| customer::retrieve(&mut ctx, &id).await)
}

async fn update(State(app): State<App>, Path(id): Path<String>, req: SecretRequest) -> Response {
    let params: CustomerParams = params!(req);
    execute!(app, req, |ctx| customer::update(&mut ctx, &id, &params)
        .await)
}

async fn delete(State(app): State<App>, Path(id): Path<String>, req: SecretRequest) -> Response {
    if let Err(e) = req.params::<NoParams>() {
        return e.into_response();
    }
    execute!(app, req, |ctx| customer::delete(&mut ctx, &id).await)
}

async fn list(State(app): State<App>, mut req: SecretRequest) -> Response {
    let page = match ListParams::take(&mut req.tree) {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let filters: CustomerListFilters = params!(req);
    read!(app, req, |ctx| customer::list(&mut ctx, &filters, &page)
        .await)
}

async fn search(State(app): State<App>, req: SecretRequest) -> Response {
    let params: SearchParams = params!(req);
    read!(app, req, |ctx| customer::search(&mut ctx, &params).await)
}

/// A customer's PaymentMethods (`GET /v1/customers/{id}/payment_methods`).
async fn list_payment_methods(
    State(app): State<App>,
    Path(customer): Path<String>,
    mut req: SecretRequest,
) -> Response {
    let page = match payment_methods::list_params(&mut req) {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let filters: payment_method::CustomerListFilters = params!(req);
    read!(app, req, |ctx| payment_method::list_for_customer(
        &mut ctx, &customer, &filters, &page
    )
    .await)
}

async fn retrieve_payment_method(
    State(app): State<App>,
    Path((customer, id)): Path<(String, String)>,
    req: SecretRequest,
) -> Response {
    if let Err(e) = req.params::<NoParams>() {
        return e.into_response();
    }
    read!(app, req, |ctx| payment_method::retrieve_for_customer(
        &mut ctx, &customer, &id
    )
    .await)
}

/// Retrieve calls take no parameters but `expand`.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoParams {}
