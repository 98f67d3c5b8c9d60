//! `/v1/balance_transactions`: thin handlers over
//! [`crate::resources::balance_transaction`].

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};

use crate::http::app::{App, SecretRequest};
use crate::http::customers::NoParams;
use crate::http::endpoints::Endpoint;
use crate::params;
use crate::read;
use crate::resources::balance_transaction::{self, BalanceTransaction, ListFilters};
use crate::resources::common::list::ListParams;

pub fn endpoints() -> Vec<Endpoint> {
    vec![
        Endpoint::get(
            "/v1/balance_transactions",
            "GetBalanceTransactions",
            "List balance transactions",
            list,
        )
        .list::<BalanceTransaction, ListFilters>(),
        Endpoint::get(
            "/v1/balance_transactions/{id}",
            "GetBalanceTransactionsId",
            "Retrieve a balance transaction",
            retrieve,
        )
        .returns::<BalanceTransaction>(),
    ]
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
