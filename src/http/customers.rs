//! `/v1/customers`: thin handlers over [`crate::resources::customer`].

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::http::app::{App, SecretRequest};
use crate::http::list::ListParams;
use crate::params;
use crate::resources::customer::{self, CustomerListFilters, CustomerParams};
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
    execute!(app, req, |ctx| customer::delete(&mut ctx, &id).await)
}

async fn list(State(app): State<App>, mut req: SecretRequest) -> Response {
    let page = match ListParams::take(&mut req) {
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

/// Retrieve calls take no parameters but `expand`.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoParams {}
