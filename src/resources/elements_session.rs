//! What the Payment Element asks before it renders (`GET /v1/elements/sessions`,
//! as stripe.js does), and what it may do for a customer with a CustomerSession's
//! client secret: remove a saved payment method.
//!
//! The answer carries what the element needs and nothing it may not see: the
//! payment method types to offer, the amount and currency when known, the intent
//! as a publishable key sees it (when a client secret names one), and with a
//! CustomerSession the enabled features and the customer's saved payment methods
//! that its filters allow, newest first, at most its redisplay limit.

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::ctx::{Ctx, StripeObject};
use crate::error::ApiError;
use crate::ids;
use crate::resources::common::intent::client_secret_matches;
use crate::resources::common::list::ListParams;
use crate::resources::customer_session::{self, CustomerSession, Toggle};
use crate::resources::payment_intent::{self, PaymentIntent};
use crate::resources::payment_method::{self, PaymentMethod};
use crate::resources::setup_intent::{self, SetupIntent};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SessionType {
    PaymentIntent,
    SetupIntent,
    DeferredIntent,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    Payment,
    Setup,
    Subscription,
}

impl Mode {
    fn as_str(self) -> &'static str {
        match self {
            Mode::Payment => "payment",
            Mode::Setup => "setup",
            Mode::Subscription => "subscription",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FutureUsage {
    OffSession,
    OnSession,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CaptureMethod {
    Automatic,
    AutomaticAsync,
    Manual,
}

/// `deferred_intent`: the intent the merchant's server will create later, as
/// `elements({mode, amount, currency, ...})` describes it.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DeferredIntent {
    pub mode: Mode,
    #[serde(default)]
    pub amount: Option<i64>,
    #[serde(default)]
    pub currency: Option<String>,
    #[serde(default)]
    pub setup_future_usage: Option<FutureUsage>,
    #[serde(default)]
    pub capture_method: Option<CaptureMethod>,
    #[serde(default)]
    pub payment_method_types: Option<Vec<String>>,
    #[serde(default)]
    pub on_behalf_of: Option<String>,
    #[serde(default)]
    pub payment_method_configuration: Option<String>,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SessionParams {
    #[serde(rename = "type")]
    pub kind: SessionType,
    #[serde(default)]
    pub client_secret: Option<String>,
    #[serde(default)]
    pub customer_session_client_secret: Option<String>,
    #[serde(default)]
    pub deferred_intent: Option<DeferredIntent>,
    #[serde(default)]
    pub locale: Option<String>,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DetachParams {
    pub customer_session_client_secret: String,
}

/// The intent id a client secret (`pi_..._secret_...`) belongs to.
fn intent_of(client_secret: &str) -> Option<&str> {
    client_secret.split_once("_secret_").map(|(id, _)| id)
}

fn no_intent(param: &str) -> ApiError {
    ApiError::invalid_request(
        "The client_secret provided does not match any associated PaymentIntent or SetupIntent on this account.",
    )
    .with_code("resource_missing")
    .with_param(param)
}

/// The customer's saved payment methods the session lets the element show:
/// `allow_redisplay` among the filters, newest first, at most the limit.
async fn redisplayable(ctx: &mut Ctx, session: &CustomerSession) -> Result<Vec<Value>, ApiError> {
    let Some(features) = session.payment_element() else {
        return Ok(Vec::new());
    };
    if features.payment_method_redisplay != Toggle::Enabled {
        return Ok(Vec::new());
    }
    let limit = features
        .payment_method_redisplay_limit
        .unwrap_or(customer_session::DEFAULT_REDISPLAY_LIMIT)
        .clamp(1, customer_session::MAX_REDISPLAY_LIMIT) as usize;
    // One index entry per allow_redisplay value: a page of each, merged by age.
    let mut found: Vec<(i64, String)> = Vec::new();
    for filter in &features.payment_method_allow_redisplay_filters {
        let page = ListParams {
            limit,
            ..Default::default()
        };
        let rows =
            payment_method::saved_for_redisplay(ctx, &session.customer, filter.as_str(), &page)
                .await?;
        found.extend(rows.into_iter().map(|r| (r.seq, r.data)));
    }
    found.sort_by_key(|(seq, _)| std::cmp::Reverse(*seq));
    found.truncate(limit);
    found
        .into_iter()
        .map(|(_, data)| {
            serde_json::from_str(&data)
                .map_err(|e| ApiError::internal("stored payment method does not decode", e))
        })
        .collect()
}

/// `GET /v1/elements/sessions`.
pub async fn retrieve(ctx: &mut Ctx, params: &SessionParams) -> Result<Value, ApiError> {
    let p = params.clone();
    let mut payment_intent_view = Value::Null;
    let mut setup_intent_view = Value::Null;
    let (mode, amount, currency, setup_future_usage, capture_method, types) = match p.kind {
        SessionType::PaymentIntent => {
            let secret = p
                .client_secret
                .as_deref()
                .ok_or_else(|| ApiError::missing_param("client_secret"))?;
            let id = intent_of(secret).ok_or_else(|| no_intent("client_secret"))?;
            let pi = ctx
                .find::<PaymentIntent>(id)
                .await?
                .filter(|pi| client_secret_matches(Some(secret), pi.client_secret.as_deref()))
                .ok_or_else(|| no_intent("client_secret"))?;
            payment_intent_view = payment_intent::publishable_view(
                &serde_json::to_value(&pi).map_err(|e| ApiError::internal("encode", e))?,
            );
            (
                Mode::Payment,
                Some(pi.amount),
                Some(pi.currency.clone()),
                pi.setup_future_usage.clone(),
                Some(pi.capture_method.clone()),
                pi.payment_method_types.clone(),
            )
        }
        SessionType::SetupIntent => {
            let secret = p
                .client_secret
                .as_deref()
                .ok_or_else(|| ApiError::missing_param("client_secret"))?;
            let id = intent_of(secret).ok_or_else(|| no_intent("client_secret"))?;
            let si = ctx
                .find::<SetupIntent>(id)
                .await?
                .filter(|si| client_secret_matches(Some(secret), si.client_secret.as_deref()))
                .ok_or_else(|| no_intent("client_secret"))?;
            setup_intent_view = setup_intent::publishable_view(
                &serde_json::to_value(&si).map_err(|e| ApiError::internal("encode", e))?,
            );
            (
                Mode::Setup,
                None,
                None,
                Some(si.usage.clone()),
                None,
                si.payment_method_types.clone(),
            )
        }
        SessionType::DeferredIntent => {
            let d = p
                .deferred_intent
                .clone()
                .ok_or_else(|| ApiError::missing_param("deferred_intent"))?;
            if d.mode != Mode::Setup {
                if d.amount.is_none() {
                    return Err(ApiError::missing_param("deferred_intent[amount]"));
                }
                if d.currency.is_none() {
                    return Err(ApiError::missing_param("deferred_intent[currency]"));
                }
            }
            if let Some(types) = &d.payment_method_types {
                crate::resources::common::intent::check_types(types).map_err(|mut e| {
                    // `payment_method_types[1]` sits under `deferred_intent` here.
                    e.param =
                        e.param
                            .take()
                            .map(|p| match p.strip_prefix("payment_method_types") {
                                Some(rest) => {
                                    format!("deferred_intent[payment_method_types]{rest}")
                                }
                                None => p,
                            });
                    e
                })?;
            }
            let types = d
                .payment_method_types
                .clone()
                .unwrap_or_else(|| vec!["card".to_string()]);
            (
                d.mode,
                d.amount,
                d.currency.map(|c| c.to_ascii_lowercase()),
                d.setup_future_usage.map(|u| match u {
                    FutureUsage::OffSession => "off_session".to_string(),
                    FutureUsage::OnSession => "on_session".to_string(),
                }),
                d.capture_method.map(|m| match m {
                    CaptureMethod::Automatic => "automatic".to_string(),
                    CaptureMethod::AutomaticAsync => "automatic_async".to_string(),
                    CaptureMethod::Manual => "manual".to_string(),
                }),
                types,
            )
        }
    };
    let customer = match &p.customer_session_client_secret {
        Some(secret) => {
            let session =
                customer_session::by_client_secret(ctx, secret, "customer_session_client_secret")
                    .await?;
            let saved = redisplayable(ctx, &session).await?;
            json!({
                "id": session.customer,
                "payment_methods": saved,
                "default_payment_method": null,
                "customer_session": session.browser_view()?,
            })
        }
        None => Value::Null,
    };
    Ok(json!({
        "object": "elements_session",
        "id": ids::new_id("elements_session"),
        "livemode": false,
        "type": match p.kind {
            SessionType::PaymentIntent => "payment_intent",
            SessionType::SetupIntent => "setup_intent",
            SessionType::DeferredIntent => "deferred_intent",
        },
        "mode": mode.as_str(),
        "amount": amount,
        "currency": currency,
        "setup_future_usage": setup_future_usage,
        "capture_method": capture_method,
        "locale": p.locale,
        "ordered_payment_method_types": types,
        "payment_intent": payment_intent_view,
        "setup_intent": setup_intent_view,
        "customer": customer,
    }))
}

/// `POST /v1/elements/payment_methods/{id}/detach`: the Payment Element's remove
/// button, allowed only by a CustomerSession that enables `payment_method_remove`
/// and only for that customer's own payment methods.
pub async fn detach(ctx: &mut Ctx, id: &str, params: &DetachParams) -> Result<Value, ApiError> {
    let session = customer_session::by_client_secret(
        ctx,
        &params.customer_session_client_secret,
        "customer_session_client_secret",
    )
    .await?;
    let allowed = session
        .payment_element()
        .is_some_and(|f| f.payment_method_remove == Toggle::Enabled);
    if !allowed {
        return Err(ApiError::invalid_request(
            "This CustomerSession does not allow removing payment methods: create it with components[payment_element][features][payment_method_remove]=enabled.",
        )
        .with_param("customer_session_client_secret"));
    }
    let owned = ctx
        .find::<PaymentMethod>(id)
        .await?
        .is_some_and(|pm| pm.customer.as_deref() == Some(session.customer.as_str()));
    if !owned {
        return Err(ApiError::no_such(PaymentMethod::OBJECT, id));
    }
    payment_method::detach(ctx, id).await
}
