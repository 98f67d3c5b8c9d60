//! `/v1/customer_sessions`, and what the Payment Element asks with their client
//! secrets and the publishable key (`/v1/elements/...`): thin handlers over
//! [`crate::resources::customer_session`] and
//! [`crate::resources::elements_session`].

use axum::extract::{Path, State};
use axum::response::Response;

use crate::http::app::{App, BrowserRequest, SecretRequest};
use crate::http::endpoints::Endpoint;
use crate::params;
use crate::resources::customer_session::{self, CreateParams, CustomerSession};
use crate::resources::elements_session::{self, DetachParams, SessionParams};
use crate::resources::payment_method::PaymentMethod;
use crate::{execute, read};

pub fn endpoints() -> Vec<Endpoint> {
    vec![
        Endpoint::post(
            "/v1/customer_sessions",
            "PostCustomerSessions",
            "Create a CustomerSession",
            create,
        )
        .body::<CreateParams>()
        .returns::<CustomerSession>(),
        Endpoint::get(
            "/v1/elements/sessions",
            "GetElementsSessions",
            "What the Payment Element renders: payment method types, amount, a customer's saved methods (publishable key; payground's answer to stripe.js's call)",
            elements_session,
        )
        .publishable()
        .query::<SessionParams>()
        .returns_own("elements_session"),
        Endpoint::post(
            "/v1/elements/payment_methods/{id}/detach",
            "PostElementsPaymentMethodsPaymentMethodDetach",
            "Remove a saved payment method with a CustomerSession that allows it (publishable key)",
            detach,
        )
        .publishable()
        .body::<DetachParams>()
        .returns::<PaymentMethod>(),
    ]
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
