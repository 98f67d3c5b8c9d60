//! `/v1/confirmation_tokens` and Stripe's test helper that makes one: thin
//! handlers over [`crate::resources::confirmation_token`]. stripe.js creates
//! tokens with the publishable key; only the secret key reads them.

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};

use crate::http::app::{App, BrowserRequest, SecretRequest};
use crate::http::customers::NoParams;
use crate::http::endpoints::Endpoint;
use crate::params;
use crate::resources::confirmation_token::{self, ConfirmationToken, CreateParams};
use crate::{execute, read};

pub fn endpoints() -> Vec<Endpoint> {
    vec![
        Endpoint::post(
            "/v1/confirmation_tokens",
            "PostConfirmationTokens",
            "Create a ConfirmationToken (what stripe.js does, with the publishable key)",
            create,
        )
        .publishable()
        .body::<CreateParams>()
        .returns::<ConfirmationToken>(),
        Endpoint::get(
            "/v1/confirmation_tokens/{id}",
            "GetConfirmationTokensConfirmationToken",
            "Retrieve a ConfirmationToken",
            retrieve,
        )
        .returns::<ConfirmationToken>(),
        Endpoint::post(
            "/v1/test_helpers/confirmation_tokens",
            "PostTestHelpersConfirmationTokens",
            "Create a ConfirmationToken for a server test",
            create_for_test,
        )
        .body::<CreateParams>()
        .returns::<ConfirmationToken>(),
    ]
}

async fn create(State(app): State<App>, req: BrowserRequest) -> Response {
    let params: CreateParams = params!(req);
    execute!(app, req, |ctx| confirmation_token::create(
        &mut ctx, &params
    )
    .await)
}

/// Stripe's `POST /v1/test_helpers/confirmation_tokens`: a server test makes the
/// token stripe.js would have made.
async fn create_for_test(State(app): State<App>, req: SecretRequest) -> Response {
    let params: CreateParams = params!(req);
    execute!(app, req, |ctx| confirmation_token::create(
        &mut ctx, &params
    )
    .await)
}

async fn retrieve(State(app): State<App>, Path(id): Path<String>, req: SecretRequest) -> Response {
    if let Err(e) = req.params::<NoParams>() {
        return e.into_response();
    }
    read!(app, req, |ctx| confirmation_token::retrieve(&mut ctx, &id)
        .await)
}
