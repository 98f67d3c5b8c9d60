//! `/v1/customers`, with a customer's PaymentMethods: thin handlers over
//! [`crate::resources::customer`] and [`crate::resources::payment_method`].

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use schemars::JsonSchema;

use crate::http::app::{App, SecretRequest};
use crate::http::endpoints::Endpoint;
use crate::http::payment_methods;
use crate::params;
use crate::resources::common::list::ListParams;
use crate::resources::customer::{self, Customer, CustomerListFilters, CustomerParams};
use crate::resources::payment_method::{self, PaymentMethod};
use crate::resources::search::SearchParams;
use crate::{execute, read};

pub fn endpoints() -> Vec<Endpoint> {
    vec![
        Endpoint::get("/v1/customers", "GetCustomers", "List customers", list)
            .list::<Customer, CustomerListFilters>(),
        Endpoint::post(
            "/v1/customers",
            "PostCustomers",
            "Create a customer",
            create,
        )
        .body::<CustomerParams>()
        .returns::<Customer>(),
        Endpoint::get(
            "/v1/customers/search",
            "GetCustomersSearch",
            "Search customers",
            search,
        )
        .search::<Customer>(),
        Endpoint::get(
            "/v1/customers/{id}",
            "GetCustomersCustomer",
            "Retrieve a customer",
            retrieve,
        )
        .returns::<Customer>(),
        Endpoint::post(
            "/v1/customers/{id}",
            "PostCustomersCustomer",
            "Update a customer",
            update,
        )
        .body::<CustomerParams>()
        .returns::<Customer>(),
        Endpoint::delete(
            "/v1/customers/{id}",
            "DeleteCustomersCustomer",
            "Delete a customer",
            delete,
        )
        .deletes::<Customer>(),
        Endpoint::get(
            "/v1/customers/{id}/payment_methods",
            "GetCustomersCustomerPaymentMethods",
            "List a customer's PaymentMethods",
            list_payment_methods,
        )
        .list::<PaymentMethod, payment_method::CustomerListFilters>()
        .without_created(),
        Endpoint::get(
            "/v1/customers/{id}/payment_methods/{payment_method}",
            "GetCustomersCustomerPaymentMethodsPaymentMethod",
            "Retrieve a customer's PaymentMethod",
            retrieve_payment_method,
        )
        .returns::<PaymentMethod>(),
    ]
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
#[derive(serde::Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NoParams {}
