//! `/v1/events`: thin handlers over [`crate::resources::event`], with payground's
//! own `POST /v1/events/{id}/resend` and `GET /v1/events/{id}/attempts`.

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};

use crate::http::app::{App, SecretRequest};
use crate::http::customers::NoParams;
use crate::http::endpoints::Endpoint;
use crate::params;
use crate::read;
use crate::resources::common::list::ListParams;
use crate::resources::event::{self, AttemptListParams, Event, EventListFilters, ResendParams};

/// payground's record of one webhook attempt.
pub const ATTEMPT: &str = "payground.webhook_attempt";

pub fn endpoints() -> Vec<Endpoint> {
    vec![
        Endpoint::get("/v1/events", "GetEvents", "List events", list)
            .list::<Event, EventListFilters>(),
        Endpoint::get(
            "/v1/events/{id}",
            "GetEventsId",
            "Retrieve an event",
            retrieve,
        )
        .returns::<Event>(),
        Endpoint::post(
            "/v1/events/{id}/resend",
            "PostEventsIdResend",
            "Deliver an event to a webhook endpoint again",
            resend,
        )
        .body::<ResendParams>()
        .returns::<Event>(),
        Endpoint::get(
            "/v1/events/{id}/attempts",
            "GetEventsIdAttempts",
            "An event's delivery attempts (payground)",
            attempts,
        )
        .query::<AttemptListParams>()
        .refusing(&["event"])
        .lists_own(ATTEMPT),
    ]
}

async fn retrieve(State(app): State<App>, Path(id): Path<String>, req: SecretRequest) -> Response {
    if let Err(e) = req.params::<NoParams>() {
        return e.into_response();
    }
    read!(app, req, |ctx| event::retrieve(&mut ctx, &id).await)
}

async fn list(State(app): State<App>, mut req: SecretRequest) -> Response {
    let page = match ListParams::take(&mut req.tree) {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let filters: EventListFilters = params!(req);
    read!(app, req, |ctx| event::list(&mut ctx, &filters, &page).await)
}

/// Schedules the delivery at once; the response is the event. Not idempotent by
/// key: a second resend is simply another delivery.
async fn resend(State(app): State<App>, Path(id): Path<String>, req: SecretRequest) -> Response {
    let params: ResendParams = params!(req);
    let response = read!(app, req, |ctx| event::resend(&mut ctx, &id, &params).await);
    app.webhooks.wakers.deliveries.notify_one();
    response
}

async fn attempts(State(app): State<App>, Path(id): Path<String>, req: SecretRequest) -> Response {
    let params: AttemptListParams = params!(req);
    if params.event.is_some() {
        return crate::error::ApiError::unknown_param("event").into_response();
    }
    let url = format!("/v1/events/{id}/attempts");
    read!(app, req, |ctx| {
        match event::retrieve(&mut ctx, &id).await {
            Ok(_) => event::attempts(&mut ctx, Some(&id), None, &params, &url).await,
            Err(e) => Err(e),
        }
    })
}
