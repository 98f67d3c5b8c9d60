//! `/v1/balance_transactions`: thin handlers over
//! [`crate::resources::balance_transaction`].

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::http::app::{App, SecretRequest};
use crate::http::customers::NoParams;
use crate::params;
use crate::read;
use crate::resources::balance_transaction::{self, ListFilters};
use crate::resources::common::list::ListParams;

pub fn routes() -> Router<App> {
    Router::new()
        .route("/v1/balance_transactions", get(list))
        .route("/v1/balance_transactions/{id}", get(retrieve))
}

async fn retrieve(State(app): State<App>, Path(id): Path<String>, req: SecretRequest) -> Response {
    if let Err(e) = req.params::<NoParams>() {
        return e.into_response();
    }
    read!(app, req, |ctx| balance_transaction::retrieve(&mut ctx, &id)
        .await)
}

async fn list(State(app): State<App>, mut req: SecretRequest) -> Response {
    let page = match ListParams::take(&mut req.tree) {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let filters: ListFilters = params!(req);
    read!(app, req, |ctx| balance_transaction::list(
        &mut ctx, &filters, &page
    )
    .await)
}
