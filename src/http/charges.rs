//! `/v1/charges` and `/v1/balance_transactions`.

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde::Deserialize;

use crate::ctx::{Ctx, StripeObject};
use crate::error::ApiError;
use crate::http::app::{App, SecretRequest};
use crate::http::customers::NoParams;
use crate::http::list::{self, ListParams};
use crate::params;
use crate::resources::balance_transaction::BalanceTransaction;
use crate::resources::charge::{self, ChargeCapture, ChargeListFilters, ChargeUpdate};
use crate::{execute, read};

pub fn routes() -> Router<App> {
    Router::new()
        .route("/v1/charges", get(list))
        .route("/v1/charges/{id}", get(retrieve).post(update))
        .route("/v1/charges/{id}/capture", axum::routing::post(capture))
        .route("/v1/balance_transactions", get(list_balance_transactions))
        .route(
            "/v1/balance_transactions/{id}",
            get(retrieve_balance_transaction),
        )
}

async fn retrieve(State(app): State<App>, Path(id): Path<String>, req: SecretRequest) -> Response {
    if let Err(e) = req.params::<NoParams>() {
        return e.into_response();
    }
    read!(app, req, |ctx| charge::retrieve(&mut ctx, &id).await)
}

async fn update(State(app): State<App>, Path(id): Path<String>, req: SecretRequest) -> Response {
    let params: ChargeUpdate = params!(req);
    execute!(app, req, |ctx| charge::update(&mut ctx, &id, &params).await)
}

async fn capture(State(app): State<App>, Path(id): Path<String>, req: SecretRequest) -> Response {
    let params: ChargeCapture = params!(req);
    execute!(app, req, |ctx| charge::capture(&mut ctx, &id, &params)
        .await)
}

async fn list(State(app): State<App>, mut req: SecretRequest) -> Response {
    let page = match ListParams::take(&mut req) {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let filters: ChargeListFilters = params!(req);
    read!(app, req, |ctx| charge::list(&mut ctx, &filters, &page)
        .await)
}

async fn retrieve_balance_transaction(
    State(app): State<App>,
    Path(id): Path<String>,
    req: SecretRequest,
) -> Response {
    if let Err(e) = req.params::<NoParams>() {
        return e.into_response();
    }
    read!(app, req, |ctx| fetch_balance_transaction(&mut ctx, &id)
        .await)
}

async fn fetch_balance_transaction(ctx: &mut Ctx, id: &str) -> Result<serde_json::Value, ApiError> {
    let txn: BalanceTransaction = ctx.fetch(id).await?;
    serde_json::to_value(txn).map_err(|e| ApiError::internal("encode", e))
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct BalanceTransactionFilters {
    #[serde(default)]
    source: Option<String>,
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    currency: Option<String>,
    #[serde(default)]
    payout: Option<String>,
}

async fn list_balance_transactions(State(app): State<App>, mut req: SecretRequest) -> Response {
    let page = match ListParams::take(&mut req) {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let filters: BalanceTransactionFilters = params!(req);
    let filter = match (&filters.source, &filters.kind) {
        (Some(s), _) => Some(("source".to_string(), s.clone())),
        (None, Some(t)) => Some(("type".to_string(), t.clone())),
        _ => None,
    };
    let _ = (&filters.currency, &filters.payout);
    read!(app, req, |ctx| list::page(
        &mut ctx,
        BalanceTransaction::OBJECT,
        filter.clone(),
        &page,
        "/v1/balance_transactions"
    )
    .await)
}
