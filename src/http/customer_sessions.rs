//! `/v1/customer_sessions`, and what the Payment Element asks with their client
//! secrets and the publishable key (`/v1/elements/...`): thin handlers over
//! [`crate::resources::customer_session`] and
//! [`crate::resources::elements_session`].

use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;

use crate::http::app::{App, BrowserRequest, SecretRequest};
use crate::params;
use crate::resources::customer_session::{self, CreateParams};
use crate::resources::elements_session::{self, DetachParams, SessionParams};
use crate::{execute, read};

pub fn routes() -> Router<App> {
    Router::new()
        .route("/v1/customer_sessions", post(create))
        .route("/v1/elements/sessions", get(elements_session))
        .route("/v1/elements/payment_methods/{id}/detach", post(detach))
}

async fn create(State(app): State<App>, req: SecretRequest) -> Response {
    let params: CreateParams = params!(req);
    execute!(app, req, |ctx| customer_session::create(&mut ctx, &params)
        .await)
}

async fn elements_session(State(app): State<App>, req: BrowserRequest) -> Response {
    let params: SessionParams = params!(req);
    read!(app, req, |ctx| elements_session::retrieve(
        &mut ctx, &params
    )
    .await)
}

async fn detach(State(app): State<App>, Path(id): Path<String>, req: BrowserRequest) -> Response {
    let params: DetachParams = params!(req);
    execute!(app, req, |ctx| elements_session::detach(
        &mut ctx, &id, &params
    )
    .await)
}
