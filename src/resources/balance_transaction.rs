//! Balance transactions: what a charge or refund moved in the account's balance,
//! with Stripe's test-mode card fees (2.9% + 30 minor units).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::ctx::{Answer, Ctx, StripeObject};
use crate::error::ApiError;
use crate::ids;
use crate::resources::common::list::{self, ListParams};

/// Funds of a card charge become available two days later, as in test mode.
const AVAILABLE_AFTER_SECS: i64 = 2 * 24 * 3600;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct FeeDetail {
    pub amount: i64,
    pub application: Option<String>,
    pub currency: String,
    pub description: Option<String>,
    #[serde(rename = "type")]
    pub kind: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct BalanceTransaction {
    pub id: String,
    pub object: String,
    pub amount: i64,
    pub available_on: i64,
    pub created: i64,
    pub currency: String,
    pub description: Option<String>,
    pub exchange_rate: Option<f64>,
    pub fee: i64,
    pub fee_details: Vec<FeeDetail>,
    pub net: i64,
    pub reporting_category: String,
    pub source: Option<String>,
    pub status: String,
    #[serde(rename = "type")]
    pub kind: String,
}

impl StripeObject for BalanceTransaction {
    const OBJECT: &'static str = "balance_transaction";
    const PREFIXES: &'static [&'static str] = &["txn"];
    const EXPANDABLE: &'static [&'static str] = &["fee_details", "source"];
    fn id(&self) -> &str {
        &self.id
    }
    fn created(&self) -> i64 {
        self.created
    }
    fn index(&self) -> Vec<(String, String)> {
        let mut index = vec![("type".to_string(), self.kind.clone())];
        if let Some(s) = &self.source {
            index.push(("source".to_string(), s.clone()));
        }
        index
    }
}

/// Stripe's standard card pricing, rounded half up.
pub fn card_fee(amount: i64) -> i64 {
    (amount * 29 + 500) / 1000 + 30
}

/// Records the balance effect of a captured charge; returns its id.
pub fn for_charge(
    ctx: &mut Ctx,
    charge: &str,
    amount: i64,
    currency: &str,
    available_now: bool,
    description: Option<String>,
) -> Result<String, ApiError> {
    let fee = card_fee(amount).min(amount.max(0));
    let txn = BalanceTransaction {
        id: ids::new_id("txn"),
        object: "balance_transaction".into(),
        amount,
        available_on: if available_now {
            ctx.now
        } else {
            ctx.now + AVAILABLE_AFTER_SECS
        },
        created: ctx.now,
        currency: currency.to_string(),
        description,
        exchange_rate: None,
        fee,
        fee_details: vec![FeeDetail {
            amount: fee,
            application: None,
            currency: currency.to_string(),
            description: Some("Stripe processing fees".into()),
            kind: "stripe_fee".into(),
        }],
        net: amount - fee,
        reporting_category: "charge".into(),
        source: Some(charge.to_string()),
        status: if available_now {
            "available".into()
        } else {
            "pending".into()
        },
        kind: "charge".into(),
    };
    ctx.save(&txn)?;
    Ok(txn.id)
}

/// Records a refund (a negative amount; Stripe keeps the original fee).
pub fn for_refund(
    ctx: &mut Ctx,
    refund: &str,
    amount: i64,
    currency: &str,
) -> Result<String, ApiError> {
    let txn = BalanceTransaction {
        id: ids::new_id("txn"),
        object: "balance_transaction".into(),
        amount: -amount,
        available_on: ctx.now,
        created: ctx.now,
        currency: currency.to_string(),
        description: Some("REFUND FOR CHARGE".into()),
        exchange_rate: None,
        fee: 0,
        fee_details: Vec::new(),
        net: -amount,
        reporting_category: "refund".into(),
        source: Some(refund.to_string()),
        status: "available".into(),
        kind: "refund".into(),
    };
    ctx.save(&txn)?;
    Ok(txn.id)
}

#[cfg(test)]
mod tests {
    #[test]
    fn fees() {
        assert_eq!(super::card_fee(2000), 88);
        assert_eq!(super::card_fee(1099), 62);
        assert_eq!(super::card_fee(100), 33);
    }
}

pub async fn retrieve(ctx: &mut Ctx, id: &str) -> Result<Answer, ApiError> {
    ctx.fetch_text::<BalanceTransaction>(id)
        .await
        .map(Answer::Text)
}

/// `GET /v1/balance_transactions` filters. `currency` and `payout` are accepted
/// as Stripe's spec has them; payground has one currency per transaction's
/// source and no payouts, so the first filter given of `source` and `type`
/// decides the page.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ListFilters {
    pub source: Option<String>,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub currency: Option<String>,
    pub payout: Option<String>,
}

pub async fn list(
    ctx: &mut Ctx,
    filters: &ListFilters,
    page: &ListParams,
) -> Result<Answer, ApiError> {
    let filter = match (&filters.source, &filters.kind) {
        (Some(s), _) => Some(("source".to_string(), s.clone())),
        (None, Some(t)) => Some(("type".to_string(), t.clone())),
        _ => None,
    };
    list::page(
        ctx,
        BalanceTransaction::OBJECT,
        filter,
        page,
        "/v1/balance_transactions",
    )
    .await
}
