//! `/v1/payment_intents`: thin handlers over [`crate::resources::payment_intent`].
//! Retrieve and confirm also admit the publishable key with the client secret, as
//! stripe.js uses them.

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use schemars::JsonSchema;
use serde::Deserialize;

use crate::http::app::{App, BrowserRequest, SecretRequest};
use crate::http::customers::NoParams;
use crate::http::endpoints::Endpoint;
use crate::params;
use crate::resources::common::list::ListParams;
use crate::resources::payment_intent::{
    self, CancelParams, CaptureParams, ConfirmParams, CreateParams, IncrementParams, ListFilters,
    PaymentIntent, UpdateParams,
};
use crate::resources::search::SearchParams;
use crate::{execute, read};

pub fn endpoints() -> Vec<Endpoint> {
    vec![
        Endpoint::get(
            "/v1/payment_intents",
            "GetPaymentIntents",
            "List PaymentIntents",
            list,
        )
        .list::<PaymentIntent, ListFilters>(),
        Endpoint::post(
            "/v1/payment_intents",
            "PostPaymentIntents",
            "Create a PaymentIntent",
            create,
        )
        .body::<CreateParams>()
        .returns::<PaymentIntent>(),
        Endpoint::get(
            "/v1/payment_intents/search",
            "GetPaymentIntentsSearch",
            "Search PaymentIntents",
            search,
        )
        .search::<PaymentIntent>(),
        Endpoint::get(
            "/v1/payment_intents/{id}",
            "GetPaymentIntentsIntent",
            "Retrieve a PaymentIntent (publishable key with client_secret too)",
            retrieve,
        )
        .publishable()
        .query::<RetrieveParams>()
        .returns::<PaymentIntent>(),
        Endpoint::post(
            "/v1/payment_intents/{id}",
            "PostPaymentIntentsIntent",
            "Update a PaymentIntent",
            update,
        )
        .body::<UpdateParams>()
        .returns::<PaymentIntent>(),
        Endpoint::post(
            "/v1/payment_intents/{id}/confirm",
            "PostPaymentIntentsIntentConfirm",
            "Confirm a PaymentIntent (publishable key with client_secret too)",
            confirm,
        )
        .publishable()
        .body::<ConfirmParams>()
        .returns::<PaymentIntent>(),
        Endpoint::post(
            "/v1/payment_intents/{id}/capture",
            "PostPaymentIntentsIntentCapture",
            "Capture a PaymentIntent",
            capture,
        )
        .body::<CaptureParams>()
        .returns::<PaymentIntent>(),
        Endpoint::post(
            "/v1/payment_intents/{id}/cancel",
            "PostPaymentIntentsIntentCancel",
            "Cancel a PaymentIntent",
            cancel,
        )
        .body::<CancelParams>()
        .returns::<PaymentIntent>(),
        Endpoint::post(
            "/v1/payment_intents/{id}/increment_authorization",
            "PostPaymentIntentsIntentIncrementAuthorization",
            "Increment an authorization",
            increment_authorization,
        )
        .body::<IncrementParams>()
        .returns::<PaymentIntent>(),
        Endpoint::post(
            "/v1/test_helpers/payment_intents/{id}/settle",
            "PostTestHelpersPaymentIntentsIntentSettle",
            "Settle a processing bank debit now (payground)",
            settle,
        )
        .returns::<PaymentIntent>(),
    ]
}

async fn create(State(app): State<App>, req: SecretRequest) -> Response {
    let params: CreateParams = params!(req);
    execute!(app, req, |ctx| payment_intent::create(&mut ctx, &params)
        .await)
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct RetrieveParams {
    #[serde(default)]
    client_secret: Option<String>,
}

async fn retrieve(State(app): State<App>, Path(id): Path<String>, req: BrowserRequest) -> Response {
    let params: RetrieveParams = params!(req);
    read!(app, req, |ctx| payment_intent::retrieve(
        &mut ctx,
        &id,
        params.client_secret.as_deref()
    )
    .await)
}

async fn update(State(app): State<App>, Path(id): Path<String>, req: SecretRequest) -> Response {
    let params: UpdateParams = params!(req);
    execute!(app, req, |ctx| payment_intent::update(
        &mut ctx, &id, &params
    )
    .await)
}

async fn confirm(State(app): State<App>, Path(id): Path<String>, req: BrowserRequest) -> Response {
    let params: ConfirmParams = params!(req);
    execute!(app, req, |ctx| payment_intent::confirm(
        &mut ctx, &id, &params
    )
    .await)
}

async fn capture(State(app): State<App>, Path(id): Path<String>, req: SecretRequest) -> Response {
    let params: CaptureParams = params!(req);
    execute!(app, req, |ctx| payment_intent::capture(
        &mut ctx, &id, &params
    )
    .await)
}

async fn cancel(State(app): State<App>, Path(id): Path<String>, req: SecretRequest) -> Response {
    let params: CancelParams = params!(req);
    execute!(app, req, |ctx| payment_intent::cancel(
        &mut ctx, &id, &params
    )
    .await)
}

async fn increment_authorization(
    State(app): State<App>,
    Path(id): Path<String>,
    req: SecretRequest,
) -> Response {
    let params: IncrementParams = params!(req);
    execute!(app, req, |ctx| payment_intent::increment_authorization(
        &mut ctx, &id, &params
    )
    .await)
}

/// payground's test helper: settle a processing bank debit now instead of after the delay.
async fn settle(State(app): State<App>, Path(id): Path<String>, req: SecretRequest) -> Response {
    if let Err(e) = req.params::<NoParams>() {
        return e.into_response();
    }
    execute!(app, req, |ctx| payment_intent::settle(&mut ctx, &id).await)
}

async fn list(State(app): State<App>, mut req: SecretRequest) -> Response {
    let page = match ListParams::take(&mut req.tree) {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let filters: ListFilters = params!(req);
    read!(app, req, |ctx| payment_intent::list(
        &mut ctx, &filters, &page
    )
    .await)
}

async fn search(State(app): State<App>, req: SecretRequest) -> Response {
    let params: SearchParams = params!(req);
    read!(app, req, |ctx| payment_intent::search(&mut ctx, &params)
        .await)
}
