//! `/v1/charges`: thin handlers over [`crate::resources::charge`].

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::http::app::{App, SecretRequest};
use crate::http::customers::NoParams;
use crate::params;
use crate::resources::charge::{self, ChargeListFilters, ChargeUpdate};
use crate::resources::common::list::ListParams;
use crate::resources::payment_intent::{self, ChargeCapture};
use crate::{execute, read};

pub fn routes() -> Router<App> {
    Router::new()
        .route("/v1/charges", get(list))
        .route("/v1/charges/{id}", get(retrieve).post(update))
        .route("/v1/charges/{id}/capture", axum::routing::post(capture))
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
    execute!(app, req, |ctx| payment_intent::capture_charge(
        &mut ctx, &id, &params
    )
    .await)
}

async fn list(State(app): State<App>, mut req: SecretRequest) -> Response {
    let page = match ListParams::take(&mut req.tree) {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let filters: ChargeListFilters = params!(req);
    read!(app, req, |ctx| charge::list(&mut ctx, &filters, &page)
        .await)
}
