//! `/v1/webhook_endpoints`: thin handlers over [`crate::resources::webhook_endpoint`],
//! with payground's own `GET /v1/webhook_endpoints/{id}/attempts` and the
//! `/v1/payground/listeners` routes `payground listen` talks to.

use std::time::Duration;

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::json;

use crate::error::ApiError;
use crate::http::app::{App, SecretRequest};
use crate::http::customers::NoParams;
use crate::http::endpoints::Endpoint;
use crate::http::events::ATTEMPT;
use crate::ids;
use crate::jobs::webhooks::{self, PulledAttempt};
use crate::params;
use crate::resources::common::list::ListParams;
use crate::resources::event::{self, AttemptListParams};
use crate::resources::webhook_endpoint::{
    self, CreateParams, Listener, ListenerParams, UpdateParams, WebhookEndpoint, LISTENER_OBJECT,
};
use crate::{execute, read};

/// The longest a poll may wait for deliveries.
const MAX_POLL_WAIT_SECS: f64 = 30.0;
const PULLED_DELIVERY: &str = "payground.pulled_delivery";
const DELIVERY_REPORT: &str = "payground.delivery_report";

pub fn endpoints() -> Vec<Endpoint> {
    vec![
        Endpoint::get(
            "/v1/webhook_endpoints",
            "GetWebhookEndpoints",
            "List webhook endpoints",
            list,
        )
        .list::<WebhookEndpoint, NoParams>(),
        Endpoint::post(
            "/v1/webhook_endpoints",
            "PostWebhookEndpoints",
            "Create a webhook endpoint",
            create,
        )
        .body::<CreateParams>()
        .returns::<WebhookEndpoint>(),
        Endpoint::get(
            "/v1/webhook_endpoints/{id}",
            "GetWebhookEndpointsWebhookEndpoint",
            "Retrieve a webhook endpoint",
            retrieve,
        )
        .returns::<WebhookEndpoint>(),
        Endpoint::post(
            "/v1/webhook_endpoints/{id}",
            "PostWebhookEndpointsWebhookEndpoint",
            "Update a webhook endpoint",
            update,
        )
        .body::<UpdateParams>()
        .returns::<WebhookEndpoint>(),
        Endpoint::delete(
            "/v1/webhook_endpoints/{id}",
            "DeleteWebhookEndpointsWebhookEndpoint",
            "Delete a webhook endpoint",
            remove,
        )
        .deletes::<WebhookEndpoint>(),
        Endpoint::get(
            "/v1/webhook_endpoints/{id}/attempts",
            "GetWebhookEndpointsWebhookEndpointAttempts",
            "A webhook endpoint's delivery attempts (payground)",
            attempts,
        )
        .query::<AttemptListParams>()
        .refusing(&["webhook_endpoint"])
        .lists_own(ATTEMPT),
        Endpoint::post(
            "/v1/payground/listeners",
            "PostPaygroundListeners",
            "Register a `payground listen` listener",
            register_listener,
        )
        .body::<ListenerParams>()
        .returns_own(LISTENER_OBJECT),
        Endpoint::delete(
            "/v1/payground/listeners/{id}",
            "DeletePaygroundListenersListener",
            "Remove a listener",
            delete_listener,
        )
        .deletes::<Listener>(),
        Endpoint::post(
            "/v1/payground/listeners/{id}/poll",
            "PostPaygroundListenersListenerPoll",
            "Lease a listener's due deliveries, waiting up to `wait` seconds",
            poll_listener,
        )
        .body::<PollParams>()
        .lists_own(PULLED_DELIVERY),
        Endpoint::post(
            "/v1/payground/listeners/{id}/ack",
            "PostPaygroundListenersListenerAck",
            "Report the outcome of one forwarded delivery",
            ack_listener,
        )
        .body::<AckParams>()
        .returns_own(DELIVERY_REPORT),
    ]
}

async fn create(State(app): State<App>, req: SecretRequest) -> Response {
    let params: CreateParams = params!(req);
    execute!(app, req, |ctx| webhook_endpoint::create(&mut ctx, &params)
        .await)
}

async fn retrieve(State(app): State<App>, Path(id): Path<String>, req: SecretRequest) -> Response {
    if let Err(e) = req.params::<NoParams>() {
        return e.into_response();
    }
    read!(app, req, |ctx| webhook_endpoint::retrieve(&mut ctx, &id)
        .await)
}

async fn update(State(app): State<App>, Path(id): Path<String>, req: SecretRequest) -> Response {
    let params: UpdateParams = params!(req);
    execute!(app, req, |ctx| webhook_endpoint::update(
        &mut ctx, &id, &params
    )
    .await)
}

async fn remove(State(app): State<App>, Path(id): Path<String>, req: SecretRequest) -> Response {
    if let Err(e) = req.params::<NoParams>() {
        return e.into_response();
    }
    execute!(app, req, |ctx| webhook_endpoint::delete(&mut ctx, &id)
        .await)
}

async fn list(State(app): State<App>, mut req: SecretRequest) -> Response {
    let page = match ListParams::take(&mut req.tree) {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    if let Err(e) = req.params::<NoParams>() {
        return e.into_response();
    }
    read!(app, req, |ctx| webhook_endpoint::list(&mut ctx, &page)
        .await)
}

async fn attempts(State(app): State<App>, Path(id): Path<String>, req: SecretRequest) -> Response {
    let params: AttemptListParams = params!(req);
    if params.webhook_endpoint.is_some() {
        return ApiError::unknown_param("webhook_endpoint").into_response();
    }
    let url = format!("/v1/webhook_endpoints/{id}/attempts");
    read!(app, req, |ctx| {
        match webhook_endpoint::retrieve(&mut ctx, &id).await {
            Ok(_) => event::attempts(&mut ctx, None, Some(&id), &params, &url).await,
            Err(e) => Err(e),
        }
    })
}

async fn register_listener(State(app): State<App>, req: SecretRequest) -> Response {
    let params: ListenerParams = params!(req);
    execute!(app, req, |ctx| webhook_endpoint::register_listener(
        &mut ctx, &params
    )
    .await)
}

async fn delete_listener(
    State(app): State<App>,
    Path(id): Path<String>,
    req: SecretRequest,
) -> Response {
    if let Err(e) = req.params::<NoParams>() {
        return e.into_response();
    }
    execute!(app, req, |ctx| webhook_endpoint::delete_listener(
        &mut ctx, &id
    )
    .await)
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct PollParams {
    /// Seconds to wait for a delivery when none is due (long poll).
    #[serde(default)]
    #[schemars(range(min = 0, max = MAX_POLL_WAIT_SECS))]
    wait: Option<f64>,
    #[serde(default)]
    #[schemars(range(min = 1, max = 100))]
    limit: Option<i64>,
}

/// Leases the listener's due deliveries and hands them over with the exact stored
/// event text; an empty list after `wait` seconds when nothing came.
async fn poll_listener(
    State(app): State<App>,
    Path(id): Path<String>,
    req: SecretRequest,
) -> Response {
    let params: PollParams = params!(req);
    let wait = params.wait.unwrap_or(0.0);
    if !(0.0..=MAX_POLL_WAIT_SECS).contains(&wait) {
        return ApiError::invalid_param(
            "wait",
            "parameter_invalid_decimal",
            format!("wait must be between 0 and {MAX_POLL_WAIT_SECS} seconds."),
        )
        .into_response();
    }
    let limit = match params.limit {
        None => 10,
        Some(n) if (1..=100).contains(&n) => n as usize,
        Some(_) => {
            return ApiError::invalid_param(
                "limit",
                "parameter_invalid_integer",
                "limit must be between 1 and 100.",
            )
            .into_response()
        }
    };
    let mut ctx = app.context(&req);
    if let Err(e) = webhook_endpoint::find_listener(&mut ctx, &id).await {
        return e.into_response();
    }
    let lease = format!("poll_{}", ids::random_string(24));
    let pulled = webhooks::poll_listener(
        &app.engine.store,
        &app.webhooks,
        &req.account.id,
        &id,
        &lease,
        Duration::from_secs_f64(wait),
        limit,
    )
    .await;
    match pulled {
        Ok(pulled) => {
            let data: Vec<_> = pulled
                .iter()
                .map(|p| {
                    json!({
                        "object": PULLED_DELIVERY,
                        "event": p.delivery.event_id,
                        "attempt": p.delivery.attempts + 1,
                        "lease": lease,
                        "payload": p.payload,
                    })
                })
                .collect();
            Json(json!({
                "object": "list",
                "data": data,
                "has_more": false,
                "url": format!("/v1/payground/listeners/{id}/poll"),
            }))
            .into_response()
        }
        Err(e) => ApiError::internal("polling deliveries failed", e).into_response(),
    }
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct AckParams {
    event: String,
    lease: String,
    /// The forward target's HTTP status; absent when no response came.
    #[serde(default)]
    status_code: Option<u16>,
    #[serde(default)]
    latency_ms: Option<i64>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    response_body: Option<String>,
}

/// A listener's report of one forward: recorded as an attempt, and the delivery
/// succeeds or waits for its retry.
async fn ack_listener(
    State(app): State<App>,
    Path(id): Path<String>,
    req: SecretRequest,
) -> Response {
    let params: AckParams = params!(req);
    let mut ctx = app.context(&req);
    if let Err(e) = webhook_endpoint::find_listener(&mut ctx, &id).await {
        return e.into_response();
    }
    let found = match app
        .engine
        .store
        .delivery(&req.account.id, &params.event, &id)
        .await
    {
        Ok(found) => found.filter(|d| !d.push),
        Err(e) => return ApiError::internal("reading a delivery failed", e).into_response(),
    };
    let Some(found) = found else {
        return ApiError::no_such("delivery", &params.event)
            .with_param("event")
            .into_response();
    };
    let report = PulledAttempt {
        status_code: params.status_code,
        latency_ms: params.latency_ms.unwrap_or(0),
        response_body: params.response_body,
        error: params.error,
    };
    let settings = app.webhooks.settings().clone();
    match webhooks::settle_pulled(&app.engine.store, &settings, &found, &params.lease, report).await
    {
        Ok(settled) => Json(json!({
            "object": DELIVERY_REPORT,
            "event": params.event,
            "settled": settled,
        }))
        .into_response(),
        Err(e) => ApiError::internal("recording a forward failed", e).into_response(),
    }
}
