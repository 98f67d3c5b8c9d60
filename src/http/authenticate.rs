//! The hosted 3-D Secure test page, for PaymentIntents and SetupIntents alike.
//! Plain HTML that works without JavaScript: a form with "Complete
//! authentication" and "Fail authentication". Afterwards the browser goes back to
//! the merchant's `return_url` (303) with `payment_intent` and
//! `payment_intent_client_secret` (or `setup_intent` and
//! `setup_intent_client_secret`) and `redirect_status`, as Stripe sends them.
//! The pages are askama templates (`templates/three_d_secure/`), which escape
//! what they are given.

use std::collections::HashMap;
use std::sync::Arc;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::Form;
use serde::Deserialize;

use crate::error::ApiError;
use crate::http::app::App;
use crate::http::endpoints::Endpoint;
use crate::resources::currency;
use crate::resources::payment_intent::{self, PaymentIntent};
use crate::resources::payment_method::PaymentMethod;
use crate::resources::setup_intent::{self, SetupIntent};
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

/// The challenge: what is being paid, and the card holder's two choices.
#[derive(Template)]
#[template(path = "three_d_secure/page.html")]
struct ChallengePage<'a> {
    /// "Amount" for a payment, "Purpose" for a setup.
    purpose_label: &'a str,
    amount: String,
    card: String,
    client_secret: &'a str,
    return_url: &'a str,
}

/// What the card holder sees after choosing when there is no `return_url` to go
/// back to (`use_stripe_sdk`: stripe.js closes the frame).
#[derive(Template)]
#[template(path = "three_d_secure/result.html")]
struct ResultPage {
    succeeded: bool,
    redirect_status: &'static str,
    message: &'static str,
}

/// A page that says why there is nothing to choose: an unknown payment, a wrong
/// client secret, a payment past authentication.
#[derive(Template)]
#[template(path = "three_d_secure/error.html")]
struct NoticePage<'a> {
    heading: &'a str,
    message: &'a str,
    /// Drawn as an error rather than as information.
    problem: bool,
}

/// The page no script may run in, which no cache keeps (its URL and form hold
/// the client secret) and whose address is not sent on to the return URL.
fn html_response<T: Template>(status: StatusCode, page: &T) -> Response {
    match page.render() {
        Ok(body) => (
            status,
            [
                (header::CACHE_CONTROL, "no-store"),
                (
                    header::CONTENT_SECURITY_POLICY,
                    "default-src 'none'; style-src 'self'; img-src 'self'; base-uri 'none'",
                ),
                (header::REFERRER_POLICY, "no-referrer"),
            ],
            Html(body),
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "the authentication page did not render");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "payground could not show this page.",
            )
                .into_response()
        }
    }
}

fn error_page(status: StatusCode, message: &str) -> Response {
    html_response(
        status,
        &NoticePage {
            heading: "Authentication unavailable",
            message,
            problem: true,
        },
    )
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

/// The intent a page is for, as far as the page needs it.
struct Pending {
    /// `payment_intent` or `setup_intent`: the redirect's parameter names.
    param: &'static str,
    id: String,
    client_secret: Option<String>,
    status: &'static str,
    requires_action: bool,
    payment_method: Option<String>,
    /// What the card holder is asked to approve: the amount, or saving the card.
    purpose: (&'static str, String),
}

impl Pending {
    fn of_payment(pi: &PaymentIntent) -> Self {
        Pending {
            param: "payment_intent",
            id: pi.id.clone(),
            client_secret: pi.client_secret.clone(),
            status: pi.status.as_str(),
            requires_action: pi.status == payment_intent::Status::RequiresAction,
            payment_method: pi.payment_method.clone(),
            purpose: ("Amount", format_amount(pi.amount, &pi.currency)),
        }
    }

    fn of_setup(si: &SetupIntent) -> Self {
        Pending {
            param: "setup_intent",
            id: si.id.clone(),
            client_secret: si.client_secret.clone(),
            status: si.status.as_str(),
            requires_action: si.status == setup_intent::Status::RequiresAction,
            payment_method: si.payment_method.clone(),
            purpose: ("Purpose", "Save the card for future payments".to_string()),
        }
    }

    /// Where the authentication left the intent, in Stripe's `redirect_status` words.
    fn redirect_status(&self) -> &'static str {
        match self.status {
            "succeeded" | "requires_capture" => "succeeded",
            "processing" => "pending",
            _ => "failed",
        }
    }
}

async fn load(ctx: &mut crate::ctx::Ctx, id: &str) -> Option<Pending> {
    if id.starts_with("seti_") {
        let si: SetupIntent = ctx.fetch(id).await.ok()?;
        return Some(Pending::of_setup(&si));
    }
    let pi: PaymentIntent = ctx.fetch(id).await.ok()?;
    Some(Pending::of_payment(&pi))
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
    let Some(intent) = load(&mut ctx, &id).await else {
        return error_page(StatusCode::NOT_FOUND, "This payment does not exist.");
    };
    let secret = q.client_secret.unwrap_or_default();
    let secret_ok = intent
        .client_secret
        .as_deref()
        .is_some_and(|real| crate::crypto::constant_time_eq(real.as_bytes(), secret.as_bytes()));
    if !secret_ok {
        return error_page(StatusCode::NOT_FOUND, "This payment does not exist.");
    }
    if !intent.requires_action {
        return html_response(
            StatusCode::OK,
            &NoticePage {
                heading: "Nothing to authenticate",
                message: &format!("This payment is {}.", intent.status),
                problem: false,
            },
        );
    }
    let card = match &intent.payment_method {
        Some(pm_id) => ctx
            .fetch::<PaymentMethod>(pm_id)
            .await
            .ok()
            .and_then(|pm| pm.card)
            .map(|c| format!("{} •••• {}", c.brand, c.last4)),
        None => None,
    };
    let return_url = q.return_url.unwrap_or_default();
    let (purpose_label, purpose) = intent.purpose;
    html_response(
        StatusCode::OK,
        &ChallengePage {
            purpose_label,
            amount: purpose,
            card: card.unwrap_or_else(|| "card".into()),
            client_secret: &secret,
            return_url: &return_url,
        },
    )
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
    let result: Result<Pending, ApiError> = if id.starts_with("seti_") {
        crate::run_as!(app.engine, account, |ctx| setup_intent::authenticate(
            &mut ctx, &id, &secret, completed
        )
        .await)
        .map(|si| Pending::of_setup(&si))
    } else {
        crate::run_as!(app.engine, account, |ctx| payment_intent::authenticate(
            &mut ctx, &id, &secret, completed
        )
        .await)
        .map(|pi| Pending::of_payment(&pi))
    };
    let intent = match result {
        Ok(intent) => intent,
        Err(e) if e.status == 404 => {
            return error_page(StatusCode::NOT_FOUND, "This payment does not exist.")
        }
        Err(e) if e.status == 400 => return error_page(StatusCode::CONFLICT, &e.message),
        Err(e) => return error_page(StatusCode::INTERNAL_SERVER_ERROR, &e.message),
    };
    let redirect_status = intent.redirect_status();
    let return_url = form.get("return_url").cloned().unwrap_or_default();
    if return_url.is_empty() {
        let succeeded = redirect_status == "succeeded";
        return html_response(
            StatusCode::OK,
            &ResultPage {
                succeeded,
                redirect_status,
                message: if succeeded {
                    "Authentication complete."
                } else {
                    "Authentication failed."
                },
            },
        );
    }
    let sep = if return_url.contains('?') { '&' } else { '?' };
    let param = intent.param;
    let location = format!(
        "{return_url}{sep}{param}={}&{param}_client_secret={}&redirect_status={redirect_status}",
        intent.id,
        form_urlencoded::byte_serialize(
            intent.client_secret.clone().unwrap_or_default().as_bytes()
        )
        .collect::<String>(),
    );
    (StatusCode::SEE_OTHER, [(header::LOCATION, location)]).into_response()
}
