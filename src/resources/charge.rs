//! Charges: one per attempt of a PaymentIntent, failed ones included.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::ctx::{previous_attributes, Answer, Ctx, StripeObject};
use crate::error::ApiError;
use crate::ids;
use crate::resources::common::list::{self, ListParams};
use crate::resources::common::params::{Field, MetadataParam};
use crate::resources::payment_method::{self, BillingDetails, PaymentMethod};
use crate::resources::registry::Fixture;
use crate::resources::{apply_metadata, Metadata, Shipping, ShippingParam};
use crate::resources::{payment_intent, refund};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Outcome {
    pub network_status: Option<String>,
    pub reason: Option<String>,
    pub risk_level: String,
    pub risk_score: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<Value>,
    pub seller_message: Option<String>,
    #[serde(rename = "type")]
    pub kind: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Charge {
    pub id: String,
    pub object: String,
    pub amount: i64,
    pub amount_captured: i64,
    pub amount_refunded: i64,
    pub application: Option<String>,
    pub application_fee: Option<String>,
    pub application_fee_amount: Option<i64>,
    pub balance_transaction: Option<String>,
    pub billing_details: BillingDetails,
    pub calculated_statement_descriptor: Option<String>,
    pub captured: bool,
    pub created: i64,
    pub currency: String,
    pub customer: Option<String>,
    pub description: Option<String>,
    pub destination: Option<String>,
    pub dispute: Option<String>,
    pub disputed: bool,
    pub failure_balance_transaction: Option<String>,
    pub failure_code: Option<String>,
    pub failure_message: Option<String>,
    pub fraud_details: Value,
    pub invoice: Option<String>,
    pub livemode: bool,
    pub metadata: Metadata,
    pub on_behalf_of: Option<String>,
    pub order: Option<String>,
    pub outcome: Option<Outcome>,
    pub paid: bool,
    pub payment_intent: Option<String>,
    pub payment_method: Option<String>,
    /// Kept as the text it was written as: built once per charge, read by nobody
    /// inside payground, and a tree of ~25 entries cost 3.6% of a confirmed payment.
    pub payment_method_details: Option<Box<serde_json::value::RawValue>>,
    pub radar_options: Value,
    pub receipt_email: Option<String>,
    pub receipt_number: Option<String>,
    pub receipt_url: Option<String>,
    pub refunded: bool,
    pub review: Option<String>,
    pub shipping: Option<Shipping>,
    pub source: Option<Value>,
    pub source_transfer: Option<String>,
    pub statement_descriptor: Option<String>,
    pub statement_descriptor_suffix: Option<String>,
    pub status: String,
    pub transfer_data: Option<Value>,
    pub transfer_group: Option<String>,
}

impl StripeObject for Charge {
    const OBJECT: &'static str = "charge";
    const PREFIXES: &'static [&'static str] = &["ch", "py"];
    const EXPANDABLE: &'static [&'static str] = &[
        "application",
        "application_fee",
        "balance_transaction",
        "billing_details",
        "billing_details.address",
        "customer",
        "failure_balance_transaction",
        "fraud_details",
        "invoice",
        "on_behalf_of",
        "outcome",
        "outcome.rule",
        "payment_intent",
        "payment_method_details",
        "radar_options",
        "review",
        "shipping",
        "shipping.address",
        "source_transfer",
        "transfer_data",
    ];
    fn id(&self) -> &str {
        &self.id
    }
    fn created(&self) -> i64 {
        self.created
    }
    fn index(&self) -> Vec<(String, String)> {
        let mut index = Vec::new();
        if let Some(pi) = &self.payment_intent {
            index.push(("payment_intent".to_string(), pi.clone()));
        }
        if let Some(c) = &self.customer {
            index.push(("customer".to_string(), c.clone()));
        }
        index
    }
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ChargeListFilters {
    pub customer: Option<String>,
    pub payment_intent: Option<String>,
    pub transfer_group: Option<String>,
}

/// The charge as it was saved (see [`Ctx::fetch_text`]).
pub async fn retrieve(ctx: &mut Ctx, id: &str) -> Result<Answer, ApiError> {
    ctx.fetch_text::<Charge>(id).await.map(Answer::Text)
}

pub async fn list(
    ctx: &mut Ctx,
    filters: &ChargeListFilters,
    params: &ListParams,
) -> Result<Answer, ApiError> {
    let filter = match (&filters.payment_intent, &filters.customer) {
        (Some(pi), _) => Some(("payment_intent".to_string(), pi.clone())),
        (None, Some(c)) => Some(("customer".to_string(), c.clone())),
        _ => None,
    };
    list::page(ctx, Charge::OBJECT, filter, params, "/v1/charges").await
}

#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ChargeUpdate {
    pub customer: Option<String>,
    pub description: Field<String>,
    pub fraud_details: Option<Value>,
    pub metadata: MetadataParam,
    pub receipt_email: Field<String>,
    pub shipping: Field<ShippingParam>,
    pub transfer_group: Field<String>,
}

pub async fn update(ctx: &mut Ctx, id: &str, p: &ChargeUpdate) -> Result<Value, ApiError> {
    let p = p.clone();
    let mut charge: Charge = ctx.fetch(id).await?;
    let before = serde_json::to_value(&charge).map_err(|e| ApiError::internal("encode", e))?;
    if let Some(customer) = p.customer {
        if charge.customer.is_some() {
            return Err(
                ApiError::invalid_request("This charge already has a customer.")
                    .with_param("customer"),
            );
        }
        let _c: crate::resources::customer::Customer = ctx
            .fetch(&customer)
            .await
            .map_err(|e| e.referenced_by("customer"))?;
        charge.customer = Some(customer);
    }
    p.description.apply(&mut charge.description);
    if let Some(fd) = p.fraud_details {
        charge.fraud_details = fd;
    }
    apply_metadata(&mut charge.metadata, p.metadata)?;
    p.receipt_email.apply(&mut charge.receipt_email);
    p.shipping
        .map_set(Shipping::from)
        .apply(&mut charge.shipping);
    p.transfer_group.apply(&mut charge.transfer_group);
    let after = ctx.save(&charge)?;
    if let Some(previous) = previous_attributes(&before, &after) {
        ctx.emit("charge.updated", &after, Some(previous));
    }
    Ok(after.into())
}

/// The `outcome` of an approved charge.
pub fn approved_outcome(risk_level: &str, risk_score: i64) -> Outcome {
    let elevated = risk_level == "elevated";
    Outcome {
        network_status: Some("approved_by_network".into()),
        reason: elevated.then(|| "elevated_risk_level".to_string()),
        risk_level: risk_level.into(),
        risk_score,
        rule: None,
        seller_message: Some(if elevated {
            "Stripe evaluated this payment as having elevated risk, and placed it in your manual review queue.".into()
        } else {
            "Payment complete.".into()
        }),
        kind: if elevated {
            "manual_review".into()
        } else {
            "authorized".into()
        },
    }
}

/// The `outcome` of a declined charge.
pub fn declined_outcome(decline_code: Option<&str>, blocked: bool) -> Outcome {
    if blocked {
        return Outcome {
            network_status: Some("not_sent_to_network".into()),
            reason: Some("highest_risk_level".into()),
            risk_level: "highest".into(),
            risk_score: 95,
            rule: None,
            seller_message: Some("Stripe blocked this payment as too risky.".into()),
            kind: "blocked".into(),
        };
    }
    Outcome {
        network_status: Some("declined_by_network".into()),
        reason: decline_code.map(str::to_string),
        risk_level: "normal".into(),
        risk_score: 20,
        rule: None,
        seller_message: Some(
            "The bank did not return any further details with this decline.".into(),
        ),
        kind: "issuer_declined".into(),
    }
}

pub fn refunds_list(id: &str) -> Value {
    json!({ "object": "list", "data": [], "has_more": false, "url": format!("/v1/charges/{id}/refunds") })
}

/// A card charge's `payment_method_details`, in Stripe's field order.
#[derive(Serialize)]
struct CardPaymentDetails<'a> {
    card: CardPaymentDetailsCard<'a>,
    #[serde(rename = "type")]
    kind: &'static str,
}

#[derive(Serialize)]
struct CardPaymentDetailsCard<'a> {
    amount_authorized: i64,
    brand: &'a str,
    checks: Option<payment_method::CardChecks>,
    country: Option<&'a str>,
    exp_month: i64,
    exp_year: i64,
    extended_authorization: Status,
    fingerprint: Option<&'a str>,
    funding: &'a str,
    incremental_authorization: Status,
    installments: Option<Value>,
    last4: &'a str,
    mandate: Option<Value>,
    multicapture: Status,
    network: &'a str,
    network_token: NetworkToken,
    overcapture: Overcapture,
    three_d_secure: Option<Value>,
    wallet: Option<Value>,
}

#[derive(Serialize)]
struct Status {
    status: &'static str,
}

#[derive(Serialize)]
struct NetworkToken {
    used: bool,
}

#[derive(Serialize)]
struct Overcapture {
    maximum_amount_capturable: i64,
    status: &'static str,
}

/// A charge's `payment_method_details`, written straight to text.
pub fn payment_method_details(
    ctx: &Ctx,
    amount: i64,
    pm: &PaymentMethod,
    authenticated: bool,
) -> Result<Box<serde_json::value::RawValue>, ApiError> {
    let encode_failed = |e| ApiError::internal("payment method details do not encode", e);
    if let Some(card) = &pm.card {
        let three_d_secure = authenticated.then(|| {
            json!({
                "authentication_flow": "challenge",
                "electronic_commerce_indicator": "05",
                "exemption_indicator": null,
                "result": "authenticated",
                "result_reason": null,
                "transaction_id": ids::random_string(32),
                "version": "2.2.0",
            })
        });
        let details = CardPaymentDetails {
            card: CardPaymentDetailsCard {
                amount_authorized: amount,
                brand: &card.brand,
                // The charge reports what the network checked, not the card's pending state.
                checks: pm
                    .verified_checks(ctx.account_id())
                    .or_else(|| card.checks.clone()),
                country: card.country.as_deref(),
                exp_month: card.exp_month,
                exp_year: card.exp_year,
                extended_authorization: Status { status: "disabled" },
                fingerprint: card.fingerprint.as_deref(),
                funding: &card.funding,
                incremental_authorization: Status {
                    status: "unavailable",
                },
                installments: None,
                last4: &card.last4,
                mandate: None,
                multicapture: Status {
                    status: "unavailable",
                },
                network: &card.brand,
                network_token: NetworkToken { used: false },
                overcapture: Overcapture {
                    maximum_amount_capturable: amount,
                    status: "unavailable",
                },
                three_d_secure,
                wallet: None,
            },
            kind: "card",
        };
        return serde_json::value::to_raw_value(&details).map_err(encode_failed);
    }
    let mut details = Map::new();
    if let Some(bank) = &pm.us_bank_account {
        details.insert(
            "us_bank_account".into(),
            json!({
                "account_holder_type": bank.account_holder_type,
                "account_type": bank.account_type,
                "bank_name": bank.bank_name,
                "fingerprint": bank.fingerprint,
                "last4": bank.last4,
                "payment_reference": null,
                "routing_number": bank.routing_number,
            }),
        );
    }
    if let Some(sepa) = &pm.sepa_debit {
        details.insert(
            "sepa_debit".into(),
            json!({
                "bank_code": sepa.bank_code,
                "branch_code": sepa.branch_code,
                "country": sepa.country,
                "fingerprint": sepa.fingerprint,
                "last4": sepa.last4,
                "mandate": null,
            }),
        );
    }
    details.insert("type".into(), json!(pm.kind));
    serde_json::value::to_raw_value(&details).map_err(encode_failed)
}

// ---- payground trigger ---------------------------------------------------------

pub const FIXTURES: &[Fixture] = &[
    Fixture {
        event: "charge.succeeded",
        steps: &[payment_intent::CARD_PAYMENT],
    },
    Fixture {
        event: "charge.failed",
        steps: &[payment_intent::DECLINED_PAYMENT],
    },
    Fixture {
        event: "charge.captured",
        steps: &[payment_intent::AUTHORIZATION, payment_intent::CAPTURE],
    },
    Fixture {
        event: "charge.refunded",
        steps: &[payment_intent::CARD_PAYMENT, refund::REFUND],
    },
];
