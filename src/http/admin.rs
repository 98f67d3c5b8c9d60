//! payground's own routes: accounts for parallel CI jobs (admin token), the
//! per-account clock test helper, and the OpenAPI document.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::json;

use crate::accounts;
use crate::error::ApiError;
use crate::http::app::{Admin, App, SecretRequest};
use crate::http::customers::NoParams;
use crate::http::endpoints::Endpoint;
use crate::http::openapi;
use crate::params;

const CLOCK: &str = "payground.clock";

pub fn endpoints() -> Vec<Endpoint> {
    vec![
        Endpoint::get("/healthz", "GetHealthz", "Liveness check", healthz).public(),
        Endpoint::get(
            openapi::PATH,
            "GetPaygroundOpenapi",
            "This document",
            openapi::serve,
        )
        .public(),
        Endpoint::post(
            "/admin/accounts",
            "PostAdminAccounts",
            "Create an account",
            create_account,
        )
        .admin(),
        Endpoint::get(
            "/admin/accounts",
            "GetAdminAccounts",
            "List the accounts",
            list_accounts,
        )
        .admin(),
        Endpoint::get(
            "/v1/test_helpers/clock",
            "GetTestHelpersClock",
            "The account's clock (payground)",
            clock_show,
        )
        .returns_own(CLOCK),
        Endpoint::post(
            "/v1/test_helpers/clock/advance",
            "PostTestHelpersClockAdvance",
            "Move the account's clock forward (payground)",
            clock_advance,
        )
        .body::<AdvanceParams>()
        .returns_own(CLOCK),
    ]
}

async fn healthz() -> Response {
    Json(json!({ "status": "ok" })).into_response()
}

async fn create_account(State(app): State<App>, _admin: Admin) -> Response {
    match accounts::create(&app.engine.store, None, None).await {
        Ok(account) => Json(accounts::describe(&account)).into_response(),
        Err(e) => ApiError::internal("account creation failed", e).into_response(),
    }
}

async fn list_accounts(State(app): State<App>, _admin: Admin) -> Response {
    match app.engine.store.list_accounts().await {
        Ok(all) => Json(json!({
            "object": "list",
            "data": all.iter().map(accounts::describe).collect::<Vec<_>>(),
            "has_more": false,
            "url": "/admin/accounts",
        }))
        .into_response(),
        Err(e) => ApiError::internal("account listing failed", e).into_response(),
    }
}

fn clock_view(offset: i64, now: i64) -> serde_json::Value {
    json!({ "object": CLOCK, "now": now, "offset": offset })
}

async fn clock_show(req: SecretRequest) -> Response {
    if let Err(e) = req.params::<NoParams>() {
        return e.into_response();
    }
    Json(clock_view(req.account.clock_offset, req.account.now())).into_response()
}

/// At most ten years at a time.
const MAX_ADVANCE_SECS: i64 = 10 * 365 * 24 * 3600;

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct AdvanceParams {
    /// Seconds to move the account's clock forward.
    #[schemars(range(min = 1, max = MAX_ADVANCE_SECS))]
    seconds: i64,
}

/// Moves this account's clock forward so expirations can be tested without sleeping.
async fn clock_advance(State(app): State<App>, req: SecretRequest) -> Response {
    let params: AdvanceParams = params!(req);
    if params.seconds <= 0 || params.seconds > MAX_ADVANCE_SECS {
        return ApiError::invalid_param(
            "seconds",
            "parameter_invalid_integer",
            "seconds must be a positive number of seconds, at most ten years.",
        )
        .into_response();
    }
    let offset = req.account.clock_offset + params.seconds;
    if let Err(e) = app.engine.set_clock_offset(&req.account.id, offset).await {
        return ApiError::internal("clock update failed", e).into_response();
    }
    app.forget_account(&req.account.id);
    let mut account = (*req.account).clone();
    account.clock_offset = offset;
    Json(clock_view(offset, account.now())).into_response()
}
