//! `/v1/prices`: thin handlers over [`crate::resources::price`]. Stripe has no
//! route to delete a Price: it is archived (`active=false`) instead.

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};

use crate::http::app::{App, SecretRequest};
use crate::http::customers::NoParams;
use crate::http::endpoints::Endpoint;
use crate::params;
use crate::resources::common::list::ListParams;
use crate::resources::price::{self, Price, PriceCreateParams, PriceListFilters, PriceParams};
use crate::resources::search::SearchParams;
use crate::{execute, read};

pub fn endpoints() -> Vec<Endpoint> {
    vec![
        Endpoint::get("/v1/prices", "GetPrices", "List prices", list)
            .list::<Price, PriceListFilters>(),
        Endpoint::post("/v1/prices", "PostPrices", "Create a price", create)
            .body::<PriceCreateParams>()
            .body::<PriceParams>()
            .returns::<Price>(),
        Endpoint::get(
            "/v1/prices/search",
            "GetPricesSearch",
            "Search prices",
            search,
        )
        .search::<Price>(),
        Endpoint::get(
            "/v1/prices/{price}",
            "GetPricesPrice",
            "Retrieve a price",
            retrieve,
        )
        .returns::<Price>(),
        Endpoint::post(
            "/v1/prices/{price}",
            "PostPricesPrice",
            "Update a price",
            update,
        )
        .body::<PriceParams>()
        .returns::<Price>(),
    ]
}

async fn create(State(app): State<App>, mut req: SecretRequest) -> Response {
    let extra: PriceCreateParams = match req.take_params() {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let params: PriceParams = params!(req);
    execute!(app, req, |ctx| price::create(&mut ctx, &extra, &params)
        .await)
}

async fn retrieve(State(app): State<App>, Path(id): Path<String>, req: SecretRequest) -> Response {
    if let Err(e) = req.params::<NoParams>() {
        return e.into_response();
    }
    read!(app, req, |ctx| price::retrieve(&mut ctx, &id).await)
}

async fn update(State(app): State<App>, Path(id): Path<String>, req: SecretRequest) -> Response {
    let params: PriceParams = params!(req);
    execute!(app, req, |ctx| price::update(&mut ctx, &id, &params).await)
}

async fn list(State(app): State<App>, mut req: SecretRequest) -> Response {
    let page = match ListParams::take(&mut req.tree) {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let filters: PriceListFilters = params!(req);
    read!(app, req, |ctx| price::list(&mut ctx, &filters, &page).await)
}

async fn search(State(app): State<App>, req: SecretRequest) -> Response {
    let params: SearchParams = params!(req);
    read!(app, req, |ctx| price::search(&mut ctx, &params).await)
}
