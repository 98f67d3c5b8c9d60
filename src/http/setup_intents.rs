//! `/v1/setup_intents` and `/v1/setup_attempts`: thin handlers over
//! [`crate::resources::setup_intent`]. Retrieve and confirm also admit the
//! publishable key with the client secret, as stripe.js uses them.

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};

use crate::http::app::{App, BrowserRequest, SecretRequest};
use crate::http::customers::NoParams;
use crate::http::endpoints::Endpoint;
use crate::params;
use crate::resources::common::list::ListParams;
use crate::resources::setup_attempt::{self, SetupAttempt};
use crate::resources::setup_intent::{
    self, CancelParams, ConfirmParams, CreateParams, ListFilters, RetrieveParams, SetupIntent,
    UpdateParams,
};
use crate::{execute, read};

pub fn endpoints() -> Vec<Endpoint> {
    vec![
        Endpoint::get(
            "/v1/setup_intents",
            "GetSetupIntents",
            "List SetupIntents",
            list,
        )
        .list::<SetupIntent, ListFilters>(),
        Endpoint::post(
            "/v1/setup_intents",
            "PostSetupIntents",
            "Create a SetupIntent",
            create,
        )
        .body::<CreateParams>()
        .returns::<SetupIntent>(),
        Endpoint::get(
            "/v1/setup_intents/{id}",
            "GetSetupIntentsIntent",
            "Retrieve a SetupIntent (publishable key with client_secret too)",
            retrieve,
        )
        .publishable()
        .query::<RetrieveParams>()
        .returns::<SetupIntent>(),
        Endpoint::post(
            "/v1/setup_intents/{id}",
            "PostSetupIntentsIntent",
            "Update a SetupIntent",
            update,
        )
        .body::<UpdateParams>()
        .returns::<SetupIntent>(),
        Endpoint::post(
            "/v1/setup_intents/{id}/confirm",
            "PostSetupIntentsIntentConfirm",
            "Confirm a SetupIntent (publishable key with client_secret too)",
            confirm,
        )
        .publishable()
        .body::<ConfirmParams>()
        .returns::<SetupIntent>(),
        Endpoint::post(
            "/v1/setup_intents/{id}/cancel",
            "PostSetupIntentsIntentCancel",
            "Cancel a SetupIntent",
            cancel,
        )
        .body::<CancelParams>()
        .returns::<SetupIntent>(),
        Endpoint::get(
            "/v1/setup_attempts",
            "GetSetupAttempts",
            "List a SetupIntent's attempts",
            list_attempts,
        )
        .list::<SetupAttempt, setup_attempt::ListFilters>(),
        Endpoint::post(
            "/v1/test_helpers/setup_intents/{id}/settle",
            "PostTestHelpersSetupIntentsIntentSettle",
            "Settle a processing bank-debit setup now (payground)",
            settle,
        )
        .returns::<SetupIntent>(),
    ]
}

async fn create(State(app): State<App>, req: SecretRequest) -> Response {
    let params: CreateParams = params!(req);
    execute!(app, req, |ctx| setup_intent::create(&mut ctx, &params)
        .await)
}

async fn retrieve(State(app): State<App>, Path(id): Path<String>, req: BrowserRequest) -> Response {
    let params: RetrieveParams = params!(req);
    read!(app, req, |ctx| setup_intent::retrieve(
        &mut ctx, &id, &params
    )
    .await)
}

async fn update(State(app): State<App>, Path(id): Path<String>, req: SecretRequest) -> Response {
    let params: UpdateParams = params!(req);
    execute!(app, req, |ctx| setup_intent::update(&mut ctx, &id, &params)
        .await)
}

async fn confirm(State(app): State<App>, Path(id): Path<String>, req: BrowserRequest) -> Response {
    let params: ConfirmParams = params!(req);
    execute!(app, req, |ctx| setup_intent::confirm(
        &mut ctx, &id, &params
    )
    .await)
}

async fn cancel(State(app): State<App>, Path(id): Path<String>, req: SecretRequest) -> Response {
    let params: CancelParams = params!(req);
    execute!(app, req, |ctx| setup_intent::cancel(&mut ctx, &id, &params)
        .await)
}

/// payground's test helper: settle a processing bank-debit setup now.
async fn settle(State(app): State<App>, Path(id): Path<String>, req: SecretRequest) -> Response {
    if let Err(e) = req.params::<NoParams>() {
        return e.into_response();
    }
    execute!(app, req, |ctx| setup_intent::settle(&mut ctx, &id).await)
}

async fn list(State(app): State<App>, mut req: SecretRequest) -> Response {
    let page = match ListParams::take(&mut req.tree) {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let filters: ListFilters = params!(req);
    read!(app, req, |ctx| setup_intent::list(
        &mut ctx, &filters, &page
    )
    .await)
}

async fn list_attempts(State(app): State<App>, mut req: SecretRequest) -> Response {
    let page = match ListParams::take(&mut req.tree) {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let filters: setup_attempt::ListFilters = params!(req);
    read!(app, req, |ctx| setup_attempt::list(
        &mut ctx, &filters, &page
    )
    .await)
}
