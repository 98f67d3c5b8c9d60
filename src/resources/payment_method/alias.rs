//! Stripe's test PaymentMethod ids (`pm_card_visa`, `pm_card_chargeDeclined`):
//! each use stands for a fresh card PaymentMethod of the test number it names.

use super::*;

/// Whether `id` is one of Stripe's test PaymentMethod ids (`pm_card_visa`), which
/// stand for a fresh PaymentMethod each time they are used.
pub fn is_alias(id: &str) -> bool {
    id.starts_with("pm_card_") && network::number_for_alias(id).is_some()
}

/// A fresh card PaymentMethod for a `pm_card_*` id, as Stripe test mode makes one
/// each time such an id is used.
pub fn from_alias(ctx: &Ctx, alias: &str) -> Option<PaymentMethod> {
    if !is_alias(alias) {
        return None;
    }
    let number = network::number_for_alias(alias)?;
    let data = PaymentMethodData {
        kind: Some(PaymentMethodType::Card),
        allow_redisplay: None,
        billing_details: None,
        card: Some(CardParam {
            number: Some(number.to_string()),
            exp_month: Some(12),
            exp_year: Some(civil(ctx.now).0 + 5),
            cvc: None,
            token: None,
            networks: None,
        }),
        metadata: Field::Absent,
        us_bank_account: None,
        sepa_debit: None,
        radar_options: None,
    };
    build(ctx, data, "").ok()
}
