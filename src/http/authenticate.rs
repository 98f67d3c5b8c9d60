//! The hosted 3-D Secure test page. Plain HTML that works without JavaScript: a
//! form with "Complete authentication" and "Fail authentication". Afterwards the
//! browser goes back to the merchant's `return_url` (303) with `payment_intent`,
//! `payment_intent_client_secret` and `redirect_status`, as Stripe sends it.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::Form;
use serde::Deserialize;

use crate::error::ApiError;
use crate::http::app::App;
use crate::http::endpoints::Endpoint;
use crate::resources::currency;
use crate::resources::payment_intent::{self, PaymentIntent, Status};
use crate::resources::payment_method::PaymentMethod;
use crate::store::Account;

const PAGE: &str = "/payground/authenticate/{account}/{id}";

pub fn endpoints() -> Vec<Endpoint> {
    vec![
        Endpoint::get(
            PAGE,
            "GetPaygroundAuthenticate",
            "The 3-D Secure test page",
            page,
        )
        .page(),
        Endpoint::post(
            PAGE,
            "PostPaygroundAuthenticate",
            "The card holder's choice on the 3-D Secure test page",
            submit,
        )
        .page(),
    ]
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

fn format_amount(amount: i64, currency_code: &str) -> String {
    if currency::is_zero_decimal(currency_code) {
        format!("{amount} {}", currency_code.to_uppercase())
    } else {
        format!(
            "{}.{:02} {}",
            amount / 100,
            amount % 100,
            currency_code.to_uppercase()
        )
    }
}

fn html_page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>{title}</title><style>body{{font-family:system-ui,sans-serif;background:#f6f8fa;margin:0;display:flex;justify-content:center}}\
main{{background:#fff;margin:48px 16px;padding:32px;border-radius:8px;box-shadow:0 1px 4px rgba(0,0,0,.1);max-width:420px;width:100%}}\
h1{{font-size:20px}}dl{{display:grid;grid-template-columns:auto 1fr;gap:6px 16px}}dt{{color:#57606a}}\
button{{display:block;width:100%;padding:12px;margin-top:12px;font-size:16px;border-radius:6px;border:1px solid #d0d7de;cursor:pointer}}\
button.complete{{background:#1f883d;color:#fff;border-color:#1a7f37}}button.fail{{background:#fff;color:#cf222e}}\
.note{{color:#57606a;font-size:13px}}</style></head><body><main>{body}</main></body></html>"
    )
}

fn error_page(status: StatusCode, message: &str) -> Response {
    (
        status,
        Html(html_page(
            "Authentication",
            &format!(
                "<h1>Authentication unavailable</h1><p>{}</p>",
                escape(message)
            ),
        )),
    )
        .into_response()
}

async fn account(app: &App, id: &str) -> Result<Arc<Account>, Response> {
    match app.engine.store.account(id).await {
        Ok(Some(a)) => Ok(Arc::new(a)),
        Ok(None) => Err(error_page(
            StatusCode::NOT_FOUND,
            "This payment does not exist.",
        )),
        Err(e) => {
            tracing::error!(error = %e, "account lookup for the authentication page failed");
            Err(error_page(
                StatusCode::INTERNAL_SERVER_ERROR,
                "payground could not load this payment.",
            ))
        }
    }
}

#[derive(Deserialize)]
struct PageQuery {
    client_secret: Option<String>,
    return_url: Option<String>,
}

async fn page(
    State(app): State<App>,
    Path((account_id, id)): Path<(String, String)>,
    Query(q): Query<PageQuery>,
) -> Response {
    let account = match account(&app, &account_id).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let mut ctx = app.engine.internal_context(account);
    let pi: PaymentIntent = match ctx.fetch(&id).await {
        Ok(pi) => pi,
        Err(_) => return error_page(StatusCode::NOT_FOUND, "This payment does not exist."),
    };
    let secret = q.client_secret.unwrap_or_default();
    let secret_ok = pi
        .client_secret
        .as_deref()
        .is_some_and(|real| crate::crypto::constant_time_eq(real.as_bytes(), secret.as_bytes()));
    if !secret_ok {
        return error_page(StatusCode::NOT_FOUND, "This payment does not exist.");
    }
    if pi.status != Status::RequiresAction {
        return (
            StatusCode::OK,
            Html(html_page(
                "Authentication",
                &format!(
                    "<h1>Nothing to authenticate</h1><p>This payment is {}.</p>",
                    escape(pi.status.as_str())
                ),
            )),
        )
            .into_response();
    }
    let card = match &pi.payment_method {
        Some(pm_id) => ctx
            .fetch::<PaymentMethod>(pm_id)
            .await
            .ok()
            .and_then(|pm| pm.card)
            .map(|c| format!("{} •••• {}", c.brand, c.last4)),
        None => None,
    };
    let return_url = q.return_url.unwrap_or_default();
    let body = format!(
        "<h1>3D Secure test payment</h1>\
<p class=\"note\">payground test page: choose what the card holder does.</p>\
<dl><dt>Merchant</dt><dd>payground test merchant</dd><dt>Amount</dt><dd id=\"amount\">{amount}</dd><dt>Card</dt><dd id=\"card\">{card}</dd></dl>\
<form method=\"post\"><input type=\"hidden\" name=\"client_secret\" value=\"{secret}\"><input type=\"hidden\" name=\"return_url\" value=\"{return_url}\">\
<button class=\"complete\" type=\"submit\" name=\"action\" value=\"complete\">Complete authentication</button>\
<button class=\"fail\" type=\"submit\" name=\"action\" value=\"fail\">Fail authentication</button></form>",
        amount = escape(&format_amount(pi.amount, &pi.currency)),
        card = escape(&card.unwrap_or_else(|| "card".into())),
        secret = escape(&secret),
        return_url = escape(&return_url),
    );
    (
        StatusCode::OK,
        Html(html_page("3D Secure test payment", &body)),
    )
        .into_response()
}

async fn submit(
    State(app): State<App>,
    Path((account_id, id)): Path<(String, String)>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let account = match account(&app, &account_id).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let secret = form.get("client_secret").cloned().unwrap_or_default();
    let completed = match form.get("action").map(String::as_str) {
        Some("complete") => true,
        Some("fail") => false,
        _ => {
            return error_page(
                StatusCode::BAD_REQUEST,
                "Choose Complete authentication or Fail authentication.",
            )
        }
    };
    let result: Result<PaymentIntent, ApiError> =
        crate::run_as!(app.engine, account, |ctx| payment_intent::authenticate(
            &mut ctx, &id, &secret, completed
        )
        .await);
    let pi = match result {
        Ok(pi) => pi,
        Err(e) if e.status == 404 => {
            return error_page(StatusCode::NOT_FOUND, "This payment does not exist.")
        }
        Err(e) if e.status == 400 => return error_page(StatusCode::CONFLICT, &e.message),
        Err(e) => return error_page(StatusCode::INTERNAL_SERVER_ERROR, &e.message),
    };
    let redirect_status = match pi.status {
        Status::Succeeded | Status::RequiresCapture => "succeeded",
        Status::Processing => "pending",
        _ => "failed",
    };
    let return_url = form.get("return_url").cloned().unwrap_or_default();
    if return_url.is_empty() {
        let message = if redirect_status == "succeeded" {
            "Authentication complete."
        } else {
            "Authentication failed."
        };
        return (
            StatusCode::OK,
            Html(html_page(
                "Authentication",
                &format!("<h1 id=\"result\" data-status=\"{redirect_status}\">{message}</h1><p class=\"note\">You can close this window.</p>"),
            )),
        )
            .into_response();
    }
    let sep = if return_url.contains('?') { '&' } else { '?' };
    let location = format!(
        "{return_url}{sep}payment_intent={}&payment_intent_client_secret={}&redirect_status={redirect_status}",
        pi.id,
        form_urlencoded::byte_serialize(pi.client_secret.clone().unwrap_or_default().as_bytes()).collect::<String>(),
    );
    (StatusCode::SEE_OTHER, [(header::LOCATION, location)]).into_response()
}
