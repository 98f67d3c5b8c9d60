//! `/v1/refunds`.

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};

use crate::http::app::{App, SecretRequest};
use crate::http::customers::NoParams;
use crate::http::endpoints::Endpoint;
use crate::params;
use crate::resources::common::list::ListParams;
use crate::resources::refund::{self, CreateParams, ListFilters, Refund, UpdateParams};
use crate::{execute, read};

pub fn endpoints() -> Vec<Endpoint> {
    vec![
        Endpoint::get("/v1/refunds", "GetRefunds", "List refunds", list)
            .list::<Refund, ListFilters>(),
        Endpoint::post("/v1/refunds", "PostRefunds", "Create a refund", create)
            .body::<CreateParams>()
            .returns::<Refund>(),
        Endpoint::get(
            "/v1/refunds/{id}",
            "GetRefundsRefund",
            "Retrieve a refund",
            retrieve,
        )
        .returns::<Refund>(),
        Endpoint::post(
            "/v1/refunds/{id}",
            "PostRefundsRefund",
            "Update a refund",
            update,
        )
        .body::<UpdateParams>()
        .returns::<Refund>(),
        Endpoint::post(
            "/v1/refunds/{id}/cancel",
            "PostRefundsRefundCancel",
            "Cancel a refund",
            cancel,
        )
        .returns::<Refund>(),
    ]
}

async fn create(State(app): State<App>, req: SecretRequest) -> Response {
    let params: CreateParams = params!(req);
    execute!(app, req, |ctx| refund::create(&mut ctx, &params).await)
}

async fn retrieve(State(app): State<App>, Path(id): Path<String>, req: SecretRequest) -> Response {
    if let Err(e) = req.params::<NoParams>() {
        return e.into_response();
    }
    read!(app, req, |ctx| refund::retrieve(&mut ctx, &id).await)
}

async fn update(State(app): State<App>, Path(id): Path<String>, req: SecretRequest) -> Response {
    let params: UpdateParams = params!(req);
    execute!(app, req, |ctx| refund::update(&mut ctx, &id, &params).await)
}

async fn cancel(State(app): State<App>, Path(id): Path<String>, req: SecretRequest) -> Response {
    if let Err(e) = req.params::<NoParams>() {
        return e.into_response();
    }
    execute!(app, req, |ctx| refund::cancel(&mut ctx, &id).await)
}

async fn list(State(app): State<App>, mut req: SecretRequest) -> Response {
    let page = match ListParams::take(&mut req.tree) {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let filters: ListFilters = params!(req);
    read!(app, req, |ctx| refund::list(&mut ctx, &filters, &page)
        .await)
}
