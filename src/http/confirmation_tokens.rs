//! `/v1/confirmation_tokens` and Stripe's test helper that makes one: thin
//! handlers over [`crate::resources::confirmation_token`]. stripe.js creates
//! tokens with the publishable key; only the secret key reads them.

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;

use crate::http::app::{App, BrowserRequest, SecretRequest};
use crate::http::customers::NoParams;
use crate::params;
use crate::resources::confirmation_token::{self, CreateParams};
use crate::{execute, read};

pub fn routes() -> Router<App> {
    Router::new()
        .route("/v1/confirmation_tokens", post(create))
        .route("/v1/confirmation_tokens/{id}", get(retrieve))
        .route(
            "/v1/test_helpers/confirmation_tokens",
            post(create_for_test),
        )
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
