//! Refunds of captured charges, full or partial, by `charge` or `payment_intent`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::ctx::{previous_attributes, Answer, Ctx, StripeObject};
use crate::error::ApiError;
use crate::ids;
use crate::resources::balance_transaction;
use crate::resources::charge::Charge;
use crate::resources::common::list::{self, ListParams};
use crate::resources::common::params::MetadataParam;
use crate::resources::payment_intent;
use crate::resources::payment_intent::PaymentIntent;
use crate::resources::registry::{Fixture, Step};
use crate::resources::{apply_metadata, new_metadata, Metadata};

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Refund {
    pub id: String,
    pub object: String,
    pub amount: i64,
    pub balance_transaction: Option<String>,
    pub charge: Option<String>,
    pub created: i64,
    pub currency: String,
    pub destination_details: Option<Value>,
    pub metadata: Metadata,
    pub payment_intent: Option<String>,
    pub reason: Option<String>,
    pub receipt_number: Option<String>,
    pub source_transfer_reversal: Option<String>,
    pub status: Option<String>,
    pub transfer_reversal: Option<String>,
}

impl StripeObject for Refund {
    const OBJECT: &'static str = "refund";
    const PREFIXES: &'static [&'static str] = &["re"];
    const EXPANDABLE: &'static [&'static str] = &[
        "balance_transaction",
        "charge",
        "destination_details",
        "payment_intent",
        "source_transfer_reversal",
        "transfer_reversal",
    ];
    fn id(&self) -> &str {
        &self.id
    }
    fn created(&self) -> i64 {
        self.created
    }
    fn index(&self) -> Vec<(String, String)> {
        let mut index = Vec::new();
        if let Some(c) = &self.charge {
            index.push(("charge".to_string(), c.clone()));
        }
        if let Some(pi) = &self.payment_intent {
            index.push(("payment_intent".to_string(), pi.clone()));
        }
        index
    }
}

#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    Duplicate,
    Fraudulent,
    RequestedByCustomer,
}

#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct CreateParams {
    pub amount: Option<i64>,
    pub charge: Option<String>,
    pub currency: Option<String>,
    pub customer: Option<String>,
    pub instructions_email: Option<String>,
    pub metadata: MetadataParam,
    pub origin: Option<String>,
    pub payment_intent: Option<String>,
    pub reason: Option<Reason>,
    pub refund_application_fee: Option<bool>,
    pub reverse_transfer: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct UpdateParams {
    pub metadata: MetadataParam,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ListFilters {
    pub charge: Option<String>,
    pub payment_intent: Option<String>,
}

fn encode<T: Serialize>(v: &T) -> Result<Value, ApiError> {
    serde_json::to_value(v).map_err(|e| ApiError::internal("encode", e))
}

pub async fn create(ctx: &mut Ctx, params: &CreateParams) -> Result<Value, ApiError> {
    let p = params.clone();
    let charge_id = match (&p.charge, &p.payment_intent) {
        (Some(_), Some(_)) => {
            return Err(ApiError::invalid_request("You can only specify one of charge or payment_intent.").with_param("payment_intent"))
        }
        (Some(c), None) => c.clone(),
        (None, Some(pi_id)) => {
            let pi: PaymentIntent = ctx.fetch(pi_id).await.map_err(|e| e.referenced_by("payment_intent"))?;
            if pi.status != crate::resources::payment_intent::Status::Succeeded {
                return Err(ApiError::invalid_request(format!(
                    "This PaymentIntent ({pi_id}) does not have a successful charge to refund."
                ))
                .with_code("charge_not_refundable")
                .with_param("payment_intent"));
            }
            pi.latest_charge.clone().unwrap_or_default()
        }
        (None, None) => return Err(ApiError::invalid_request("One of the following params should be provided for this request: payment_intent or charge.")),
    };
    let mut charge: Charge = ctx
        .fetch(&charge_id)
        .await
        .map_err(|e| e.referenced_by("charge"))?;
    let before = encode(&charge)?;
    if charge.status != "succeeded" || !charge.captured {
        return Err(ApiError::invalid_request(format!(
            "Charge {} has not been captured and cannot be refunded.",
            charge.id
        ))
        .with_code("charge_not_refundable")
        .with_param("charge"));
    }
    // A partial capture releases the rest, which Stripe counts in `amount_refunded`:
    // what is left to refund is the amount less everything refunded or released.
    let remaining = charge.amount - charge.amount_refunded;
    if remaining <= 0 {
        return Err(ApiError::invalid_request(format!(
            "Charge {} has already been refunded.",
            charge.id
        ))
        .with_code("charge_already_refunded")
        .with_param("charge"));
    }
    let amount = p.amount.unwrap_or(remaining);
    if amount <= 0 {
        return Err(ApiError::invalid_param(
            "amount",
            "parameter_invalid_integer",
            "Refund amount must be greater than zero.",
        ));
    }
    if amount > remaining {
        return Err(ApiError::invalid_param(
            "amount",
            "amount_too_large",
            format!("Refund amount ({amount}) is greater than unrefunded amount on charge ({remaining})"),
        ));
    }
    let id = ids::new_id("re");
    let txn = balance_transaction::for_refund(ctx, &id, amount, &charge.currency)?;
    let refund = Refund {
        id,
        object: "refund".into(),
        amount,
        balance_transaction: Some(txn),
        charge: Some(charge.id.clone()),
        created: ctx.now,
        currency: charge.currency.clone(),
        destination_details: Some(json!({
            "card": {"type": "refund"},
            "type": "card",
        })),
        metadata: new_metadata(p.metadata)?,
        payment_intent: charge.payment_intent.clone(),
        reason: p.reason.map(|r| match r {
            Reason::Duplicate => "duplicate".to_string(),
            Reason::Fraudulent => "fraudulent".to_string(),
            Reason::RequestedByCustomer => "requested_by_customer".to_string(),
        }),
        receipt_number: None,
        source_transfer_reversal: None,
        status: Some("succeeded".into()),
        transfer_reversal: None,
    };
    let value = ctx.save(&refund)?;
    charge.amount_refunded += amount;
    charge.refunded = charge.amount_refunded >= charge.amount;
    let after = ctx.save(&charge)?;
    ctx.emit("refund.created", &value, None);
    ctx.emit(
        "charge.refunded",
        &after,
        previous_attributes(&before, &after),
    );
    Ok(value.into())
}

/// The refund as it was saved (see [`Ctx::fetch_text`]).
pub async fn retrieve(ctx: &mut Ctx, id: &str) -> Result<Answer, ApiError> {
    ctx.fetch_text::<Refund>(id).await.map(Answer::Text)
}

pub async fn update(ctx: &mut Ctx, id: &str, params: &UpdateParams) -> Result<Value, ApiError> {
    let mut refund: Refund = ctx.fetch(id).await?;
    let before = encode(&refund)?;
    apply_metadata(&mut refund.metadata, params.metadata.clone())?;
    let after = ctx.save(&refund)?;
    if let Some(previous) = previous_attributes(&before, &after) {
        ctx.emit("refund.updated", &after, Some(previous));
    }
    Ok(after.into())
}

pub async fn cancel(ctx: &mut Ctx, id: &str) -> Result<Value, ApiError> {
    let refund: Refund = ctx.fetch(id).await?;
    let status = refund.status.clone().unwrap_or_default();
    if status != "requires_action" {
        return Err(ApiError::invalid_request(format!(
            "Refund {id} cannot be canceled because it has a status of {status}. Only refunds with a status of requires_action can be canceled."
        ))
        .with_code("refund_unexpected_state"));
    }
    encode(&refund)
}

pub async fn list(
    ctx: &mut Ctx,
    filters: &ListFilters,
    params: &ListParams,
) -> Result<Answer, ApiError> {
    let filter = match (&filters.charge, &filters.payment_intent) {
        (Some(c), _) => Some(("charge".to_string(), c.clone())),
        (None, Some(pi)) => Some(("payment_intent".to_string(), pi.clone())),
        _ => None,
    };
    list::page(ctx, Refund::OBJECT, filter, params, "/v1/refunds").await
}

// ---- payground trigger ---------------------------------------------------------

/// A full refund of the `{payment_intent}` a previous step saved.
pub const REFUND: Step = Step::post(
    "/v1/refunds",
    &[("payment_intent", "{payment_intent}")],
    None,
);

pub const FIXTURES: &[Fixture] = &[Fixture {
    event: "refund.created",
    steps: &[payment_intent::CARD_PAYMENT, REFUND],
}];
