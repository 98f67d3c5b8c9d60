//! `/v1/products`: thin handlers over [`crate::resources::product`].

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};

use crate::http::app::{App, SecretRequest};
use crate::http::customers::NoParams;
use crate::http::endpoints::Endpoint;
use crate::params;
use crate::resources::common::list::ListParams;
use crate::resources::product::{
    self, Product, ProductCreateParams, ProductListFilters, ProductParams, ProductUpdateParams,
};
use crate::resources::search::SearchParams;
use crate::{execute, read};

pub fn endpoints() -> Vec<Endpoint> {
    vec![
        Endpoint::get("/v1/products", "GetProducts", "List products", list)
            .list::<Product, ProductListFilters>(),
        Endpoint::post("/v1/products", "PostProducts", "Create a product", create)
            .body::<ProductCreateParams>()
            .body::<ProductParams>()
            .returns::<Product>(),
        Endpoint::get(
            "/v1/products/search",
            "GetProductsSearch",
            "Search products",
            search,
        )
        .search::<Product>(),
        Endpoint::get(
            "/v1/products/{id}",
            "GetProductsId",
            "Retrieve a product",
            retrieve,
        )
        .returns::<Product>(),
        Endpoint::post(
            "/v1/products/{id}",
            "PostProductsId",
            "Update a product",
            update,
        )
        .body::<ProductUpdateParams>()
        .body::<ProductParams>()
        .returns::<Product>(),
        Endpoint::delete(
            "/v1/products/{id}",
            "DeleteProductsId",
            "Delete a product that has no prices",
            delete,
        )
        .deletes::<Product>(),
    ]
}

async fn create(State(app): State<App>, mut req: SecretRequest) -> Response {
    let extra: ProductCreateParams = match req.take_params() {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let params: ProductParams = params!(req);
    execute!(app, req, |ctx| product::create(&mut ctx, &extra, &params)
        .await)
}

async fn retrieve(State(app): State<App>, Path(id): Path<String>, req: SecretRequest) -> Response {
    if let Err(e) = req.params::<NoParams>() {
        return e.into_response();
    }
    read!(app, req, |ctx| product::retrieve(&mut ctx, &id).await)
}

async fn update(
    State(app): State<App>,
    Path(id): Path<String>,
    mut req: SecretRequest,
) -> Response {
    let extra: ProductUpdateParams = match req.take_params() {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let params: ProductParams = params!(req);
    execute!(app, req, |ctx| product::update(
        &mut ctx, &id, &extra, &params
    )
    .await)
}

async fn delete(State(app): State<App>, Path(id): Path<String>, req: SecretRequest) -> Response {
    if let Err(e) = req.params::<NoParams>() {
        return e.into_response();
    }
    execute!(app, req, |ctx| product::delete(&mut ctx, &id).await)
}

async fn list(State(app): State<App>, mut req: SecretRequest) -> Response {
    let page = match ListParams::take(&mut req.tree) {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let filters: ProductListFilters = params!(req);
    read!(app, req, |ctx| product::list(&mut ctx, &filters, &page)
        .await)
}

async fn search(State(app): State<App>, req: SecretRequest) -> Response {
    let params: SearchParams = params!(req);
    read!(app, req, |ctx| product::search(&mut ctx, &params).await)
}
