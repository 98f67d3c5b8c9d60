//! `/v1/charges`: thin handlers over [`crate::resources::charge`].

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};

use crate::http::app::{App, SecretRequest};
use crate::http::customers::NoParams;
use crate::http::endpoints::Endpoint;
use crate::params;
use crate::resources::charge::{self, Charge, ChargeListFilters, ChargeUpdate};
use crate::resources::common::list::ListParams;
use crate::resources::payment_intent::{self, ChargeCapture};
use crate::{execute, read};

pub fn endpoints() -> Vec<Endpoint> {
    vec![
        Endpoint::get("/v1/charges", "GetCharges", "List charges", list)
            .list::<Charge, ChargeListFilters>(),
        Endpoint::get(
            "/v1/charges/{id}",
            "GetChargesCharge",
            "Retrieve a charge",
            retrieve,
        )
        .returns::<Charge>(),
        Endpoint::post(
            "/v1/charges/{id}",
            "PostChargesCharge",
            "Update a charge",
            update,
        )
        .body::<ChargeUpdate>()
        .returns::<Charge>(),
        Endpoint::post(
            "/v1/charges/{id}/capture",
            "PostChargesChargeCapture",
            "Capture a charge",
            capture,
        )
        .body::<ChargeCapture>()
        .returns::<Charge>(),
    ]
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
