//! SetupAttempts: one per confirm of a SetupIntent (and its 3-D Secure or bank
//! outcome), listed by `GET /v1/setup_attempts?setup_intent=seti_...`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::ctx::{Answer, Ctx, StripeObject};
use crate::error::ApiError;
use crate::ids;
use crate::resources::common::list::{self, ListParams};
use crate::resources::payment_method::PaymentMethod;
use crate::resources::setup_intent::SetupIntent;

/// A SetupAttempt's `status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    RequiresConfirmation,
    RequiresAction,
    Processing,
    Succeeded,
    Failed,
    Abandoned,
}

/// Stripe's setup_attempt object.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct SetupAttempt {
    pub id: String,
    pub object: String,
    pub application: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attach_to_self: Option<bool>,
    pub created: i64,
    pub customer: Option<String>,
    pub flow_directions: Option<Vec<String>>,
    pub livemode: bool,
    pub on_behalf_of: Option<String>,
    pub payment_method: String,
    pub payment_method_details: Value,
    pub setup_error: Option<Value>,
    pub setup_intent: String,
    pub status: Status,
    pub usage: String,
}

impl StripeObject for SetupAttempt {
    const OBJECT: &'static str = "setup_attempt";
    const PREFIXES: &'static [&'static str] = &["setatt"];
    const EXPANDABLE: &'static [&'static str] = &[
        "application",
        "customer",
        "on_behalf_of",
        "payment_method",
        "setup_intent",
    ];
    fn id(&self) -> &str {
        &self.id
    }
    fn created(&self) -> i64 {
        self.created
    }
    fn index(&self) -> Vec<(String, String)> {
        vec![("setup_intent".to_string(), self.setup_intent.clone())]
    }
}

/// A new attempt of `si` with `pm`, not yet saved: the caller records its
/// outcome and saves it once.
pub fn start(ctx: &Ctx, si: &SetupIntent, pm: &PaymentMethod) -> Result<SetupAttempt, ApiError> {
    Ok(SetupAttempt {
        id: ids::new_id("setatt"),
        object: SetupAttempt::OBJECT.into(),
        application: None,
        attach_to_self: si.attach_to_self,
        created: ctx.now,
        customer: si.customer.clone(),
        flow_directions: si.flow_directions.clone(),
        livemode: false,
        on_behalf_of: None,
        payment_method: pm.id.clone(),
        payment_method_details: payment_method_details(ctx, pm, false),
        setup_error: None,
        setup_intent: si.id.clone(),
        status: Status::RequiresConfirmation,
        usage: si.usage.clone(),
    })
}

/// The attempt's `payment_method_details`: what the network checked of a card
/// (and whether 3-D Secure authenticated it); a bank debit's type alone.
pub fn payment_method_details(ctx: &Ctx, pm: &PaymentMethod, authenticated: bool) -> Value {
    let Some(card) = &pm.card else {
        return json!({ pm.kind.clone(): {}, "type": pm.kind });
    };
    let checks = pm
        .verified_checks(ctx.account_id())
        .or_else(|| card.checks.clone());
    let three_d_secure = authenticated.then(|| {
        json!({
            "authentication_flow": "challenge",
            "electronic_commerce_indicator": "05",
            "result": "authenticated",
            "result_reason": null,
            "transaction_id": ids::random_string(32),
            "version": "2.2.0",
        })
    });
    json!({
        "card": {
            "brand": card.brand,
            "checks": checks,
            "country": card.country,
            "exp_month": card.exp_month,
            "exp_year": card.exp_year,
            "fingerprint": card.fingerprint,
            "funding": card.funding,
            "last4": card.last4,
            "network": card.brand,
            "three_d_secure": three_d_secure,
            "wallet": null,
        },
        "type": "card",
    })
}

/// `GET /v1/setup_attempts` filters: Stripe requires the SetupIntent.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListFilters {
    pub setup_intent: String,
}

pub async fn list(
    ctx: &mut Ctx,
    filters: &ListFilters,
    params: &ListParams,
) -> Result<Answer, ApiError> {
    let _si: SetupIntent = ctx
        .fetch(&filters.setup_intent)
        .await
        .map_err(|e| e.referenced_by("setup_intent"))?;
    let filter = Some(("setup_intent".to_string(), filters.setup_intent.clone()));
    list::page(
        ctx,
        SetupAttempt::OBJECT,
        filter,
        params,
        "/v1/setup_attempts",
    )
    .await
}
