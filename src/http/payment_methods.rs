//! `/v1/payment_methods`: thin handlers over [`crate::resources::payment_method`].

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value};

use crate::error::ApiError;
use crate::http::app::{ApiRequest, App, BrowserRequest, SecretRequest};
use crate::http::customers::NoParams;
use crate::http::endpoints::Endpoint;
use crate::params;
use crate::resources::common::list::ListParams;
use crate::resources::common::params;
use crate::resources::payment_method::{
    self, AttachParams, CloneParams, ListFilters, PaymentMethod, PaymentMethodData, UpdateParams,
};
use crate::{execute, read};

pub fn endpoints() -> Vec<Endpoint> {
    vec![
        Endpoint::get(
            "/v1/payment_methods",
            "GetPaymentMethods",
            "List PaymentMethods",
            list,
        )
        .list::<PaymentMethod, ListFilters>()
        .without_created(),
        Endpoint::post(
            "/v1/payment_methods",
            "PostPaymentMethods",
            "Create a PaymentMethod (publishable key too)",
            create,
        )
        .publishable()
        .body::<PaymentMethodData>()
        .body::<CloneParams>()
        .returns::<PaymentMethod>(),
        Endpoint::get(
            "/v1/payment_methods/{id}",
            "GetPaymentMethodsPaymentMethod",
            "Retrieve a PaymentMethod (or make one from a pm_card_* id)",
            retrieve,
        )
        .returns::<PaymentMethod>(),
        Endpoint::post(
            "/v1/payment_methods/{id}",
            "PostPaymentMethodsPaymentMethod",
            "Update a PaymentMethod",
            update,
        )
        .body::<UpdateParams>()
        .returns::<PaymentMethod>(),
        Endpoint::post(
            "/v1/payment_methods/{id}/attach",
            "PostPaymentMethodsPaymentMethodAttach",
            "Attach a PaymentMethod to a customer",
            attach,
        )
        .body::<AttachParams>()
        .returns::<PaymentMethod>(),
        Endpoint::post(
            "/v1/payment_methods/{id}/detach",
            "PostPaymentMethodsPaymentMethodDetach",
            "Detach a PaymentMethod",
            detach,
        )
        .returns::<PaymentMethod>(),
    ]
}

/// Takes `keys` out of the request and decodes them apart from the rest, for
/// parameters that sit beside a shared params type in one body.
fn take_params<T: serde::de::DeserializeOwned, const P: bool>(
    req: &mut ApiRequest<P>,
    keys: &[&str],
) -> Result<T, ApiError> {
    let mut taken = Map::new();
    for key in keys {
        if let Some(v) = req.take(key) {
            taken.insert(key.to_string(), v);
        }
    }
    params::from_value(&Value::Object(taken))
}

/// The list parameters of PaymentMethod lists, which (unlike most lists) take no
/// `created` filter in Stripe's spec.
pub fn list_params(req: &mut SecretRequest) -> Result<ListParams, ApiError> {
    if req.tree.get("created").is_some() {
        return Err(ApiError::unknown_param("created"));
    }
    ListParams::take(&mut req.tree)
}

/// Publishable keys may create PaymentMethods: it is what stripe.js does.
async fn create(State(app): State<App>, headers: HeaderMap, mut req: BrowserRequest) -> Response {
    let clone: CloneParams = match take_params(&mut req, &["customer", "payment_method"]) {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let data: PaymentMethodData = params!(req);
    let connected_account = headers.contains_key("stripe-account");
    execute!(app, req, |ctx| payment_method::create(
        &mut ctx,
        data.clone(),
        &clone,
        connected_account
    )
    .await)
}

async fn retrieve(State(app): State<App>, Path(id): Path<String>, req: SecretRequest) -> Response {
    if let Err(e) = req.params::<NoParams>() {
        return e.into_response();
    }
    if payment_method::is_alias(&id) {
        // A `pm_card_*` id makes a fresh PaymentMethod, which must be committed
        // like any other write even though this is a GET.
        return execute!(app, req, |ctx| payment_method::retrieve(&mut ctx, &id)
            .await);
    }
    read!(app, req, |ctx| payment_method::retrieve(&mut ctx, &id)
        .await)
}

async fn update(State(app): State<App>, Path(id): Path<String>, req: SecretRequest) -> Response {
    let params: UpdateParams = params!(req);
    execute!(app, req, |ctx| payment_method::update(
        &mut ctx,
        &id,
        params.clone()
    )
    .await)
}

async fn attach(State(app): State<App>, Path(id): Path<String>, req: SecretRequest) -> Response {
    let params: AttachParams = params!(req);
    execute!(app, req, |ctx| payment_method::attach_by_id(
        &mut ctx, &id, &params
    )
    .await)
}

async fn detach(State(app): State<App>, Path(id): Path<String>, req: SecretRequest) -> Response {
    if let Err(e) = req.params::<NoParams>() {
        return e.into_response();
    }
    execute!(app, req, |ctx| payment_method::detach(&mut ctx, &id).await)
}

async fn list(State(app): State<App>, mut req: SecretRequest) -> Response {
    let page = match list_params(&mut req) {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let filters: ListFilters = params!(req);
    read!(app, req, |ctx| payment_method::list(
        &mut ctx, &filters, &page
    )
    .await)
}
